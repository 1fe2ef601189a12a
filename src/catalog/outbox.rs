//! Delivering invalidations. After a commit the catalog sends the write's tombstone and
//! list counter bumps to the cache (one script: tombstones first, then the counters),
//! and the mutation waits (up to one second) until Redis has it. With a shared cache
//! (Redis) the same invalidation is first recorded in the write's transaction
//! (`cache_outbox`) and marked delivered once Redis acknowledges it, with the history
//! counter value of each key group it touched (`catalog::history` checks each group
//! against the highest; older delivered rows are pruned once a second); if Redis
//! stayed unreachable, a replayer on every instance sends the recorded rows until it is
//! back (every 50 ms on the instance that saw the failure, once a second on the others,
//! which covers an instance that died). Replays are harmless: tombstones only ever raise
//! versions, and a counter bump only retires list pages. An instance that saw any
//! cache error reads around the cache until it has replayed the outbox and Redis answers
//! again, so it cannot serve an entry whose tombstone was lost while Redis was away. A
//! writer that gave up waits for the trust leases (`lease`) before it answers, so no
//! other instance serves what it changed either.
use std::{
    sync::atomic::Ordering::SeqCst,
    time::{Duration, Instant},
};

use chrono::Utc;
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
    sea_query::{Expr, ExprTrait},
};

use super::{
    Catalog,
    write::timed,
    written::{Written, counter_names},
};
use crate::{
    cache::{CacheError, Kind, Mark},
    db::entities::cache_outbox,
};

/// How long a mutation keeps trying to deliver its invalidation before it returns and
/// leaves it to the replayers.
const DELIVERY_PATIENCE: Duration = Duration::from_secs(1);

/// Replayers take only rows older than this: a younger row's writer may be delivering
/// it, or have delivered it with its marker still queued (`delivered`). Shorter than
/// the patience, so a row whose writer gave up is always old enough.
pub(super) const REPLAY_GRACE: Duration = Duration::from_millis(500);

/// Rows one replay round sends in one script call per group.
const REPLAY_BATCH: u64 = 500;

/// Rows a replay round tries one by one when its batch cannot be delivered.
const ONE_BY_ONE: usize = 64;

impl Catalog {
    /// Inside the write's transaction: records the invalidation when the cache is
    /// shared (an in-process cache cannot miss one).
    pub(super) async fn record_invalidation(
        &self,
        txn: &impl ConnectionTrait,
        w: &Written,
    ) -> Result<Option<i64>, DbErr> {
        if !self.records_outbox() {
            return Ok(None);
        }
        let row = cache_outbox::ActiveModel {
            product_id: Set(w.product_id),
            version: Set(w.version),
            gone: Set(w.gone),
            new_category_id: Set(w.new_category),
            // Postgres: the column's default, the database's `now()` (the clock replayers
            // compare ages with); SQLite lives on one host, whose clock is the same.
            created_at: if self.db().get_database_backend() == DbBackend::Postgres {
                NotSet
            } else {
                Set(Utc::now())
            },
            list_counters: Set(w.counters.as_ref().map(|c| c.join(" "))),
            change: Set(None),
            ..Default::default()
        };
        Ok(Some(
            timed(cache_outbox::Entity::insert(row).exec_with_returning(txn))
                .await?
                .id,
        ))
    }

    /// Inside a transaction that changes rows behind the cache's back (`larder seed`):
    /// records a row that names no item and no counters, whose delivery clears the whole
    /// cache (an epoch bump), so the clear happens even if Redis is away right now.
    pub(crate) async fn record_clear(
        &self,
        txn: &impl ConnectionTrait,
    ) -> Result<Option<i64>, DbErr> {
        self.record_invalidation(txn, &Written::clear()).await
    }

    /// Delivers every recorded invalidation now, however young, trying for up to
    /// `limit`; false if some are still pending (every instance's replayer keeps
    /// trying).
    pub async fn deliver_pending(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            match self.replay_older_than(Duration::ZERO).await {
                Ok(false) => return true,
                Ok(true) => continue,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(_) => return false,
            }
        }
    }

    /// After the commit: tombstones and the counter bumps, one round trip. On success
    /// the outbox row goes; on failure it stays for the replayer, which is woken.
    pub(super) async fn invalidate(&self, w: Written, outbox: Option<i64>) {
        #[cfg(feature = "test-hooks")]
        let w = {
            let mut w = w;
            if self.hooks().naive_lists() {
                // The broken list protocol: the counters were bumped before the commit.
                w.counters = Some(Vec::new());
            }
            if self.hooks().naive_invalidation() {
                let keys = vec![self.cache().keys.item(Kind::Product, w.product_id)];
                let counters = counter_names(std::slice::from_ref(&w));
                let _ = self.cache().delete_for_test(keys, &counters).await;
                return;
            }
            w
        };
        let committed = Instant::now();
        // An instance of another cache layout never writes the cache: it gives up at
        // once, and the replayers of the layout in use deliver the row.
        if let Some(id) = outbox
            && !self.cache().lease.speaks_layout()
        {
            return self.give_up(id, committed).await;
        }
        // The mutation waits up to DELIVERY_PATIENCE for Redis: other instances cannot
        // know of a write until its tombstone lands, so returning early would let them
        // serve the old value after the mutation returned.
        let deadline = committed + DELIVERY_PATIENCE;
        loop {
            let written = std::slice::from_ref(&w);
            let counters = counter_names(written);
            match self
                .cache()
                .invalidate(self.marks(written), &counters)
                .await
            {
                Ok(history) => {
                    if let Some(id) = outbox {
                        // Delivered under this instance's layout: enough only while that
                        // layout is the one in use, which a lease held now vouches for
                        // (see `lease`). Otherwise the row stays undelivered, for the
                        // replayers of the layout in use, and the writer gives up.
                        if !self.cache().lease.held() {
                            self.give_up(id, committed).await;
                            return;
                        }
                        self.mark_delivered(id, history).await;
                    }
                    // Delivered: subscribers that react by reading see the new value.
                    self.publish(written).await;
                    return;
                }
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                Err(e) => {
                    tracing::warn!(error = %e, product = w.product_id, "invalidation not delivered in time; the outbox will replay it");
                    self.inner.outbox_failed_seq.fetch_add(1, SeqCst);
                    // On the master but short of replicas: reads there see it.
                    if !matches!(e, CacheError::NotReplicated { .. }) {
                        self.cache().undelivered(self.groups_of(&w));
                    }
                    self.inner.outbox_wake.notify_one();
                    // Other instances may still trust what this write changed: answer
                    // only once no lease that does not list the row is left (short of
                    // replicas counts as undelivered: a failover could lose it).
                    if let Some(id) = outbox {
                        self.give_up(id, committed).await;
                    }
                    return;
                }
            }
        }
    }

    fn marks(&self, written: &[Written]) -> Vec<(Kind, Mark)> {
        let cache = self.cache();
        let mut marks = Vec::with_capacity(written.len());
        // Product ids start at 1: id 0 is a clear (`Written::clear`), which marks nothing.
        for w in written.iter().filter(|w| w.product_id > 0) {
            marks.push((
                Kind::Product,
                Mark {
                    key: cache.keys.item(Kind::Product, w.product_id),
                    version: w.version,
                    gone: w.gone,
                    ttl: cache.tombstone_ttl(cache.ttls.product),
                },
            ));
            if let Some(cat) = w.new_category {
                marks.push((
                    Kind::Category,
                    Mark {
                        key: cache.keys.item(Kind::Category, cat),
                        version: 1,
                        gone: false,
                        ttl: cache.tombstone_ttl(cache.ttls.category),
                    },
                ));
            }
        }
        marks
    }

    /// Sends recorded invalidations until Redis takes them, for the life of the app.
    pub fn spawn_outbox_replayer(&self) -> tokio::task::JoinHandle<()> {
        let catalog = self.clone();
        tokio::spawn(async move {
            let inner = &catalog.inner;
            loop {
                let cache = catalog.cache();
                let failed = inner.outbox_failed_seq.load(SeqCst);
                let urgent = failed > inner.outbox_replayed_seq.load(SeqCst) || cache.is_degraded();
                // About a second, at random: instances started together do not replay
                // in step (nor in step with anything else that keeps a rhythm).
                let wait = if urgent {
                    Duration::from_millis(50)
                } else {
                    Duration::from_millis(rand::random_range(750..=1250))
                };
                tokio::select! {
                    _ = inner.outbox_wake.notified() => {}
                    _ = tokio::time::sleep(wait) => {}
                }
                // Not connected, or another layout's instances own the cache now.
                if !cache.any_connected() || !cache.lease.speaks_layout() {
                    continue;
                }
                // Counters read before the replay: failures after them are not covered.
                let failed = inner.outbox_failed_seq.load(SeqCst);
                let errors = cache.error_seqs();
                // Drain the outbox; only then may a degraded group be read through the
                // cache again, since a tombstone it could not take may be among the rows.
                let pending = loop {
                    match catalog.replay_once().await {
                        Ok(true) => continue,
                        Ok(false) => break 0,
                        Err(groups) => break groups,
                    }
                };
                if pending == 0 {
                    inner.outbox_replayed_seq.fetch_max(failed, SeqCst);
                    if let Err(e) = catalog.prune_delivered().await {
                        tracing::warn!(error = %e, "pruning delivered outbox rows failed");
                    }
                }
                if cache.is_degraded() && cache.resync_done(&errors, pending).await {
                    tracing::info!(
                        "cache reachable and outbox replayed: reading through the cache again"
                    );
                }
            }
        })
    }

    /// The key groups (bit g) a row's invalidation touches: its items' groups, and every
    /// group when it bumps list counters (each group has a copy) or clears.
    fn groups_of(&self, w: &Written) -> u64 {
        let cache = self.cache();
        if w.counters.as_ref().is_none_or(|c| !c.is_empty()) {
            return cache.all_groups();
        }
        let items = self.marks(std::slice::from_ref(w));
        cache.groups_of(items.iter().map(|(_, m)| m.key.as_str()))
    }

    /// One round of the replayer: rows older than `REPLAY_GRACE`.
    pub async fn replay_once(&self) -> Result<bool, u64> {
        self.replay_older_than(REPLAY_GRACE).await
    }

    /// One round: the oldest undelivered rows older than `min_age` in one script call
    /// per group, then recorded as delivered. `Ok(true)` when more rows may be waiting.
    /// If the batch cannot be delivered (a node is down), its rows are tried one by one,
    /// so the rows that touch only reachable groups still go; `Err` then names the
    /// groups (bit g) that rows still pending touch (or every group, when the outbox
    /// could not be read).
    async fn replay_older_than(&self, min_age: Duration) -> Result<bool, u64> {
        let all = self.cache().all_groups();
        if !self.cache().lease.speaks_layout() {
            return Err(all);
        }
        // The age on the clock that stamped the row (see `record_invalidation`).
        let old_enough = if self.db().get_database_backend() == DbBackend::Postgres {
            Expr::cust(format!(
                "created_at < now() - interval '{} milliseconds'",
                min_age.as_millis()
            ))
        } else {
            Expr::col(cache_outbox::Column::CreatedAt).lt(Utc::now() - min_age)
        };
        let rows = cache_outbox::Entity::find()
            .filter(cache_outbox::Column::DeliveredSeq.is_null())
            .filter(old_enough)
            .order_by_asc(cache_outbox::Column::Id)
            .limit(REPLAY_BATCH)
            .all(self.db())
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "outbox read failed");
                all
            })?;
        if rows.is_empty() {
            return Ok(false);
        }
        if self.deliver(&rows).await.is_ok() {
            tracing::info!(rows = rows.len(), "replayed deferred cache invalidations");
            return Ok(rows.len() as u64 == REPLAY_BATCH);
        }
        let mut pending = 0;
        for (i, row) in rows.iter().enumerate() {
            let w = Written::from(row);
            if i >= ONE_BY_ONE || self.deliver(std::slice::from_ref(row)).await.is_err() {
                pending |= self.groups_of(&w);
            }
        }
        Err(pending)
    }

    /// Delivers `rows` (one invalidation for all) and records them delivered.
    async fn deliver(&self, rows: &[cache_outbox::Model]) -> Result<(), ()> {
        let written: Vec<Written> = rows.iter().map(Written::from).collect();
        let counters = counter_names(&written);
        let cache = self.cache();
        let Ok(history) = cache.invalidate(self.marks(&written), &counters).await else {
            return Err(());
        };
        // A row that names no counters (a seed's, or one from before rows named them):
        // no way to know which lists changed, so every entry goes (tombstones stay).
        if written.iter().any(|w| w.counters.is_none()) {
            if cache.clear().await.is_err() {
                return Err(());
            }
            tracing::info!("delivered an outbox row without list counters: cleared the cache");
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let recorded = self
            .delivered(&ids, &history)
            .await
            .map_err(|e| tracing::warn!(error = %e, "recording replayed outbox rows failed"));
        // Their changes go out now that they are delivered (late, but never before).
        self.publish(&written).await;
        recorded
    }
}
