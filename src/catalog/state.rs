//! What the layers above may know and do of the cache and the database, without
//! reaching around the catalog: the cache's state (`/ready`, `cacheStats`), clearing it
//! and its counters, the database pool, the checks the transport's response cache makes
//! (`still_valid`: one round trip re-reading an answer's stamps), and the persisted
//! query documents (APQ) kept in the cache's store.
use crate::{
    cache::{
        documents::{Lookup, Registration},
        redis::RedisInfo,
        stamps::Stamps,
        stats::{Event, Kind, KindSnapshot, RequestTally},
    },
    error::AppError,
};

use super::Catalog;

/// The cache as `/ready`, `/metrics` and `cacheStats` show it.
#[derive(Clone, Debug)]
pub struct CacheStatus {
    /// `redis`, `memory` or `none`.
    pub backend: &'static str,
    /// Whether the backend can be reached now (every key group's node).
    pub connected: bool,
    /// Why reads go around the cache now, if they do (`None`: they use it).
    pub reason: Option<String>,
    /// A shared cache's trust lease (`None` for the other backends).
    pub lease: Option<LeaseStatus>,
}

/// The trust lease as `/ready` and `/metrics` show it.
#[derive(Clone, Debug)]
pub struct LeaseStatus {
    pub held: bool,
    /// Keys the current grant withholds (`u64::MAX`: all).
    pub withheld: u64,
}

impl Catalog {
    pub fn cache_status(&self) -> CacheStatus {
        let cache = self.cache();
        CacheStatus {
            backend: cache.backend(),
            connected: cache.is_connected(),
            reason: cache.untrusted_reason(),
            lease: (cache.backend() == "redis").then(|| LeaseStatus {
                held: cache.lease.held(),
                withheld: cache.lease.withheld_count(),
            }),
        }
    }

    /// Makes every cache entry unreachable at once (an epoch bump; tombstones stay).
    /// Returns the new epoch (`None` without a cache); `CacheUnavailable` when the
    /// cache cannot be reached.
    pub async fn clear_cache(&self) -> Result<Option<u64>, AppError> {
        self.cache().clear().await.map_err(|e| {
            self.cache().log_error(&e);
            AppError::CacheUnavailable
        })
    }

    /// Sets the `cacheStats` counters back to zero (Prometheus counters never reset).
    pub fn reset_cache_stats(&self) {
        self.cache().stats.reset();
    }

    /// The `cacheStats` counters per entity kind.
    pub fn cache_counters(&self) -> Vec<KindSnapshot> {
        self.cache().stats.snapshot()
    }

    /// Counts `n` events of `kind` (`cacheStats` and `/metrics`).
    pub fn count(&self, kind: Kind, event: Event, n: u64) {
        self.cache().stats.add(kind, event, n);
    }

    /// Redis server facts (at most one `INFO` a second), or `None` on other backends.
    pub async fn redis_info(&self) -> Option<RedisInfo> {
        self.cache().redis_info().await
    }

    /// A number that changes whenever what this process knows of the shared cache may
    /// have gone stale without a write telling it (`cache::Cache::session`): replayable
    /// answers are valid only within one.
    pub fn cache_session(&self) -> u64 {
        self.cache().session()
    }

    /// Whether every stamp of an earlier answer still holds (one round trip; `false`
    /// when the cache cannot answer).
    pub async fn still_valid(&self, stamps: &Stamps, tally: &RequestTally) -> bool {
        self.cache().validate(stamps, tally).await
    }

    /// Database pool connections in use and idle.
    pub fn pool_connections(&self) -> (u32, u32) {
        use sea_orm::DbBackend;
        let db = self.db();
        let (size, idle) = match db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle() as u32)
            }
            DbBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle() as u32)
            }
            _ => (0, 0),
        };
        (size.saturating_sub(idle), idle)
    }

    /// The persisted query document registered under `hash`.
    pub async fn persisted_document(&self, hash: &str) -> Lookup {
        self.inner.documents.lookup(self.cache(), hash).await
    }

    /// Registers `document` under `hash` (its SHA-256, checked by the caller), within
    /// the store's bounds.
    pub async fn register_document(&self, hash: &str, document: &str) -> Registration {
        self.inner
            .documents
            .register(self.cache(), hash, document)
            .await
    }

    /// The bounds of the persisted query store.
    pub fn document_limits(&self) -> crate::config::PersistedQueryLimits {
        self.inner.documents.limits()
    }

    /// Runs `log` unless the cache logged something in the current second (for
    /// warnings any anonymous client can cause).
    pub fn log_once_a_second(&self, log: impl FnOnce()) {
        self.cache().log_once_a_second(log);
    }
}
