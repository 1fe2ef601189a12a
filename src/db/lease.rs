//! The statements of the trust lease (`catalog::lease`): the renewal, one query that
//! reads the recorded cache layout and the outbox rows no lease may cover (undelivered,
//! and given up by their writer or older than a writer's patience); a writer's record
//! that it gave up; and taking the layout over.
use std::time::Duration;

use chrono::Utc;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, QueryResult, Statement, Value};

use super::entities::cache_outbox;

/// What one renewal found.
#[derive(Debug)]
pub struct Renewal {
    /// The layout Postgres records (`None`: no instance recorded one yet).
    pub layout: Option<i32>,
    /// Whether the last change of layout is older than the settle time asked.
    pub settled: bool,
    /// Undelivered rows that are given up or too old to be in delivery, oldest first.
    pub rows: Vec<cache_outbox::Model>,
}

/// The renewal on Postgres: one statement, the layout row joined with the listed rows
/// (`$1` the age past which an undelivered row is listed even if nobody gave it up,
/// `$2` the settle time of a layout change, `$3` the most rows). The ages are on the
/// database's clock, compared with itself.
const RENEW_PG: &str =
    "SELECT l.layout, l.changed_at < now() - $2 * interval '1 millisecond' AS settled, o.*
    FROM cache_layout l
    LEFT JOIN LATERAL (
        SELECT * FROM cache_outbox
        WHERE delivered_seq IS NULL
          AND (gave_up OR created_at < now() - $1 * interval '1 millisecond')
        ORDER BY id LIMIT $3
    ) o ON true
    WHERE l.id = 1";

/// Renews: the layout and the rows no lease may cover (at most `limit`).
pub async fn renew(
    db: &impl ConnectionTrait,
    listed_after: Duration,
    settle: Duration,
    limit: u64,
) -> Result<Renewal, DbErr> {
    let backend = db.get_database_backend();
    if backend != DbBackend::Postgres {
        return renew_sqlite(db, listed_after, settle, limit).await;
    }
    let values: [Value; 3] = [
        (listed_after.as_millis() as i64).into(),
        (settle.as_millis() as i64).into(),
        (limit as i64).into(),
    ];
    let stmt = Statement::from_sql_and_values(backend, RENEW_PG, values);
    let rows = db.query_all_raw(stmt).await?;
    let Some(first) = rows.first() else {
        return Err(DbErr::RecordNotFound("cache_layout row 1".into()));
    };
    let layout: Option<i32> = first.try_get("", "layout")?;
    let settled: bool = first.try_get("", "settled")?;
    let mut listed = Vec::new();
    for r in &rows {
        if r.try_get::<Option<i64>>("", "id")?.is_some() {
            listed.push(cache_outbox::Model::from_query_result(r, "")?);
        }
    }
    Ok(Renewal {
        layout,
        settled,
        rows: listed,
    })
}

/// SQLite (one host, one clock): the same in two statements.
async fn renew_sqlite(
    db: &impl ConnectionTrait,
    listed_after: Duration,
    settle: Duration,
    limit: u64,
) -> Result<Renewal, DbErr> {
    let backend = db.get_database_backend();
    let now = Utc::now();
    let stmt = Statement::from_string(
        backend,
        "SELECT layout, changed_at FROM cache_layout WHERE id = 1",
    );
    let row = db
        .query_one_raw(stmt)
        .await?
        .ok_or_else(|| DbErr::RecordNotFound("cache_layout row 1".into()))?;
    let layout: Option<i32> = row.try_get("", "layout")?;
    let changed: chrono::DateTime<Utc> = row.try_get("", "changed_at")?;
    let stmt = Statement::from_sql_and_values(
        backend,
        "SELECT * FROM cache_outbox WHERE delivered_seq IS NULL AND (gave_up OR created_at < $1)
         ORDER BY id LIMIT $2",
        [(now - listed_after).into(), (limit as i64).into()],
    );
    let rows: Result<Vec<_>, DbErr> = db
        .query_all_raw(stmt)
        .await?
        .iter()
        .map(|r: &QueryResult| cache_outbox::Model::from_query_result(r, ""))
        .collect();
    Ok(Renewal {
        layout,
        settled: changed < now - settle,
        rows: rows?,
    })
}

/// A writer gave up waiting for Redis to take outbox row `id`.
pub async fn give_up(db: &impl ConnectionTrait, id: i64) -> Result<(), DbErr> {
    let stmt = Statement::from_sql_and_values(
        db.get_database_backend(),
        "UPDATE cache_outbox SET gave_up = true WHERE id = $1",
        [id.into()],
    );
    db.execute_raw(stmt).await.map(|_| ())
}

/// Records `layout` as the one whose instances may use the cache, if Postgres records
/// none or an older one. A first record (from none) is settled at once: no instance that
/// honours the record can be trusting another layout. Returns whether it changed.
pub async fn take_layout(db: &impl ConnectionTrait, layout: i32) -> Result<bool, DbErr> {
    let backend = db.get_database_backend();
    let now = match backend {
        DbBackend::Postgres => "now()",
        _ => "$2",
    };
    let sql = format!(
        "UPDATE cache_layout SET
            changed_at = CASE WHEN layout IS NULL THEN changed_at ELSE {now} END,
            layout = $1
         WHERE id = 1 AND (layout IS NULL OR layout < $1)"
    );
    let values: Vec<Value> = match backend {
        DbBackend::Postgres => vec![layout.into()],
        _ => vec![layout.into(), Utc::now().into()],
    };
    let stmt = Statement::from_sql_and_values(backend, sql, values);
    Ok(db.execute_raw(stmt).await?.rows_affected() > 0)
}
