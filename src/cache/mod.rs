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
//! - `trust`: whether reads may use the shared store now (degraded mode, history).
//! - `documents`: persisted query documents (APQ), in Redis or in process, bounded.
//! - `feed`: messages every instance hears (Redis pub/sub, or in process).
//! - `budget`: how many new keys reads may create per second (pages, absent markers).
pub mod budget;
mod combine;
pub mod documents;
pub mod entry;
mod epochs;
pub mod feed;
pub mod keys;
mod lua;
pub mod memory;
pub mod redis;
pub mod route;
pub mod stamps;
pub mod stats;
pub mod trust;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use crate::config::{CacheBackendKind, CacheTtls};
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
            Self::Redis(e) => *e.kind() != fred::error::ErrorKind::Timeout,
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

enum Store {
    Redis(redis::RedisStore),
    Memory(memory::MemoryStore),
    None,
}

/// The cache as the catalog sees it. Cheap to share behind an `Arc`.
pub struct Cache {
    store: Store,
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
}

/// How long a list counter lives without being bumped or seeded again. Expiry is safe:
/// a counter that comes back is seeded with a fresh random value, which no stored page
/// carries as its tag (a page tagged with the old value misses once).
pub const COUNTER_TTL: Duration = Duration::from_secs(24 * 3600);

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
        let clustered = kind == CacheBackendKind::Redis && redis_url.is_some_and(is_cluster_url);
        let keys = Keys::new(prefix, if clustered { groups } else { 1 });
        let store = match (kind, redis_url) {
            (CacheBackendKind::Redis, Some(url)) => Store::Redis(redis::RedisStore::start(
                url,
                keys.clone(),
                timeout,
                read_budget,
                wait,
            )?),
            (CacheBackendKind::Memory, _) => Store::Memory(memory::MemoryStore::new(200_000)),
            _ => Store::None,
        };
        let keys_groups = keys.groups();
        let feed = match (&store, redis_url) {
            (Store::Redis(_), Some(url)) => {
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
        })
    }

    /// The cache the settings ask for.
    pub fn from_config(config: &crate::config::Config) -> Result<Self, CacheError> {
        let mut cache = Self::new(
            config.cache_backend,
            config.redis_url.as_deref(),
            &config.cache_prefix,
            config.cache_ttls.clone(),
            config.cache_timeout,
            config.cache_read_budget,
            Some((config.cache_wait_replicas, config.cache_wait_timeout)),
            config.cache_groups,
        )?;
        cache.fill_budget = budget::FillBudget::new(config.cache_fill_budget);
        Ok(cache)
    }

    pub fn backend(&self) -> &'static str {
        match self.store {
            Store::Redis(_) => "redis",
            Store::Memory(_) => "memory",
            Store::None => "none",
        }
    }

    pub fn is_enabled(&self) -> bool {
        !matches!(self.store, Store::None)
    }

    /// Whether the store can be reached now, every group's node (always for the
    /// in-process store).
    pub fn is_connected(&self) -> bool {
        match &self.store {
            Store::Redis(r) => r.is_connected(),
            Store::Memory(_) => true,
            Store::None => false,
        }
    }

    /// Whether some group's node can be reached now.
    pub fn any_connected(&self) -> bool {
        match &self.store {
            Store::Redis(r) => r.any_connected(),
            Store::Memory(_) => true,
            Store::None => false,
        }
    }

    /// Waits up to `limit` for the store to connect (at once for the in-process one).
    pub async fn wait_connected(&self, limit: Duration) {
        if let Store::Redis(r) = &self.store {
            r.wait_connected(limit).await;
        }
    }

    /// One round trip: the epoch, the list `counters` (key names), and `keys`. `None`
    /// when there is no cache or it failed (already counted and logged against `kind`);
    /// groups that are not usable now, or whose node failed, are `lost` in the answer.
    pub async fn read(
        &self,
        kind: Kind,
        keys: &[String],
        counters: &[String],
        tally: &RequestTally,
    ) -> Option<Snapshot> {
        let skip = self.unusable_mask();
        if skip == self.all_groups() || matches!(self.store, Store::None) {
            return None;
        }
        // Only values seen before this read was sent bind it: a delivery answered while
        // the read is in flight may be processed after it by Redis, or its answer may be
        // handled first by this process.
        let floors = self.trust.floors();
        let result = match &self.store {
            Store::None => return None,
            Store::Redis(r) => timed("read", r.read(keys, counters, skip)).await,
            Store::Memory(m) => timed("read", m.read(keys, counters)).await,
        };
        tally.round_trip();
        let touched = || self.groups_of(counters.iter().chain(keys).map(String::as_str));
        let mut snapshot = self.ok_or_log(kind, result, touched)?;
        self.failed_groups(kind, std::mem::take(&mut snapshot.failed));
        for &(group, seen) in &snapshot.history {
            if seen < floors[group] {
                self.history_lost();
                self.stats.add(kind, Event::Error, 1);
                tracing::warn!(
                    group,
                    seen,
                    floor = floors[group],
                    "the cache's history went back (restored or failed over): reading around it until checked"
                );
                return None;
            }
        }
        for &(group, seen) in &snapshot.history {
            self.trust.saw_history(group, seen);
        }
        Some(snapshot)
    }

    /// Seeds the missing list counters `keys` with random start values and reads them
    /// again, one round trip: a page whose counter was missing (a new or flushed Redis)
    /// is then stored by its first reader, not only after someone else seeded it.
    pub async fn seed_counters(
        &self,
        keys: &[String],
        tally: &RequestTally,
    ) -> Option<Vec<Option<u64>>> {
        let result = match &self.store {
            Store::Redis(r) => timed("seed", r.seed_counters(keys)).await,
            _ => return None,
        };
        tally.round_trip();
        self.ok_or_log(Kind::List, result, || {
            self.groups_of(keys.iter().map(String::as_str))
        })
    }

    /// Whether every stamp of an earlier answer still holds: one round trip reading the
    /// epoch, the stamped list counters and the stamped item keys. `false` when the cache cannot
    /// answer (an error, or degraded mode), so a replay is never served on trust. Each
    /// stamp that holds counts as a hit of its kind, in the tally and the stats.
    pub async fn validate(&self, stamps: &stamps::Stamps, tally: &RequestTally) -> bool {
        if stamps.is_empty() {
            return true;
        }
        let Some(now) = self
            .read(Kind::Response, &stamps.keys, &stamps.counter_keys, tally)
            .await
        else {
            return false;
        };
        let holds = now.lost.is_empty()
            && Some(now.epoch) == stamps.epoch
            && stamps
                .counters
                .iter()
                .zip(&now.counters)
                .all(|(then, now)| Some(*then) == *now)
            && stamps
                .items
                .iter()
                .zip(&now.values)
                .all(|((_, stamp), raw)| stamp.holds(raw.as_deref(), now.epoch));
        if holds {
            for kind in Kind::ENTITIES {
                let n = stamps.count(kind);
                self.stats.add(kind, Event::Hit, n);
                tally.hit(kind, n);
            }
        }
        holds
    }

    /// Conditional fills, one round trip; rejected fills are counted, not errors. Fills
    /// of groups that are not usable now are dropped.
    pub async fn fill(&self, kind: Kind, mut fills: Vec<Fill>, tally: &RequestTally) {
        let skip = self.unusable_mask();
        if skip != 0 {
            fills.retain(|f| skip & (1 << self.keys.group_of(&f.key)) == 0);
        }
        // "No such id" markers are keys per id a stranger asks for: within the budget.
        fills.retain(|f| f.version != 0 || self.fill_budget.take(kind.as_str()));
        if fills.is_empty() {
            return;
        }
        let (accepted, failed) = match &self.store {
            Store::None => return,
            Store::Redis(r) => timed_parts("fill", r.fill(&fills)).await,
            Store::Memory(m) => one_group(timed("fill", m.fill(&fills)).await),
        };
        tally.round_trip();
        let asked = fills
            .iter()
            .filter(|f| !failed.iter().any(|(g, _)| *g == self.keys.group_of(&f.key)))
            .count() as u64;
        self.failed_groups(kind, failed);
        self.stats.add(kind, Event::Fill, accepted);
        self.stats
            .add(kind, Event::FillRejected, asked.saturating_sub(accepted));
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

    /// After a commit: tombstones for the written items, then a bump of each list
    /// counter the write can change (`counters`: names, e.g. `c7:price`; every group's
    /// copy is bumped). Returns the history counter of each group it touched (Redis;
    /// none for the in-process store), for Postgres to record.
    pub async fn invalidate(
        &self,
        marks: Vec<(Kind, Mark)>,
        counters: &[String],
    ) -> Result<Vec<(usize, u64)>, CacheError> {
        let kinds: Vec<Kind> = marks.iter().map(|(k, _)| *k).collect();
        let marks: Vec<Mark> = marks.into_iter().map(|(_, m)| m).collect();
        let copies = self.counter_copies(counters);
        let result = match &self.store {
            Store::None => return Ok(Vec::new()),
            Store::Redis(r) => timed("mark", r.mark(&marks, &copies)).await,
            Store::Memory(m) => timed("mark", m.mark(&marks, &copies))
                .await
                .map(|_| Vec::new()),
        };
        match result {
            Ok(history) => {
                for &(group, seen) in &history {
                    self.trust.saw_history(group, seen);
                }
                for k in kinds {
                    self.stats.add(k, Event::Invalidation, 1);
                }
                self.stats
                    .add(Kind::List, Event::Invalidation, counters.len() as u64);
                Ok(history)
            }
            // Delivered to the master, not yet to enough replicas: Redis is fine, so
            // reads keep using it; the outbox replays until the replicas have it.
            Err(e @ CacheError::NotReplicated { .. }) => {
                crate::metrics::wait_short();
                Err(e)
            }
            // Not yet a lost invalidation: the outbox keeps trying, and only when it
            // gives up (`undelivered`) does this instance read around the cache.
            Err(e) => {
                self.stats.add(Kind::List, Event::Error, 1);
                Err(e)
            }
        }
    }

    /// Stores list pages (key, entry, whether the key held a page already), one round
    /// trip. Not conditional: the counter tags inside each page decide whether a later
    /// read may use it. A page under a new key takes a token of the fill budget.
    pub async fn put_lists(&self, pages: Vec<(String, String, bool)>, tally: &RequestTally) {
        let skip = self.unusable_mask();
        let pages: Vec<(String, String)> = pages
            .into_iter()
            .filter(|(k, _, _)| skip & (1 << self.keys.group_of(k)) == 0)
            .filter(|(_, _, existed)| *existed || self.fill_budget.take(Kind::List.as_str()))
            .map(|(k, v, _)| (k, v))
            .collect();
        if pages.is_empty() {
            return;
        }
        let n = pages.len() as u64;
        let entries = pages
            .into_iter()
            .map(|(k, v)| (k, v, self.jittered(self.ttls.list)))
            .collect();
        let (written, failed) = match &self.store {
            Store::None => return,
            Store::Redis(r) => timed_parts("put", r.put_many(entries)).await,
            Store::Memory(m) => one_group(timed("put", m.put_many(entries)).await.map(|_| n)),
        };
        tally.round_trip();
        self.failed_groups(Kind::List, failed);
        self.stats.add(Kind::List, Event::Fill, written);
    }

    /// Test-only: the naive invalidation, a plain delete of `keys` and the counter bumps.
    #[cfg(feature = "test-hooks")]
    pub async fn delete_for_test(
        &self,
        keys: Vec<String>,
        counters: &[String],
    ) -> Result<(), CacheError> {
        use fred::interfaces::KeysInterface;
        let counters = &self.counter_copies(counters);
        match &self.store {
            Store::None => {}
            Store::Redis(r) => {
                let client = r.client().ok_or(CacheError::Unavailable)?;
                for key in keys {
                    client.del::<(), _>(key).await?;
                }
                r.mark(&[], counters).await?;
            }
            Store::Memory(m) => {
                m.remove_for_test(&keys).await;
                m.mark(&[], counters).await?;
            }
        }
        Ok(())
    }

    /// Makes every entry of this app unreachable at once (O(1)); tombstones stay in force.
    pub async fn clear(&self) -> Result<Option<u64>, CacheError> {
        match &self.store {
            Store::None => Ok(None),
            Store::Redis(r) => timed("clear", r.bump_epoch()).await.map(Some),
            Store::Memory(m) => timed("clear", m.bump_epoch()).await.map(Some),
        }
    }

    /// Redis server facts, when the backend is Redis and it answers; read from Redis at
    /// most once a second (see `info`).
    pub async fn redis_info(&self) -> Option<redis::RedisInfo> {
        let Store::Redis(r) = &self.store else {
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
    pub fn redis_client(&self) -> Option<fred::clients::Client> {
        match &self.store {
            Store::Redis(r) => r.client(),
            _ => None,
        }
    }

    /// The TTL of a writer's tombstone: the entry TTL with only positive jitter, and at
    /// least `TOMBSTONE_FLOOR`. A tombstone must outlive any fill still in flight that
    /// carries an older row (a reader that read the database just before the commit),
    /// so it never gets the shorter half of the spread, however short the entry TTL.
    pub fn tombstone_ttl(&self, entry_ttl: Duration) -> Duration {
        let spread = entry_ttl.as_millis() as u64 * u64::from(self.ttls.jitter_percent) / 100;
        let extra = if spread == 0 {
            0
        } else {
            rand::random_range(0..=spread)
        };
        (entry_ttl + Duration::from_millis(extra)).max(TOMBSTONE_FLOOR)
    }

    /// A TTL with +-`jitter_percent` random spread.
    pub fn jittered(&self, ttl: Duration) -> Duration {
        jitter(ttl, self.ttls.jitter_percent)
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

    /// The persisted query document under `hash` in Redis; `None` without Redis (the
    /// documents then live in process, see `documents`).
    pub async fn shared_document(&self, hash: &str) -> Option<Result<Option<String>, CacheError>> {
        let Store::Redis(r) = &self.store else {
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
        let Store::Redis(r) = &self.store else {
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

/// A one-group store's result in the shape of `timed_parts`.
fn one_group(result: Result<u64, CacheError>) -> (u64, Vec<(usize, CacheError)>) {
    match result {
        Ok(n) => (n, Vec::new()),
        Err(e) => (0, vec![(0, e)]),
    }
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

/// Shared by every store: a TTL spread by +-`percent`, at least 1 ms.
pub fn jitter(ttl: Duration, percent: u32) -> Duration {
    if percent == 0 {
        return ttl;
    }
    let ms = ttl.as_millis() as f64;
    let spread = ms * f64::from(percent) / 100.0;
    let value = ms + rand::random_range(-spread..=spread);
    Duration::from_millis(value.max(1.0) as u64)
}

/// The shortest life of a tombstone (see `Cache::tombstone_ttl`).
pub const TOMBSTONE_FLOOR: Duration = Duration::from_secs(60);

/// A shared handle to the cache.
pub type SharedCache = Arc<Cache>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tombstones_never_live_shorter_than_their_entry_or_the_floor() {
        let cache = Cache::new(
            CacheBackendKind::None,
            None,
            "t:",
            CacheTtls {
                product: Duration::from_secs(600),
                category: Duration::from_secs(600),
                list: Duration::from_secs(300),
                absent: Duration::from_secs(60),
                jitter_percent: 10,
            },
            Duration::from_millis(100),
            Duration::from_millis(500),
            None,
            1,
        )
        .expect("a cache");
        for _ in 0..1000 {
            let t = cache.tombstone_ttl(Duration::from_secs(600));
            assert!(
                t >= Duration::from_secs(600) && t <= Duration::from_secs(660),
                "{t:?}"
            );
            assert!(cache.tombstone_ttl(Duration::from_secs(5)) >= TOMBSTONE_FLOOR);
        }
    }

    #[test]
    fn jitter_stays_within_its_percent() {
        let base = Duration::from_secs(600);
        for _ in 0..1000 {
            let j = jitter(base, 10);
            assert!(
                j >= Duration::from_secs(540) && j <= Duration::from_secs(660),
                "{j:?}"
            );
        }
        assert_eq!(jitter(base, 0), base);
    }
}
