//! Test-only fault points. With the `test-hooks` feature (enabled for the test suite
//! only) a test can pause a cache fill between the database read and the write to the
//! cache, to drive the reader/writer race deterministically. Without the feature these
//! are no-ops that compile away.
use crate::cache::Kind;

#[cfg(feature = "test-hooks")]
mod enabled {
    use super::Kind;
    use futures::future::BoxFuture;
    use std::sync::{Arc, Mutex};

    /// Called with the entity kind after a database read, before its cache fill.
    pub type BeforeFill = Arc<dyn Fn(Kind) -> BoxFuture<'static, ()> + Send + Sync>;

    #[derive(Default)]
    pub struct Hooks {
        before_fill: Mutex<Option<BeforeFill>>,
    }

    impl Hooks {
        pub fn set_before_fill(&self, hook: Option<BeforeFill>) {
            *self.before_fill.lock().unwrap_or_else(|p| p.into_inner()) = hook;
        }

        pub(crate) async fn before_fill(&self, kind: Kind) {
            let hook = self
                .before_fill
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            if let Some(h) = hook {
                h(kind).await;
            }
        }
    }
}

#[cfg(feature = "test-hooks")]
pub use enabled::*;

#[cfg(not(feature = "test-hooks"))]
#[derive(Default)]
pub struct Hooks;

#[cfg(not(feature = "test-hooks"))]
impl Hooks {
    #[inline(always)]
    pub(crate) async fn before_fill(&self, _kind: Kind) {}
}
