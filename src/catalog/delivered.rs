//! The delivered marker of an outbox row: the history counter value of each key group
//! the delivery reached, as Redis returned them (`delivered_hist`, and the highest in
//! `delivered_seq`, which marks the row delivered). The history check compares Redis
//! against each group's highest recorded value, so pruning keeps the row holding it.
//!
//! A mutation's marker is written in a batch (on Postgres): the mutation hands it to
//! the marker task and returns, and the task writes what has queued in one statement,
//! at most once per `MARK_EVERY`. Sound because nothing reads a marker as "not
//! delivered yet" sooner than `REPLAY_GRACE` (`outbox`): the values are the ones Redis
//! returned; a row stays undelivered until its marker is written, so a replay still
//! heals a Redis that lost it meanwhile (or the history check, once the marker is
//! written, sees the loss); and no replayer takes a row younger than the grace, so a
//! queued marker does not make another instance deliver the row again. A marker that
//! is lost (the statement failed, the instance stopped) leaves its row to a replay:
//! a second delivery only raises what the first raised.
use std::time::Duration;

use sea_orm::{
    ColumnTrait, DatabaseConnection, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect,
    sea_query::Expr,
};
use tokio::sync::{mpsc, oneshot};

use super::{Catalog, write::timed};
use crate::db::{entities::cache_outbox, writes};

/// At most one batch of delivered markers per this long.
const MARK_EVERY: Duration = Duration::from_millis(20);

/// Most markers one statement records.
const MARK_BATCH: usize = 1000;

/// A delivered outbox row: its id, and the history values its delivery reached.
pub(super) type Delivery = (i64, Vec<(usize, u64)>);

/// What the marker task takes: a delivered row, or a request to say when everything
/// queued before it is written.
pub(super) enum Queued {
    Mark(Delivery),
    Flush(oneshot::Sender<()>),
}

/// Starts the marker task (Postgres only; elsewhere markers are written at once):
/// returns the queue it writes from, for the life of the catalog (the task ends when
/// the queue's sender is dropped).
pub(super) fn spawn_marker(db: DatabaseConnection) -> Option<mpsc::UnboundedSender<Queued>> {
    if db.get_database_backend() != DbBackend::Postgres {
        return None;
    }
    let (tx, mut rx) = mpsc::unbounded_channel::<Queued>();
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(MARK_BATCH);
        while rx.recv_many(&mut batch, MARK_BATCH).await > 0 {
            let mut rows = Vec::with_capacity(batch.len());
            let mut waiting = Vec::new();
            for queued in batch.drain(..) {
                match queued {
                    Queued::Mark((id, history)) => {
                        rows.push((id, highest(&history) as i64, history_text(&history)))
                    }
                    Queued::Flush(done) => waiting.push(done),
                }
            }
            if !rows.is_empty()
                && let Err(e) = timed(writes::record_delivered(&db, &rows)).await
            {
                // Harmless: the rows stay undelivered, and a replayer sends them again.
                tracing::warn!(error = %e, rows = rows.len(), "could not record delivered outbox rows");
            }
            for done in waiting {
                let _ = done.send(());
            }
            if !rows.is_empty() {
                tokio::time::sleep(MARK_EVERY).await;
            }
        }
    });
    Some(tx)
}

fn highest(history: &[(usize, u64)]) -> u64 {
    history.iter().map(|(_, v)| *v).max().unwrap_or(0)
}

/// A delivery's history counters as an outbox row stores them: `group:value ...`.
fn history_text(history: &[(usize, u64)]) -> String {
    history
        .iter()
        .map(|(g, v)| format!("{g}:{v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Per group, the history value a delivered row recorded. Rows from before the
/// column recorded one value, of the only group there was.
fn row_history(seq: i64, text: Option<&str>) -> Vec<(usize, u64)> {
    match text {
        None => vec![(0, seq.max(0) as u64)],
        Some(t) => t
            .split_whitespace()
            .filter_map(|p| {
                let (g, v) = p.split_once(':')?;
                Some((g.parse().ok()?, v.parse().ok()?))
            })
            .collect(),
    }
}

impl Catalog {
    /// Records a mutation's row as delivered: queued for the marker task when it runs,
    /// else at once.
    pub(super) async fn mark_delivered(&self, id: i64, history: Vec<(usize, u64)>) {
        if let Some(tx) = self.inner.marks.get()
            && tx.send(Queued::Mark((id, history.clone()))).is_ok()
        {
            return;
        }
        if let Err(e) = timed(self.delivered(&[id], &history)).await {
            // Harmless: the replayer sends it again and records it then.
            tracing::warn!(error = %e, "could not record a delivered outbox row");
        }
    }

    /// Waits until every delivered marker queued so far is written (or failed).
    pub async fn flush_marks(&self) {
        if let Some(tx) = self.inner.marks.get() {
            let (done, written) = oneshot::channel();
            if tx.send(Queued::Flush(done)).is_ok() {
                let _ = written.await;
            }
        }
    }

    /// Records rows as delivered, with the history counter values Redis gave them (the
    /// anchor of `catalog::history`), in one statement. `delivered_seq` holds the
    /// highest of them (it marks the row delivered), `delivered_hist` each group's.
    pub(super) async fn delivered(
        &self,
        ids: &[i64],
        history: &[(usize, u64)],
    ) -> Result<(), DbErr> {
        let highest = highest(history);
        cache_outbox::Entity::update_many()
            .col_expr(
                cache_outbox::Column::DeliveredSeq,
                Expr::value(highest as i64),
            )
            .col_expr(
                cache_outbox::Column::DeliveredHist,
                Expr::value(history_text(history)),
            )
            .filter(cache_outbox::Column::Id.is_in(ids.iter().copied()))
            .exec(self.db())
            .await
            .map(|_| ())
    }

    /// Per group, the highest history value Postgres recorded as delivered (0 for a
    /// group it recorded nothing for), and for each the row that holds it.
    pub async fn recorded_history(&self, groups: usize) -> Result<Vec<(u64, i64)>, DbErr> {
        let rows: Vec<(i64, Option<i64>, Option<String>)> = cache_outbox::Entity::find()
            .select_only()
            .column(cache_outbox::Column::Id)
            .column(cache_outbox::Column::DeliveredSeq)
            .column(cache_outbox::Column::DeliveredHist)
            .filter(cache_outbox::Column::DeliveredSeq.is_not_null())
            .into_tuple()
            .all(self.db())
            .await?;
        let mut highest = vec![(0u64, 0i64); groups.max(1)];
        for (id, seq, text) in rows {
            for (g, v) in row_history(seq.unwrap_or(0), text.as_deref()) {
                if let Some(h) = highest.get_mut(g)
                    && v > h.0
                {
                    *h = (v, id);
                }
            }
        }
        Ok(highest)
    }

    /// Deletes delivered rows except those holding a group's highest history value,
    /// which the history check compares Redis against.
    pub async fn prune_delivered(&self) -> Result<u64, DbErr> {
        let keep: Vec<i64> = self
            .recorded_history(self.cache().keys.groups())
            .await?
            .into_iter()
            .filter(|(v, _)| *v > 0)
            .map(|(_, id)| id)
            .collect();
        if keep.is_empty() {
            return Ok(0);
        }
        Ok(cache_outbox::Entity::delete_many()
            .filter(cache_outbox::Column::DeliveredSeq.is_not_null())
            .filter(cache_outbox::Column::Id.is_not_in(keep))
            .exec(self.db())
            .await?
            .rows_affected)
    }
}
