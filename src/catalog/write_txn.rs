//! The transactional writes: SQLite's (no data-modifying CTEs), and on Postgres the
//! ones a single statement cannot do (a write that names a category to create; the
//! test-only naive list mode). One transaction per mutation: an update reads the old
//! row locked (`SELECT ... FOR UPDATE` on Postgres; SQLite's IMMEDIATE transaction
//! already serializes writers), changes it, records the invalidation (`outbox`) with
//! its list counters, and commits. The caller invalidates after the commit.
use chrono::Utc;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};

use super::{
    Catalog,
    lists::{Listed, write_counters},
    model::{Category, Product},
    write::{ValidNew, ValidPatch, timed},
    written::Written,
};
use crate::{
    db::{
        entities::{category, product},
        queries,
    },
    error::AppError,
};

/// A committed write: the row (for a deletion, as it was), what to invalidate, and its
/// outbox row.
type Committed = (Product, Written, Option<i64>);

impl Catalog {
    /// A write transaction. On SQLite it takes the write lock at `BEGIN` (IMMEDIATE):
    /// a deferred transaction that reads first cannot upgrade to a writer once another
    /// write committed, and fails with "database is locked" instead of waiting.
    async fn begin(&self) -> Result<DatabaseTransaction, sea_orm::DbErr> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..Default::default()
        };
        timed(self.db().begin_with_options(options)).await
    }

    pub(super) async fn create_in_transaction(&self, new: ValidNew) -> Result<Committed, AppError> {
        let txn = self.begin().await?;
        let (name, slug) = &new.category;
        let (category, created) = find_or_create_category(&txn, name, slug).await?;
        let now = Utc::now();
        let row = product::ActiveModel {
            name: Set(new.name),
            description: Set(new.description),
            price_cents: Set(new.price_cents),
            category_id: Set(category.id),
            stock_quantity: Set(new.stock),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        };
        let row: Product = timed(product::Entity::insert(row).exec_with_returning(&txn))
            .await?
            .into();
        // A creation's tombstone at version 1 also replaces any "absent" marker.
        let written = Written {
            product_id: row.id,
            version: 1,
            gone: false,
            new_category: created.then_some(category.id),
            counters: Some(write_counters(None, Some(&Listed::from(&row)))),
        };
        self.commit(txn, row, written).await
    }

    pub(super) async fn update_in_transaction(
        &self,
        id: i32,
        patch: ValidPatch,
    ) -> Result<Committed, AppError> {
        let txn = self.begin().await?;
        // The row as it was, locked until the commit: which lists the write changes.
        let old: Product = timed(product::Entity::find_by_id(id).lock_exclusive().one(&txn))
            .await?
            .ok_or_else(|| AppError::not_found("product", id))?
            .into();
        let mut new_category = None;
        let mut update = product::Entity::update_many()
            .col_expr(
                product::Column::Version,
                Expr::col(product::Column::Version).add(1),
            )
            .col_expr(product::Column::UpdatedAt, Expr::value(Utc::now()));
        if let Some(v) = patch.name {
            update = update.col_expr(product::Column::Name, Expr::value(v));
        }
        if let Some(v) = patch.description {
            update = update.col_expr(product::Column::Description, Expr::value(v));
        }
        if let Some(v) = patch.price_cents {
            update = update.col_expr(product::Column::PriceCents, Expr::value(v));
        }
        if let Some(v) = patch.stock {
            update = update.col_expr(product::Column::StockQuantity, Expr::value(v));
        }
        if let Some((cat_name, slug)) = patch.category {
            let (cat, created) = find_or_create_category(&txn, &cat_name, &slug).await?;
            update = update.col_expr(product::Column::CategoryId, Expr::value(cat.id));
            new_category = created.then_some(cat.id);
        }
        let mut rows = timed(
            update
                .filter(product::Column::Id.eq(id))
                .exec_with_returning(&txn),
        )
        .await?;
        // Dropping the transaction without commit rolls back a category it created.
        let row: Product = rows
            .pop()
            .ok_or_else(|| AppError::not_found("product", id))?
            .into();
        let written = Written {
            product_id: row.id,
            version: row.version.into(),
            gone: false,
            new_category,
            counters: Some(write_counters(
                Some(&Listed::from(&old)),
                Some(&Listed::from(&row)),
            )),
        };
        self.commit(txn, row, written).await
    }

    pub(super) async fn delete_in_transaction(&self, id: i32) -> Result<Committed, AppError> {
        let txn = self.begin().await?;
        let row: Product = timed(
            product::Entity::delete_many()
                .filter(product::Column::Id.eq(id))
                .exec_with_returning(&txn),
        )
        .await?
        .pop()
        .ok_or_else(|| AppError::not_found("product", id))?
        .into();
        let written = Written {
            product_id: row.id,
            version: i64::from(row.version) + 1,
            gone: true,
            new_category: None,
            counters: Some(write_counters(Some(&Listed::from(&row)), None)),
        };
        self.commit(txn, row, written).await
    }

    /// Records the invalidation in the transaction, and commits.
    async fn commit(
        &self,
        txn: DatabaseTransaction,
        row: Product,
        written: Written,
    ) -> Result<Committed, AppError> {
        let outbox = self.record_invalidation(&txn, &written).await?;
        self.naive_list_bump(&written).await;
        timed(txn.commit()).await?;
        Ok((row, written, outbox))
    }

    /// Test-only, the broken list protocol the consistency checker must catch: bump the
    /// list counters before the commit (and, in `invalidate`, not after it), with a pause
    /// that holds the gap open. A reader in the gap stores the old page under the new
    /// counter values, and it stays a hit after the mutation returns.
    #[cfg(feature = "test-hooks")]
    async fn naive_list_bump(&self, w: &Written) {
        if self.hooks().naive_lists() {
            let counters = super::written::counter_names(std::slice::from_ref(w));
            let _ = self.cache().invalidate(Vec::new(), &counters).await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[cfg(not(feature = "test-hooks"))]
    #[inline(always)]
    async fn naive_list_bump(&self, _: &Written) {}
}

/// Finds a category by slug, creating it when new. `ON CONFLICT DO NOTHING` then a read
/// makes two concurrent creations of one new category both succeed.
async fn find_or_create_category(
    db: &impl ConnectionTrait,
    name: &str,
    slug: &str,
) -> Result<(Category, bool), AppError> {
    if let Some(c) = timed(queries::category_by_slug(db, slug)).await? {
        return Ok((c.into(), false));
    }
    let row = category::ActiveModel {
        name: Set(name.to_string()),
        slug: Set(slug.to_string()),
        created_at: Set(Utc::now()),
        ..Default::default()
    };
    timed(
        category::Entity::insert(row)
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .exec_without_returning(db),
    )
    .await?;
    let c = timed(queries::category_by_slug(db, slug))
        .await?
        .ok_or_else(|| AppError::Internal(format!("category {slug} vanished after insert")))?;
    Ok((c.into(), true))
}
