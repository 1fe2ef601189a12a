//! The mutations as single Postgres statements: each changes its product row and, when
//! the cache is shared, inserts the outbox row in the same statement (data-modifying
//! CTEs), so a mutation costs one round trip and one commit (one WAL flush) in
//! autocommit. An update locks the row it reads (`SELECT ... FOR UPDATE` in a CTE):
//! under a concurrent update, the lock waits and then returns the latest committed row,
//! which is the row the `UPDATE` then changes, so "before" and "after" are one
//! transition. Postgres before 18 has no `RETURNING OLD`; the locked CTE returns it.
//!
//! A statement that returns no row changed nothing: the product does not exist, or a
//! category it names does not (the caller's transactional path creates categories and
//! reports what was missing). The outbox row's `change` is the listed fields before and
//! after (`[category_id, in_stock, price_cents, name]`, `null` for none), from which
//! `catalog::lists::write_counters` derives its list counters: one rule, in Rust. Its
//! `created_at` is the database's `now()` (the column's default).
//!
//! `record_delivered` marks many outbox rows delivered in one statement (the delivered
//! markers are written in batches, `catalog::delivered`).
use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, QueryResult, Statement, Value};

use super::entities::product;

/// What a single-statement write changed.
#[derive(Debug)]
pub struct Changed {
    /// The row after the write (for a deletion: as it was).
    pub row: product::Model,
    /// An update's row before it, as locked: its listed fields.
    pub before: Option<Before>,
    /// The outbox row inserted with it (only when asked to record one).
    pub outbox_id: Option<i64>,
}

/// The fields of a row before an update that list pages can see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Before {
    pub category_id: i32,
    pub stock_quantity: i32,
    pub price_cents: i64,
    pub name: String,
}

/// An update's new values; `None` keeps the column.
pub struct Patch<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub price_cents: Option<i64>,
    pub stock_quantity: Option<i32>,
    /// The slug of the category to move to (it must exist).
    pub category_slug: Option<&'a str>,
}

/// A new product; its category (by slug) must exist.
pub struct NewRow<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub price_cents: i64,
    pub stock_quantity: i32,
    pub category_slug: &'a str,
}

/// The listed fields of a row as JSON, for the outbox row's `change`.
const LISTED: &str =
    "json_build_array({t}.category_id, {t}.stock_quantity > 0, {t}.price_cents, {t}.name)";

fn listed(table: &str) -> String {
    LISTED.replace("{t}", table)
}

static UPDATE: LazyLock<String> = LazyLock::new(|| update_sql(true));
static UPDATE_UNLOCKED: LazyLock<String> = LazyLock::new(|| update_sql(false));
static CREATE: LazyLock<String> = LazyLock::new(create_sql);
static DELETE: LazyLock<String> = LazyLock::new(delete_sql);

/// The update: lock and read the row, change it, record the outbox row. `$9` says
/// whether to record one; `lock` is false only in the test-only naive mode that reads
/// the row without its lock (the hot-row test must catch it).
fn update_sql(lock: bool) -> String {
    format!(
        "WITH old AS (
            SELECT id, category_id, stock_quantity, price_cents, name FROM products
            WHERE id = $1 {lock}
        ), cat AS (
            SELECT (SELECT c.id FROM categories c WHERE c.slug = $7::text) AS id
        ), new AS (
            UPDATE products p SET
                version = p.version + 1,
                updated_at = $2,
                name = COALESCE($3::text, p.name),
                description = COALESCE($4::text, p.description),
                price_cents = COALESCE($5::int8, p.price_cents),
                stock_quantity = COALESCE($6::int4, p.stock_quantity),
                category_id = COALESCE(cat.id, p.category_id)
            FROM old, cat
            WHERE p.id = old.id AND ($7::text IS NULL OR cat.id IS NOT NULL)
            RETURNING p.*
        ), outbox AS (
            INSERT INTO cache_outbox
                (product_id, version, gone, new_category_id, list_counters, change)
            SELECT new.id, new.version, false, NULL, NULL,
                json_build_array({old}, {new})::text
            FROM new, old WHERE $8::bool
            RETURNING id
        )
        SELECT new.*,
            old.category_id AS old_category_id, old.stock_quantity AS old_stock_quantity,
            old.price_cents AS old_price_cents, old.name AS old_name,
            (SELECT id FROM outbox) AS outbox_id
        FROM new, old",
        lock = if lock { "FOR UPDATE" } else { "" },
        old = listed("old"),
        new = listed("new"),
    )
}

fn create_sql() -> String {
    format!(
        "WITH cat AS (
            SELECT id FROM categories WHERE slug = $5
        ), new AS (
            INSERT INTO products
                (name, description, price_cents, category_id, stock_quantity, version,
                 created_at, updated_at)
            SELECT $1, $2, $3, cat.id, $4, 1, $6, $6 FROM cat
            RETURNING *
        ), outbox AS (
            INSERT INTO cache_outbox
                (product_id, version, gone, new_category_id, list_counters, change)
            SELECT new.id, 1, false, NULL, NULL,
                json_build_array(NULL, {new})::text
            FROM new WHERE $7::bool
            RETURNING id
        )
        SELECT new.*, (SELECT id FROM outbox) AS outbox_id FROM new",
        new = listed("new"),
    )
}

fn delete_sql() -> String {
    format!(
        "WITH old AS (
            DELETE FROM products WHERE id = $1 RETURNING *
        ), outbox AS (
            INSERT INTO cache_outbox
                (product_id, version, gone, new_category_id, list_counters, change)
            SELECT old.id, old.version + 1, true, NULL, NULL,
                json_build_array({old}, NULL)::text
            FROM old WHERE $2::bool
            RETURNING id
        )
        SELECT old.*, (SELECT id FROM outbox) AS outbox_id FROM old",
        old = listed("old"),
    )
}

/// Updates product `id`; `None` if it (or the category `patch` names) does not exist.
pub async fn update_product(
    db: &impl ConnectionTrait,
    id: i32,
    patch: &Patch<'_>,
    now: DateTime<Utc>,
    record: bool,
    lock: bool,
) -> Result<Option<Changed>, DbErr> {
    let values: [Value; 8] = [
        id.into(),
        now.into(),
        patch.name.map(str::to_string).into(),
        patch.description.map(str::to_string).into(),
        patch.price_cents.into(),
        patch.stock_quantity.into(),
        patch.category_slug.map(str::to_string).into(),
        record.into(),
    ];
    let sql = if lock { &UPDATE } else { &UPDATE_UNLOCKED };
    let stmt = Statement::from_sql_and_values(DbBackend::Postgres, sql.as_str(), values);
    let Some(r) = db.query_one_raw(stmt).await? else {
        return Ok(None);
    };
    let before = Before {
        category_id: r.try_get("", "old_category_id")?,
        stock_quantity: r.try_get("", "old_stock_quantity")?,
        price_cents: r.try_get("", "old_price_cents")?,
        name: r.try_get("", "old_name")?,
    };
    changed(&r, Some(before)).map(Some)
}

/// Creates a product; `None` if its category does not exist.
pub async fn create_product(
    db: &impl ConnectionTrait,
    new: &NewRow<'_>,
    now: DateTime<Utc>,
    record: bool,
) -> Result<Option<Changed>, DbErr> {
    let values: [Value; 7] = [
        new.name.into(),
        new.description.into(),
        new.price_cents.into(),
        new.stock_quantity.into(),
        new.category_slug.into(),
        now.into(),
        record.into(),
    ];
    let stmt = Statement::from_sql_and_values(DbBackend::Postgres, CREATE.as_str(), values);
    match db.query_one_raw(stmt).await? {
        Some(r) => changed(&r, None).map(Some),
        None => Ok(None),
    }
}

/// Deletes product `id`, returning the row as it was; `None` if it does not exist.
pub async fn delete_product(
    db: &impl ConnectionTrait,
    id: i32,
    record: bool,
) -> Result<Option<Changed>, DbErr> {
    let values: [Value; 2] = [id.into(), record.into()];
    let stmt = Statement::from_sql_and_values(DbBackend::Postgres, DELETE.as_str(), values);
    match db.query_one_raw(stmt).await? {
        Some(r) => changed(&r, None).map(Some),
        None => Ok(None),
    }
}

fn changed(r: &QueryResult, before: Option<Before>) -> Result<Changed, DbErr> {
    Ok(Changed {
        row: product::Model::from_query_result(r, "")?,
        before,
        outbox_id: r.try_get("", "outbox_id")?,
    })
}

/// Records outbox rows as delivered, many in one statement: per row its id, the
/// highest history value its delivery reached, and each group's (`group:value ...`).
pub async fn record_delivered(
    db: &impl ConnectionTrait,
    rows: &[(i64, i64, String)],
) -> Result<(), DbErr> {
    let json = serde_json::Value::Array(
        rows.iter()
            .map(|(id, seq, hist)| serde_json::json!({ "id": id, "seq": seq, "hist": hist }))
            .collect(),
    );
    let stmt = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "UPDATE cache_outbox AS o SET delivered_seq = v.seq, delivered_hist = v.hist
         FROM json_to_recordset($1::json) AS v(id int8, seq int8, hist text)
         WHERE o.id = v.id",
        [json.to_string().into()],
    );
    db.execute_raw(stmt).await.map(|_| ())
}
