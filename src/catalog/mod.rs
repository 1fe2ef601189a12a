//! The use-cases. Every read of products and categories and every write goes through
//! `Catalog`: reads go cache -> single-flight -> SQL -> conditional fill; writes go
//! commit (one statement, or a transaction) -> invalidate (tombstone with the new
//! version, then a bump of each list counter the write can change).
//!
//! Layout:
//! - `model`: the catalog's types (cached and shown); list arguments from `db::lists`.
//! - `read`: item reads through the cache, and the entry points for lists.
//! - `pages`: the list protocol (pages tagged with list counters, single-flight).
//! - `lists`: which list counters a page reads and a write bumps.
//! - `write`: create, update, delete, one statement each on Postgres (`db::writes`);
//!   `write_txn`: the same in a transaction, where one statement cannot do it.
//! - `written`: what a committed write leaves for the cache to forget.
//! - `outbox`: delivering invalidations after commit, and replaying undelivered ones;
//!   `delivered`: recording what Redis acknowledged (the history check's anchor), in
//!   batches.
//! - `events`: product changes published after delivery, relayed to subscribers.
//! - `history`: detecting a Redis that came back with older data (checked in Postgres).
//! - `lease`: renewing the trust lease through Postgres; a writer that gave up waits for
//!   every lease that may not know of it; the cache layout record.
//! - `flight`: per-instance single-flight for cache misses (items and pages).
//! - `batch`: concurrent item reads of different ids merged into one statement.
//! - `validate`: input rules.
//! - `bound`: the bound on database reads (at once, waiting, per request).
//! - `state`: what the layers above may know and do of the cache (status, counters,
//!   clearing it, response-cache checks, persisted query documents).
//! - `hooks`: test-only fault points (the `test-hooks` feature).
mod batch;
mod bound;
mod delivered;
pub(crate) mod events;
mod flight;
mod history;
pub mod hooks;
mod lease;
mod lists;
pub mod model;
mod outbox;
mod pages;
mod read;
mod state;
pub(crate) mod validate;
pub(crate) mod write;
mod write_txn;
mod written;

pub use bound::ReadBound;
pub use read::list_name;
pub use state::CacheStatus;

/// The cache's types that the layers above hold (a request's tally, an answer's
/// stamps, counters and their kinds, persisted query outcomes): named through the
/// catalog, which is the only way up to the cache.
pub use crate::cache::{
    documents::{Lookup, Registration},
    redis::RedisInfo,
    stamps::Stamps,
    stats::{Event, Kind, KindSnapshot, RequestTally},
};

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use sea_orm::DatabaseConnection;

use crate::cache::Cache;
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
    /// The queue of the delivered-marker task, once started (`delivered`).
    marks: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<delivered::Queued>>,
    /// The bound on database reads (see `read_sql`).
    reads: ReadBound,
    /// This instance's relay of product changes to its subscribers (`events`).
    relay: events::Relay,
    /// Persisted query documents (APQ), in the cache's store (`state`).
    documents: crate::cache::documents::Documents,
    /// The trust lease's own database connection (`lease`), once given; the pool
    /// otherwise.
    lease_db: std::sync::OnceLock<DatabaseConnection>,
}

impl Catalog {
    pub fn new(db: DatabaseConnection, cache: Arc<Cache>) -> Self {
        Self::with_read_bound(db, cache, ReadBound::default())
    }

    pub fn with_read_bound(db: DatabaseConnection, cache: Arc<Cache>, reads: ReadBound) -> Self {
        let documents = crate::config::PersistedQueryLimits {
            ttl: std::time::Duration::from_secs(86_400),
            max_count: 10_000,
            max_bytes: 16 * 1024 * 1024,
        };
        Self::with_limits(db, cache, reads, documents)
    }

    /// A catalog on `db` and `cache`, its database reads within `reads`, and its
    /// persisted query documents within `documents`.
    pub fn with_limits(
        db: DatabaseConnection,
        cache: Arc<Cache>,
        reads: ReadBound,
        documents: crate::config::PersistedQueryLimits,
    ) -> Self {
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
                marks: Default::default(),
                reads,
                relay: Default::default(),
                documents: crate::cache::documents::Documents::new(documents),
                lease_db: Default::default(),
            }),
        }
    }

    /// Gives the trust lease a database connection of its own (`db::connect_one`), so
    /// reads that fill the pool cannot starve its renewals. Before
    /// `start_background_work`; without it the lease renews through the pool.
    pub fn use_lease_connection(&self, db: DatabaseConnection) {
        let _ = self.inner.lease_db.set(db);
    }

    fn lease_db(&self) -> &DatabaseConnection {
        self.inner.lease_db.get().unwrap_or(&self.inner.db)
    }

    /// Starts what runs for the life of the app: the relay of product changes, and
    /// with a shared cache the trust lease's renewals, the outbox replayer and the
    /// history checker; then waits (briefly) until the shared cache's feed is up, its
    /// history checked and the lease held, so the first requests find it trusted.
    pub async fn start_background_work(&self) {
        self.spawn_change_relay();
        if self.cache().backend() == "redis" {
            self.cache()
                .feed
                .wait_up(std::time::Duration::from_secs(2))
                .await;
            if let Some(tx) = delivered::spawn_marker(self.db().clone()) {
                let _ = self.inner.marks.set(tx);
            }
            self.spawn_lease_renewer();
            self.spawn_outbox_replayer();
            self.spawn_history_checker();
            // Reads use Redis only once its history is checked: wait for that too.
            self.cache()
                .wait_trusted(std::time::Duration::from_secs(2))
                .await;
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
}
