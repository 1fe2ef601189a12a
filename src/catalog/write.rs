//! The write path: one transaction per mutation, commit, and only then invalidate.
//! The product row's `version` is bumped in SQL (`version = version + 1`), so two
//! concurrent updates get distinct versions; the tombstone written after the commit
//! carries that version, and no reader holding an older row can fill over it. Which list
//! counters a write bumps comes from the row before and after it (`lists`): an update
//! reads the old row locked (`SELECT ... FOR UPDATE` on Postgres; SQLite's IMMEDIATE
//! transaction already serializes writers), since `UPDATE ... RETURNING` only returns
//! the new values. With a shared cache the invalidation is also recorded in the
//! transaction (`outbox`).
use chrono::Utc;
use rust_decimal::Decimal;
use sea_orm::{
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
    sea_query::{Expr, ExprTrait, OnConflict},
};
use tracing::Instrument;

use super::{
    Catalog,
    lists::{Listed, write_counters},
    model::{Category, Product},
    outbox::Written,
    validate,
};
use crate::{
    db::{
        entities::{category, product},
        queries,
    },
    error::AppError,
};

/// `createProduct` input, as received.
pub struct NewProduct {
    pub name: String,
    pub description: Option<String>,
    pub price: Decimal,
    pub category: String,
    pub stock_quantity: i32,
}

/// `updateProduct` input: only the given fields change.
#[derive(Default)]
pub struct ProductPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<Decimal>,
    pub category: Option<String>,
    pub stock_quantity: Option<i32>,
}

impl Catalog {
    /// Creates a product. Like every write, it runs in a task of its own: a caller that
    /// gives up (a request timeout) cannot cut it between commit and invalidation.
    pub async fn create_product(&self, input: NewProduct) -> Result<Product, AppError> {
        let this = self.clone();
        detached(async move { this.create_product_now(input).await }).await
    }

    pub async fn update_product(&self, id: i32, patch: ProductPatch) -> Result<Product, AppError> {
        let this = self.clone();
        detached(async move { this.update_product_now(id, patch).await }).await
    }

    /// Deletes a product; returns the row as it was.
    pub async fn delete_product(&self, id: i32) -> Result<Product, AppError> {
        let this = self.clone();
        detached(async move { this.delete_product_now(id).await }).await
    }

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

    async fn create_product_now(&self, input: NewProduct) -> Result<Product, AppError> {
        let name = validate::name(&input.name)?;
        let description = validate::description(input.description.as_deref().unwrap_or(""))?;
        let price_cents = validate::price_cents("price", input.price)?;
        let stock = validate::stock(input.stock_quantity)?;
        let (category_name, slug) = validate::category(&input.category)?;

        let txn = self.begin().await?;
        let (category, created) = find_or_create_category(&txn, &category_name, &slug).await?;
        let now = Utc::now();
        let row = product::ActiveModel {
            name: Set(name),
            description: Set(description),
            price_cents: Set(price_cents),
            category_id: Set(category.id),
            stock_quantity: Set(stock),
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
        let outbox = self.record_invalidation(&txn, &written).await?;
        self.naive_list_bump(&written).await;
        timed(txn.commit()).await?;
        self.invalidate(written, outbox).await;
        Ok(row)
    }

    async fn update_product_now(&self, id: i32, patch: ProductPatch) -> Result<Product, AppError> {
        let name = patch.name.as_deref().map(validate::name).transpose()?;
        let description = patch
            .description
            .as_deref()
            .map(validate::description)
            .transpose()?;
        let price = patch
            .price
            .map(|p| validate::price_cents("price", p))
            .transpose()?;
        let stock = patch.stock_quantity.map(validate::stock).transpose()?;
        let category = patch
            .category
            .as_deref()
            .map(validate::category)
            .transpose()?;
        if name.is_none()
            && description.is_none()
            && price.is_none()
            && stock.is_none()
            && category.is_none()
        {
            return Err(AppError::bad_input(
                "input",
                "input must change at least one field",
            ));
        }

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
        if let Some(v) = name {
            update = update.col_expr(product::Column::Name, Expr::value(v));
        }
        if let Some(v) = description {
            update = update.col_expr(product::Column::Description, Expr::value(v));
        }
        if let Some(v) = price {
            update = update.col_expr(product::Column::PriceCents, Expr::value(v));
        }
        if let Some(v) = stock {
            update = update.col_expr(product::Column::StockQuantity, Expr::value(v));
        }
        if let Some((cat_name, slug)) = category {
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
        let outbox = self.record_invalidation(&txn, &written).await?;
        self.naive_list_bump(&written).await;
        timed(txn.commit()).await?;
        self.invalidate(written, outbox).await;
        Ok(row)
    }

    async fn delete_product_now(&self, id: i32) -> Result<Product, AppError> {
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
        let outbox = self.record_invalidation(&txn, &written).await?;
        self.naive_list_bump(&written).await;
        timed(txn.commit()).await?;
        self.invalidate(written, outbox).await;
        Ok(row)
    }

    /// Test-only, the broken list protocol the consistency checker must catch: bump the
    /// list counters before the commit (and, in `invalidate`, not after it), with a pause
    /// that holds the gap open. A reader in the gap stores the old page under the new
    /// counter values, and it stays a hit after the mutation returns.
    #[cfg(feature = "test-hooks")]
    async fn naive_list_bump(&self, w: &Written) {
        if self.hooks().naive_lists() {
            let counters = super::outbox::counter_names(std::slice::from_ref(w));
            let _ = self.cache().invalidate(Vec::new(), &counters).await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    #[cfg(not(feature = "test-hooks"))]
    #[inline(always)]
    async fn naive_list_bump(&self, _: &Written) {}
}

/// Runs `write` as a task of its own, in the caller's span (so its log lines carry the
/// request id), and waits for it.
async fn detached<T: Send + 'static>(
    write: impl Future<Output = Result<T, AppError>> + Send + 'static,
) -> Result<T, AppError> {
    tokio::spawn(write.in_current_span())
        .await
        .unwrap_or_else(|e| Err(AppError::Internal(format!("write task failed: {e}"))))
}

/// Runs one statement of a write, timing it for the metrics (`kind="write"`).
pub(super) async fn timed<T>(
    statement: impl Future<Output = Result<T, sea_orm::DbErr>>,
) -> Result<T, sea_orm::DbErr> {
    let started = std::time::Instant::now();
    let result = statement.await;
    crate::metrics::sql_statement("write", started.elapsed().as_secs_f64());
    result
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
