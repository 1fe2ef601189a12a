//! The read-through cache. Best effort: an error or timeout counts as a miss, is
//! counted and logged (at most once a second), and the caller falls back to the
//! database; no request fails because of the cache.
//!
//! Layout:
//! - `entry`: the versioned entry format and the fill / invalidation rules.
//! - `keys`: key names, spread over hash-tag groups (one per Redis Cluster slot).
//! - `redis`, `memory`: the two stores (fred, moka); `none` is the absence of one;
//!   `route` maps key groups to Redis nodes, `combine` merges concurrent reads of a
//!   node into one MGET, `lua` holds the Redis scripts, `epochs` keeps the per-group
//!   epoch copies at one value.
//! - `stats`: process-wide counters and the per-request tally.
//! - `stamps`: what a request's answer depended on, and checking it later.
//! - `trust`: whether reads may use the shared store now (degraded mode, history);
//!   `lease`: the trust lease every read of a shared store needs, and what it withholds.
//! - `documents`: persisted query documents (APQ), in Redis or in process, bounded.
//! - `feed`: messages every instance hears (Redis pub/sub, or in process).
//! - `budget`: how many new keys reads may create per second (pages, absent markers).
//! - `store`: the interface both stores implement; `reads`, `writes`, `admin`: what
//!   readers, writers and operators ask of the cache; `ttl`: how long entries,
//!   tombstones and counters live.
mod admin;
pub(crate) mod budget;
pub(crate) mod documents;
pub(crate) mod entry;
pub(crate) mod feed;
pub(crate) mod keys;
pub mod lease;
pub(crate) mod memory;
mod reads;
pub(crate) mod redis;
pub(crate) mod stamps;
pub(crate) mod stats;
pub(crate) mod store;
pub(crate) mod trust;
mod ttl;
mod writes;

pub use ttl::{COUNTER_TTL, TOMBSTONE_FLOOR, jitter};

use std::{
    sync::{Arc, atomic::AtomicU64},
    time::Duration,
};

use crate::config::{CACHE_LAYOUT, CacheBackendKind, CacheTtls};

/// How long a trust lease lasts unless `CACHE_LEASE_MS` says otherwise.
const DEFAULT_LEASE: Duration = Duration::from_secs(1);
pub use keys::Keys;
pub use stats::{CacheStats, Event, Kind, RequestTally};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    // `Timeout` and `NotReplicated` say Redis is slow, not gone: see `is_loss`.
    #[error("cache not connected")]
    Unavailable,
    #[error("cache command timed out")]
    Timeout,
    #[error("cache lost its epoch (flushed or restarted); re-seeding")]
    Unseeded,
    #[error("cache epoch copies disagree (a clear under way); settling them")]
    Unsettled,
    #[error("tombstones reached {acked} of {wanted} replicas in time")]
    NotReplicated { acked: i64, wanted: u32 },
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
}

impl CacheError {
    /// Whether the error may mean an invalidation was lost (the connection went, or
    /// Redis lost its keys): only such errors send an instance around the cache. A slow
    /// answer (a timeout, the breaker after one) because this process or Redis is busy
    /// is not a cache that is down.
    pub fn is_loss(&self) -> bool {
        match self {
            Self::Unavailable | Self::Unseeded => true,
            Self::Timeout | Self::NotReplicated { .. } | Self::Unsettled => false,
            // A refusal to write (out of memory under `noeviction`) loses nothing: the
            // writer whose invalidation it refused gives up (`catalog::lease`).
            Self::Redis(e) => {
                *e.kind() != fred::error::ErrorKind::Timeout && !e.details().starts_with("OOM")
            }
        }
    }
}

/// What one read round trip returns: the epoch at that moment, the value of each asked
/// list counter (unknown on a Redis that lost it), then one value per asked key.
#[derive(Debug)]
pub struct Snapshot {
    pub epoch: u64,
    /// The history counter of each group read, by group (0 for stores without one; see
    /// `catalog::history`).
    pub history: Vec<(usize, u64)>,
    pub counters: Vec<Option<u64>>,
    pub values: Vec<Option<String>>,
    /// Positions (into counters, then values) this read could not learn: their group's
    /// node failed, or the group is not usable now. Usually empty. A lost value is not a
    /// miss: nothing may be assumed about its entry (no single-flight join, no fill).
    pub lost: Vec<usize>,
    /// The groups whose node failed, and how (taken by `Cache::read`, which counts and
    /// logs them).
    pub failed: Vec<(usize, CacheError)>,
}

impl Snapshot {
    /// Whether value `i` (of the asked keys) is lost.
    pub fn value_lost(&self, i: usize) -> bool {
        !self.lost.is_empty() && self.lost.contains(&(self.counters.len() + i))
    }

    /// Whether counter `j` is lost.
    pub fn counter_lost(&self, j: usize) -> bool {
        !self.lost.is_empty() && self.lost.contains(&j)
    }
}

/// A reader's conditional write of what it loaded (`version` 0 = "no such row").
pub struct Fill {
    pub key: String,
    pub version: i64,
    pub payload: String,
    pub ttl: Duration,
}

/// A writer's tombstone after a commit.
pub struct Mark {
    pub key: String,
    pub version: i64,
    pub gone: bool,
    pub ttl: Duration,
}

impl Mark {
    fn payload(&self) -> String {
        if self.gone {
            entry::gone(self.version)
        } else {
            entry::pending(self.version)
        }
    }
}

/// The store in use (see `store::Store`), or none.
enum Backend {
    Redis(redis::RedisStore),
    Memory(memory::MemoryStore),
    None,
}

/// Runs `$body` with `$s` bound to the store in use, or `$none` without one: every
/// store speaks `store::Store`, so one expression serves both.
macro_rules! with_store {
    ($cache:expr, $s:ident => $body:expr, $none:expr) => {
        match &$cache.store {
            Backend::Redis($s) => $body,
            Backend::Memory($s) => $body,
            Backend::None => $none,
        }
    };
}
pub(crate) use with_store;

/// The cache as the catalog sees it. Cheap to share behind an `Arc`.
pub struct Cache {
    store: Backend,
    pub keys: Keys,
    pub ttls: CacheTtls,
    pub stats: CacheStats,
    /// Unix second of the last logged cache error (rate limit for the log).
    last_error_log: AtomicU64,
    /// Whether reads may use the shared store now (see `trust`).
    trust: trust::Trust,
    /// Messages to every instance (product changes for subscriptions).
    pub feed: feed::Feed,
    /// New keys reads may create per second (see `budget`).
    fill_budget: budget::FillBudget,
    /// `INFO` as last read, and when: `cacheStats` asks Redis at most once a second
    /// however many requests (or aliases) ask. A tokio Mutex: held across the read, so
    /// concurrent askers wait for one answer.
    info: tokio::sync::Mutex<Option<(std::time::Instant, Option<redis::RedisInfo>)>>,
    /// The trust lease reads of a shared store need (see `lease`; renewed by
    /// `catalog::lease`).
    pub lease: lease::Lease,
}

impl Cache {
    /// A cache of `kind`; `read_budget` bounds a cache read's wait (`timeout` every
    /// other command's); `wait` = (replicas, timeout) for `CACHE_WAIT_REPLICAS`;
    /// `groups` hash-tag groups on a Redis Cluster (one otherwise).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: CacheBackendKind,
        redis_url: Option<&str>,
        prefix: &str,
        ttls: CacheTtls,
        timeout: Duration,
        read_budget: Duration,
        wait: Option<(u32, Duration)>,
        groups: usize,
    ) -> Result<Self, CacheError> {
        Self::with_layout(
            kind,
            redis_url,
            prefix,
            ttls,
            timeout,
            read_budget,
            wait,
            groups,
            CACHE_LAYOUT,
        )
    }

    /// As `new`, speaking cache layout `layout` (its keys are named for it: see
    /// `Keys::for_layout`).
    #[allow(clippy::too_many_arguments)]
    fn with_layout(
        kind: CacheBackendKind,
        redis_url: Option<&str>,
        prefix: &str,
        ttls: CacheTtls,
        timeout: Duration,
        read_budget: Duration,
        wait: Option<(u32, Duration)>,
        groups: usize,
        layout: i32,
    ) -> Result<Self, CacheError> {
        let clustered = kind == CacheBackendKind::Redis && redis_url.is_some_and(is_cluster_url);
        let keys = Keys::for_layout(prefix, layout, if clustered { groups } else { 1 });
        let store = match (kind, redis_url) {
            (CacheBackendKind::Redis, Some(url)) => Backend::Redis(redis::RedisStore::start(
                url,
                keys.clone(),
                timeout,
                read_budget,
                wait,
            )?),
            (CacheBackendKind::Memory, _) => Backend::Memory(memory::MemoryStore::new(200_000)),
            _ => Backend::None,
        };
        let keys_groups = keys.groups();
        let feed = match (&store, redis_url) {
            (Backend::Redis(_), Some(url)) => {
                feed::Feed::redis(url, format!("{prefix}events"), timeout)?
            }
            _ => feed::Feed::local(),
        };
        Ok(Self {
            feed,
            store,
            keys,
            ttls,
            stats: CacheStats::default(),
            last_error_log: AtomicU64::new(0),
            trust: trust::Trust::new(keys_groups),
            fill_budget: Default::default(),
            info: Default::default(),
            lease: lease::Lease::new(DEFAULT_LEASE, CACHE_LAYOUT),
        })
    }

    /// The cache the settings ask for.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, CacheError> {
        let mut cache = Self::with_layout(
            config.cache_backend,
            config.redis_url.as_deref(),
            &config.cache_prefix,
            config.cache_ttls.clone(),
            config.cache_timeout,
            config.cache_read_budget,
            Some((config.cache_wait_replicas, config.cache_wait_timeout)),
            config.cache_groups,
            config.cache_layout,
        )?;
        cache.fill_budget = budget::FillBudget::new(config.cache_fill_budget);
        cache.lease = lease::Lease::new(config.cache_lease, config.cache_layout);
        Ok(cache)
    }

    pub fn backend(&self) -> &'static str {
        match self.store {
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "memory",
            Backend::None => "none",
        }
    }

    pub fn is_enabled(&self) -> bool {
        !matches!(self.store, Backend::None)
    }

    /// Whether the store can be reached now, every group's node (always for the
    /// in-process store).
    pub fn is_connected(&self) -> bool {
        match &self.store {
            Backend::Redis(r) => r.is_connected(),
            Backend::Memory(_) => true,
            Backend::None => false,
        }
    }

    /// Whether some group's node can be reached now.
    pub fn any_connected(&self) -> bool {
        match &self.store {
            Backend::Redis(r) => r.any_connected(),
            Backend::Memory(_) => true,
            Backend::None => false,
        }
    }

    /// Waits up to `limit` for the store to connect (at once for the in-process one).
    pub async fn wait_connected(&self, limit: Duration) {
        if let Backend::Redis(r) = &self.store {
            r.wait_connected(limit).await;
        }
    }

    /// Counts and logs each failed group's error, degrading that group if it may have
    /// lost an invalidation.
    fn failed_groups(&self, kind: Kind, failed: Vec<(usize, CacheError)>) {
        for (group, e) in failed {
            let _ = self.ok_or_log::<()>(kind, Err(e), || 1 << group);
        }
    }

    /// Every group's copy of each list counter named.
    fn counter_copies(&self, names: &[String]) -> Vec<String> {
        (0..self.keys.groups())
            .flat_map(|g| names.iter().map(move |n| self.keys.counter(g, n)))
            .collect()
    }

    /// `result`'s value, or `None` after counting and logging its error; an error that
    /// may have lost an invalidation degrades the groups it `touched` (bit g).
    fn ok_or_log<T>(
        &self,
        kind: Kind,
        result: Result<T, CacheError>,
        touched: impl FnOnce() -> u64,
    ) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                if e.is_loss() {
                    self.record_error(touched());
                }
                self.stats.add(kind, Event::Error, 1);
                self.log_error(&e);
                None
            }
        }
    }
}

/// A store command in parts (one per group): its latency, and whether every part went.
async fn timed_parts<T>(
    op: &'static str,
    command: impl Future<Output = (T, Vec<(usize, CacheError)>)>,
) -> (T, Vec<(usize, CacheError)>) {
    let started = std::time::Instant::now();
    let result = command.await;
    crate::metrics::cache_command(op, started.elapsed().as_secs_f64(), result.1.is_empty());
    result
}

/// Whether a Redis URL names a cluster, as fred parses it (the store routes by the same
/// parse, so the key layout and the routing always agree).
pub fn is_cluster_url(url: &str) -> bool {
    fred::types::config::Config::from_url(url).is_ok_and(|c| c.server.is_clustered())
}

/// Runs one store command, recording its latency and outcome.
async fn timed<T>(
    op: &'static str,
    command: impl Future<Output = Result<T, CacheError>>,
) -> Result<T, CacheError> {
    let started = std::time::Instant::now();
    let result = command.await;
    crate::metrics::cache_command(op, started.elapsed().as_secs_f64(), result.is_ok());
    result
}

/// A shared handle to the cache.
pub type SharedCache = Arc<Cache>;
