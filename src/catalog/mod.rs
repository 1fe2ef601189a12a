//! The use-cases. Every read of products and categories and every write goes through
//! `Catalog`: reads go cache -> single-flight -> SQL -> conditional fill; writes go
//! transaction -> commit -> invalidate (tombstone with the new version, then a bump of
//! each list counter the write can change).
//!
//! Layout:
//! - `model`: the catalog's types (cached and shown), list arguments.
//! - `read`: item reads through the cache, and the entry points for lists.
//! - `pages`: the list protocol (pages tagged with list counters, single-flight).
//! - `lists`: which list counters a page reads and a write bumps.
//! - `write`: create, update, delete in one transaction each.
//! - `outbox`: delivering invalidations after commit, and replaying undelivered ones.
//! - `events`: product changes published after delivery, relayed to subscribers.
//! - `history`: detecting a Redis that came back with older data (checked in Postgres).
//! - `flight`: per-instance single-flight for cache misses (items and pages).
//! - `batch`: concurrent item reads of different ids merged into one statement.
//! - `validate`: input rules.
//! - `hooks`: test-only fault points (the `test-hooks` feature).
pub mod batch;
pub mod events;
pub mod flight;
pub mod history;
pub mod hooks;
pub mod lists;
pub mod model;
pub mod outbox;
pub mod pages;
pub mod read;
pub mod validate;
pub mod write;

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use sea_orm::DatabaseConnection;

use crate::cache::{Cache, RequestTally};
use model::{Category, CategoryCounts, ListPage, Product};

/// Most categories kept in process.
const LOCAL_CATEGORIES: u64 = 10_000;

/// Shared by all requests; cheap to clone.
#[derive(Clone)]
pub struct Catalog {
    inner: Arc<Inner>,
}

struct Inner {
    /// The connection pool.
    db: DatabaseConnection,
    /// The read-through cache (possibly the `none` backend).
    cache: Arc<Cache>,
    /// Single-flight maps, one per cached entity and list.
    product_flights: flight::Flights<i32, Product>,
    category_flights: flight::Flights<i32, Category>,
    product_batch: batch::Batcher<Product>,
    category_batch: batch::Batcher<Category>,
    page_flights: flight::Flights<String, pages::Built<ListPage>>,
    counts_flights: flight::Flights<String, pages::Built<CategoryCounts>>,
    /// In-process copies of categories, tagged with the cache epoch they were read
    /// under. Safe because no mutation changes or deletes a category: a copy is used
    /// only by a request that saw the same epoch (so `clearCache` and `larder seed`
    /// retire them), and only present categories are kept (absent ones go through the
    /// cache, where a creation replaces their marker).
    local_categories: moka::sync::Cache<i32, (u64, Category)>,
    /// SQL statements sent since start, for tests and the stats.
    sql_total: AtomicU64,
    /// Fault points; empty unless a test installs one.
    hooks: hooks::Hooks,
    /// Invalidations of this instance that failed, and how many of those a completed
    /// replay covered: while the first is ahead, the replayer polls quickly.
    outbox_failed_seq: AtomicU64,
    outbox_replayed_seq: AtomicU64,
    /// Wakes the replayer at once.
    outbox_wake: tokio::sync::Notify,
    /// The bound on database reads (see `read_sql`).
    reads: ReadBound,
    /// This instance's relay of product changes to its subscribers (`events`).
    relay: events::Relay,
}

/// How many database reads run at once and how many may wait: a cache outage under load
/// then slows requests instead of exhausting the pool (writes keep their connections);
/// and how many statements one request may cause (`per_request`).
pub struct ReadBound {
    slots: tokio::sync::Semaphore,
    size: usize,
    /// Most reads seen running at once (for tests and the stats).
    peak: std::sync::atomic::AtomicUsize,
    waiting: std::sync::atomic::AtomicUsize,
    queue: usize,
    patience: std::time::Duration,
    /// SQL statements one request's reads may cause (`QUERY_MAX_SQL_STATEMENTS`).
    pub per_request: usize,
}

impl ReadBound {
    /// `concurrency` reads at once, `queue` more waiting at most `patience` each.
    pub fn new(concurrency: usize, queue: usize, patience: std::time::Duration) -> Self {
        Self {
            slots: tokio::sync::Semaphore::new(concurrency.max(1)),
            size: concurrency.max(1),
            peak: Default::default(),
            waiting: Default::default(),
            queue,
            patience,
            per_request: 50,
        }
    }

    /// The same, with at most `n` statements per request.
    pub fn per_request(mut self, n: usize) -> Self {
        self.per_request = n.max(1);
        self
    }
}

impl Default for ReadBound {
    fn default() -> Self {
        Self::new(8, 1024, std::time::Duration::from_millis(750))
    }
}

/// Counts a waiting read for as long as it waits (also when its request is dropped).
struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Catalog {
    pub fn new(db: DatabaseConnection, cache: Arc<Cache>) -> Self {
        Self::with_read_bound(db, cache, ReadBound::default())
    }

    pub fn with_read_bound(db: DatabaseConnection, cache: Arc<Cache>, reads: ReadBound) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                cache,
                product_flights: Default::default(),
                category_flights: Default::default(),
                product_batch: Default::default(),
                category_batch: Default::default(),
                page_flights: Default::default(),
                counts_flights: Default::default(),
                local_categories: moka::sync::Cache::new(LOCAL_CATEGORIES),
                sql_total: AtomicU64::new(0),
                hooks: Default::default(),
                outbox_failed_seq: Default::default(),
                outbox_replayed_seq: Default::default(),
                outbox_wake: Default::default(),
                reads,
                relay: Default::default(),
            }),
        }
    }

    /// The same database pool with no cache in front: for uncached comparisons.
    pub fn without_cache(&self) -> Self {
        let none = Cache::new(
            crate::config::CacheBackendKind::None,
            None,
            "",
            self.cache().ttls.clone(),
            Default::default(),
            Default::default(),
            None,
            1,
        );
        match none {
            Ok(cache) => Self::new(self.db().clone(), Arc::new(cache)),
            Err(_) => self.clone(),
        }
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.inner.db
    }

    pub fn cache(&self) -> &Arc<Cache> {
        &self.inner.cache
    }

    pub fn hooks(&self) -> &hooks::Hooks {
        &self.inner.hooks
    }

    /// A tally for one request's reads, with its SQL statement limit.
    pub fn request_tally(&self) -> RequestTally {
        RequestTally::with_sql_limit(self.inner.reads.per_request)
    }

    /// Whether this process has read category `id` before. Categories are never deleted
    /// or renamed, so a category seen once exists for good (whatever the epoch).
    pub fn category_known(&self, id: i32) -> bool {
        self.inner.local_categories.contains_key(&id)
    }

    /// SQL statements sent by this process since it started.
    pub fn sql_total(&self) -> u64 {
        self.inner.sql_total.load(Relaxed)
    }

    /// Runs one read statement within the read bound, counting it against the request
    /// and the process and timing it for the metrics. Past the bound (a full queue, or
    /// no slot within the patience) it fails with `error::READ_QUEUE_FULL`, which the
    /// client sees as `OVERLOADED`.
    async fn read_sql<T>(
        &self,
        tally: &RequestTally,
        statement: impl Future<Output = Result<T, sea_orm::DbErr>>,
    ) -> Result<T, sea_orm::DbErr> {
        let _slot = self.read_slot().await?;
        self.counted_sql(tally, statement).await
    }

    /// Runs one read statement (its read slot already held), counted and timed.
    async fn counted_sql<T>(
        &self,
        tally: &RequestTally,
        statement: impl Future<Output = Result<T, sea_orm::DbErr>>,
    ) -> Result<T, sea_orm::DbErr> {
        self.hooks().before_read().await;
        tally.sql();
        self.inner.sql_total.fetch_add(1, Relaxed);
        let started = std::time::Instant::now();
        let result = statement.await;
        crate::metrics::sql_statement("read", started.elapsed().as_secs_f64());
        result
    }

    /// Most database reads this process ran at once.
    pub fn db_read_peak(&self) -> usize {
        self.inner.reads.peak.load(Relaxed)
    }

    async fn read_slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, sea_orm::DbErr> {
        let b = &self.inner.reads;
        let running = |slot| {
            b.peak
                .fetch_max(b.size - b.slots.available_permits(), Relaxed);
            slot
        };
        if let Ok(slot) = b.slots.try_acquire() {
            return Ok(running(slot));
        }
        let refused = || {
            crate::metrics::db_read_refused();
            sea_orm::DbErr::Custom(crate::error::READ_QUEUE_FULL.into())
        };
        if b.waiting.fetch_add(1, Relaxed) >= b.queue {
            b.waiting.fetch_sub(1, Relaxed);
            return Err(refused());
        }
        let _waiting = Waiting(&b.waiting);
        match tokio::time::timeout(b.patience, b.slots.acquire()).await {
            Ok(Ok(slot)) => Ok(running(slot)),
            _ => Err(refused()),
        }
    }
}
