//! The write path: validate, change the row (and record the invalidation) in one
//! commit, and only then invalidate (`outbox::invalidate`).
//!
//! On Postgres a mutation is one statement in autocommit (`db::writes`): the row change
//! and its outbox row commit together, one round trip and one WAL flush. The product
//! row's `version` is bumped in SQL (`version = version + 1`), so two concurrent updates
//! get distinct versions; the tombstone written after the commit carries that version,
//! and no reader holding an older row can fill over it. Which list counters a write
//! bumps comes from the row before and after it (`lists`), and an update reads the row
//! before it under its lock, so the two are one transition even when updates of one
//! product race. What one statement cannot do (create a category the write names, or a
//! row of SQLite, which has no data-modifying CTEs) runs in a transaction
//! (`write_txn`), with the same `Written` at the end.
use chrono::Utc;
use rust_decimal::Decimal;
use sea_orm::DbBackend;
use tracing::Instrument;

use super::{
    Catalog,
    lists::{Listed, write_counters},
    model::Product,
    validate,
    written::Written,
};
use crate::{
    db::writes::{self, Changed},
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

/// A `NewProduct` that passed validation.
pub(super) struct ValidNew {
    pub name: String,
    pub description: String,
    pub price_cents: i64,
    pub stock: i32,
    /// The category's display name and slug.
    pub category: (String, String),
}

/// A `ProductPatch` that passed validation (at least one field set).
pub(super) struct ValidPatch {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price_cents: Option<i64>,
    pub stock: Option<i32>,
    pub category: Option<(String, String)>,
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

    /// Whether writes run as single statements (Postgres), and whether an update locks
    /// the row it reads (always, but in the test-only naive mode). The test-only naive
    /// list mode needs a moment before the commit, which only a transaction has.
    fn single_statement(&self) -> Option<bool> {
        if self.db().get_database_backend() != DbBackend::Postgres {
            return None;
        }
        #[cfg(feature = "test-hooks")]
        {
            if self.hooks().naive_lists() {
                return None;
            }
            Some(!self.hooks().naive_row_lock())
        }
        #[cfg(not(feature = "test-hooks"))]
        Some(true)
    }

    /// Whether writes record their invalidation in the outbox: only with a shared cache
    /// (an in-process cache cannot miss one).
    pub(super) fn records_outbox(&self) -> bool {
        self.cache().backend() == "redis"
    }

    async fn create_product_now(&self, input: NewProduct) -> Result<Product, AppError> {
        let new = ValidNew {
            name: validate::name(&input.name)?,
            description: validate::description(input.description.as_deref().unwrap_or(""))?,
            price_cents: validate::price_cents("price", input.price)?,
            stock: validate::stock(input.stock_quantity)?,
            category: validate::category(&input.category)?,
        };
        if self.single_statement().is_some() {
            let row = writes::NewRow {
                name: &new.name,
                description: &new.description,
                price_cents: new.price_cents,
                stock_quantity: new.stock,
                category_slug: &new.category.1,
            };
            let done = writes::create_product(self.db(), &row, Utc::now(), self.records_outbox());
            if let Some(c) = timed(done).await? {
                return Ok(self.changed(c, false).await);
            }
            // The category does not exist yet: the transaction creates it.
        }
        let (row, written, outbox) = self.create_in_transaction(new).await?;
        self.invalidate(written, outbox).await;
        Ok(row)
    }

    async fn update_product_now(&self, id: i32, patch: ProductPatch) -> Result<Product, AppError> {
        let patch = ValidPatch {
            name: patch.name.as_deref().map(validate::name).transpose()?,
            description: patch
                .description
                .as_deref()
                .map(validate::description)
                .transpose()?,
            price_cents: patch
                .price
                .map(|p| validate::price_cents("price", p))
                .transpose()?,
            stock: patch.stock_quantity.map(validate::stock).transpose()?,
            category: patch
                .category
                .as_deref()
                .map(validate::category)
                .transpose()?,
        };
        if patch.name.is_none()
            && patch.description.is_none()
            && patch.price_cents.is_none()
            && patch.stock.is_none()
            && patch.category.is_none()
        {
            return Err(AppError::bad_input(
                "input",
                "input must change at least one field",
            ));
        }
        if let Some(lock) = self.single_statement() {
            let p = writes::Patch {
                name: patch.name.as_deref(),
                description: patch.description.as_deref(),
                price_cents: patch.price_cents,
                stock_quantity: patch.stock,
                category_slug: patch.category.as_ref().map(|(_, slug)| slug.as_str()),
            };
            let record = self.records_outbox();
            let done = writes::update_product(self.db(), id, &p, Utc::now(), record, lock);
            if let Some(c) = timed(done).await? {
                return Ok(self.changed(c, false).await);
            }
            // No such product, or a category to create: the transaction tells which.
        }
        let (row, written, outbox) = self.update_in_transaction(id, patch).await?;
        self.invalidate(written, outbox).await;
        Ok(row)
    }

    async fn delete_product_now(&self, id: i32) -> Result<Product, AppError> {
        if self.single_statement().is_some() {
            let done = writes::delete_product(self.db(), id, self.records_outbox());
            return match timed(done).await? {
                Some(c) => Ok(self.changed(c, true).await),
                None => Err(AppError::not_found("product", id)),
            };
        }
        let (row, written, outbox) = self.delete_in_transaction(id).await?;
        self.invalidate(written, outbox).await;
        Ok(row)
    }

    /// After a single-statement write committed: what it changed, invalidated.
    async fn changed(&self, c: Changed, gone: bool) -> Product {
        let row = Product::from(c.row);
        let after = Listed::from(&row);
        let counters = match (&c.before, gone) {
            (_, true) => write_counters(Some(&after), None),
            (Some(b), false) => {
                let before = Listed::new(b.category_id, b.stock_quantity, b.price_cents, &b.name);
                write_counters(Some(&before), Some(&after))
            }
            (None, false) => write_counters(None, Some(&after)),
        };
        let written = Written {
            product_id: row.id,
            version: i64::from(row.version) + i64::from(gone),
            gone,
            new_category: None,
            counters: Some(counters),
        };
        self.invalidate(written, c.outbox_id).await;
        row
    }
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
