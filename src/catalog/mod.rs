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
//! - `history`: detecting a Redis that came back with older data (checked in Postgres).
//! - `flight`: per-instance single-flight for cache misses (items and pages).
//! - `validate`: input rules.
//! - `hooks`: test-only fault points (the `test-hooks` feature).
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
}

impl Catalog {
    pub fn new(db: DatabaseConnection, cache: Arc<Cache>) -> Self {
        Self {
            inner: Arc::new(Inner {
                db,
                cache,
                product_flights: Default::default(),
                category_flights: Default::default(),
                page_flights: Default::default(),
                counts_flights: Default::default(),
                local_categories: moka::sync::Cache::new(LOCAL_CATEGORIES),
                sql_total: AtomicU64::new(0),
                hooks: Default::default(),
                outbox_failed_seq: Default::default(),
                outbox_replayed_seq: Default::default(),
                outbox_wake: Default::default(),
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
            None,
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

    /// SQL statements sent by this process since it started.
    pub fn sql_total(&self) -> u64 {
        self.inner.sql_total.load(Relaxed)
    }

    /// Runs one read statement, counting it against the request and the process and
    /// timing it for the metrics.
    async fn read_sql<T>(
        &self,
        tally: &RequestTally,
        statement: impl Future<Output = Result<T, sea_orm::DbErr>>,
    ) -> Result<T, sea_orm::DbErr> {
        tally.sql();
        self.inner.sql_total.fetch_add(1, Relaxed);
        let started = std::time::Instant::now();
        let result = statement.await;
        crate::metrics::sql_statement("read", started.elapsed().as_secs_f64());
        result
    }
}
