//! The bound on database reads: how many run at once, how many may wait and for how
//! long (a cache outage under load then slows requests instead of exhausting the pool;
//! writes keep their connections), and how many statements one request may cause.
//! Every read statement of the catalog runs through `read_sql` (or, its slot already
//! held, `counted_sql`), which also counts and times it.
use std::sync::atomic::Ordering::Relaxed;

use super::Catalog;
use crate::cache::RequestTally;

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
    /// Runs one read statement within the read bound, counting it against the request
    /// and the process and timing it for the metrics. Past the bound (a full queue, or
    /// no slot within the patience) it fails with `error::READ_QUEUE_FULL`, which the
    /// client sees as `OVERLOADED`.
    pub(super) async fn read_sql<T>(
        &self,
        tally: &RequestTally,
        statement: impl Future<Output = Result<T, sea_orm::DbErr>>,
    ) -> Result<T, sea_orm::DbErr> {
        let _slot = self.read_slot().await?;
        self.counted_sql(tally, statement).await
    }

    /// Runs one read statement (its read slot already held), counted and timed.
    pub(super) async fn counted_sql<T>(
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

    pub(super) async fn read_slot(
        &self,
    ) -> Result<tokio::sync::SemaphorePermit<'_>, sea_orm::DbErr> {
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
