//! What operators and the persisted query store ask of the cache: Redis's `INFO` (at most
//! once a second), persisted query documents in Redis, and rate-limited logging of
//! cache errors (during an outage every request fails its cache call).
use std::{
    sync::atomic::Ordering::Relaxed,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use super::{Backend, Cache, CacheError, documents, redis, timed};

impl Cache {
    /// Redis server facts, when the backend is Redis and it answers; read from Redis at
    /// most once a second (see `info`).
    pub async fn redis_info(&self) -> Option<redis::RedisInfo> {
        let Backend::Redis(r) = &self.store else {
            return None;
        };
        let mut last = self.info.lock().await;
        if let Some((at, info)) = &*last
            && at.elapsed() < Duration::from_secs(1)
        {
            return info.clone();
        }
        let info = r.info().await.ok();
        *last = Some((std::time::Instant::now(), info.clone()));
        info
    }

    /// The Redis client (of group 0's node), for tests that inspect keys and TTLs.
    #[cfg(feature = "test-hooks")]
    pub fn redis_client(&self) -> Option<fred::clients::Client> {
        match &self.store {
            Backend::Redis(r) => r.client(),
            _ => None,
        }
    }

    /// The persisted query document under `hash` in Redis; `None` without Redis (the
    /// documents then live in process, see `documents`).
    pub async fn shared_document(&self, hash: &str) -> Option<Result<Option<String>, CacheError>> {
        let Backend::Redis(r) = &self.store else {
            return None;
        };
        Some(timed("document", r.document(hash)).await)
    }

    /// Registers a persisted query document in Redis; `None` without Redis.
    pub async fn register_shared_document(
        &self,
        hash: &str,
        document: &str,
        limits: documents::Limits,
    ) -> Option<Result<documents::Registration, CacheError>> {
        let Backend::Redis(r) = &self.store else {
            return None;
        };
        Some(timed("register", r.register_document(hash, document, limits)).await)
    }

    /// Logs a cache error at most once a second: during an outage every request fails
    /// its cache call, and the log must stay readable.
    pub fn log_error(&self, e: &CacheError) {
        self.log_once_a_second(
            || tracing::warn!(error = %e, "cache unavailable; serving from the database"),
        );
    }

    /// Runs `log` unless this cache logged something in the current second.
    pub fn log_once_a_second(&self, log: impl FnOnce()) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let last = self.last_error_log.load(Relaxed);
        if now > last
            && self
                .last_error_log
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            log();
        }
    }
}
