//! Test-only fault points. With the `test-hooks` feature (enabled for the test suite
//! only) a test can pause a cache fill between the database read and the write to the
//! cache (to drive the reader/writer race deterministically, or to widen it at random),
//! slow down or panic every database read, and switch invalidation to a plain delete
//! after commit, list counters to a bump before the commit, or an update to read its
//! row without locking it (the broken protocols the consistency checker must catch).
//! Without the feature none of this exists.
use crate::cache::Kind;

#[cfg(feature = "test-hooks")]
mod enabled {
    use super::Kind;
    use futures::future::BoxFuture;
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    };

    /// Called with the entity kind after a database read, before its cache fill.
    pub type BeforeFill = Arc<dyn Fn(Kind) -> BoxFuture<'static, ()> + Send + Sync>;

    #[derive(Default)]
    pub struct Hooks {
        before_fill: Mutex<Option<BeforeFill>>,
        /// Upper bound of a random pause before every fill (0 = none).
        fill_delay_micros: AtomicU64,
        /// Plain delete after commit instead of versioned tombstones: the broken
        /// protocol the consistency checker must catch.
        naive: AtomicBool,
        /// List counters bumped before the commit instead of after: the broken list
        /// protocol the checker must catch.
        naive_lists: AtomicBool,
        /// Updates read the row before them without its lock: the broken transition
        /// (a concurrent update in between is missed) the hot-row test must catch.
        naive_row_lock: AtomicBool,
        /// A pause before every database read statement (0 = none).
        read_delay_micros: AtomicU64,
        /// Every database read panics: the panic paths must answer, not drop.
        panic_on_read: AtomicBool,
    }

    impl Hooks {
        /// Every fill waits a random time up to `max` after its database read.
        pub fn set_fill_delay(&self, max: std::time::Duration) {
            self.fill_delay_micros
                .store(max.as_micros() as u64, Ordering::Relaxed);
        }

        pub fn set_naive_invalidation(&self, on: bool) {
            self.naive.store(on, Ordering::Relaxed);
        }

        pub(crate) fn naive_invalidation(&self) -> bool {
            self.naive.load(Ordering::Relaxed)
        }

        pub fn set_naive_lists(&self, on: bool) {
            self.naive_lists.store(on, Ordering::Relaxed);
        }

        pub(crate) fn naive_lists(&self) -> bool {
            self.naive_lists.load(Ordering::Relaxed)
        }

        pub fn set_naive_row_lock(&self, on: bool) {
            self.naive_row_lock.store(on, Ordering::Relaxed);
        }

        pub(crate) fn naive_row_lock(&self) -> bool {
            self.naive_row_lock.load(Ordering::Relaxed)
        }

        /// Every database read statement first waits `delay`.
        pub fn set_read_delay(&self, delay: std::time::Duration) {
            self.read_delay_micros
                .store(delay.as_micros() as u64, Ordering::Relaxed);
        }

        /// Every database read statement panics (`true`) or not.
        pub fn set_panic_on_read(&self, on: bool) {
            self.panic_on_read.store(on, Ordering::Relaxed);
        }

        pub(crate) async fn before_read(&self) {
            if self.panic_on_read.load(Ordering::Relaxed) {
                panic!("test hook: a database read panics");
            }
            let delay = self.read_delay_micros.load(Ordering::Relaxed);
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_micros(delay)).await;
            }
        }

        pub fn set_before_fill(&self, hook: Option<BeforeFill>) {
            *self.before_fill.lock().unwrap_or_else(|p| p.into_inner()) = hook;
        }

        pub(crate) async fn before_fill(&self, kind: Kind) {
            let max = self.fill_delay_micros.load(Ordering::Relaxed);
            if max > 0 {
                tokio::time::sleep(std::time::Duration::from_micros(rand::random_range(
                    0..=max,
                )))
                .await;
            }
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

    #[inline(always)]
    pub(crate) async fn before_read(&self) {}
}
