//! Postgres and SQLite through sea-orm: connecting (with migrations), the entities, the
//! arguments of a product list (`lists`), the read queries (`queries`), the
//! single-statement mutations of Postgres (`writes`; the transactional writes, which
//! SQLite and the rare paths use, live with their use-case, `catalog::write_txn`), and
//! the trust lease's statements (`lease`).
//! Everything here takes `&impl ConnectionTrait`, so the same query runs on a pool or
//! inside a transaction. No cache logic lives here.
pub(crate) mod entities;
pub(crate) mod lease;
pub(crate) mod lists;
pub(crate) mod queries;
pub(crate) mod writes;

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// A pooled connection idle this long is pinged before use (a server restart, a proxy
/// or a firewall may have dropped it).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

/// Connects, and brings the schema up to date.
/// `timeout` bounds both opening a connection and waiting for a free one: a request
/// that cannot get the database in that time fails with `DATABASE_UNAVAILABLE` instead
/// of queueing without bound.
pub async fn connect(
    url: &str,
    max_connections: u32,
    timeout: Duration,
) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(max_connections)
        .min_connections(1)
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        // Ping a pooled connection before use only when it sat idle: a ping on every
        // checkout is one more round trip per statement (measured: 9% of a write's
        // CPU), while a connection in steady use has just proved itself alive.
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        // One writer at a time is SQLite's rule; a small pool avoids "database is locked".
        opts.max_connections(max_connections.min(4));
    }
    let db = Database::connect(opts).await?;
    if url.starts_with("sqlite:") {
        use sea_orm::ConnectionTrait;
        db.execute_unprepared(
            "PRAGMA journal_mode=WAL; PRAGMA busy_timeout=5000; PRAGMA foreign_keys=ON;",
        )
        .await?;
    }
    Migrator::up(&db, None).await?;
    Ok(db)
}

/// One connection of its own, for the trust lease's renewals (`catalog::lease`): a
/// cache outage that sends every read to the pool must not starve them. Connects in the
/// background (the first renewal waits for it); the schema is `connect`'s business.
pub async fn connect_one(url: &str, timeout: Duration) -> Result<DatabaseConnection, DbErr> {
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(1)
        .min_connections(0)
        .connect_timeout(timeout)
        .acquire_timeout(timeout)
        .test_before_acquire_if_idle_for(PING_IF_IDLE_FOR)
        .connect_lazy(true)
        .sqlx_logging(false);
    Database::connect(opts).await
}
