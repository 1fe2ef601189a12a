//! The delivered marker of an outbox row: the history counter value of each key group
//! the delivery reached, as Redis returned them (`delivered_hist`, and the highest in
//! `delivered_seq`, which marks the row delivered). The history check compares Redis
//! against each group's highest recorded value, so pruning keeps the row holding it.
use sea_orm::{ColumnTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr};

use super::Catalog;
use crate::db::entities::cache_outbox;

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
    /// Records rows as delivered, with the history counter values Redis gave them (the
    /// anchor of `catalog::history`), in one statement. `delivered_seq` holds the
    /// highest of them (it marks the row delivered), `delivered_hist` each group's.
    pub(super) async fn delivered(
        &self,
        ids: &[i64],
        history: &[(usize, u64)],
    ) -> Result<(), DbErr> {
        let highest = history.iter().map(|(_, v)| *v).max().unwrap_or(0);
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
