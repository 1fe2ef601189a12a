//! larder: a GraphQL product catalog whose resolvers read through a versioned cache.
//!
//! Layout:
//! - `config`: every setting, read once from the environment.
//! - `telemetry`: the tracing subscriber (compact or JSON).
//! - `app`: `AppState`, router, start-up, graceful shutdown.
//! - `serve`: the accept loop (header timeout, connection cap, client addresses).
//! - `graphql`: schema, resolvers, per-request loaders, the HTTP handler.
//! - `catalog`: the use-cases; every read and write of products goes through here.
//! - `cache`: the versioned read-through cache (Redis via fred, or in-process moka).
//! - `db`: connection, migrations, entities and SQL queries (sea-orm).
//! - `seed`: the deterministic demo catalog and bulk seeding.
//! - `web`: the dashboard's files (`frontend/`), embedded and served at `/`.
//! - `error`: `AppError` and its GraphQL `extensions.code`.
//! - `metrics`: Prometheus metrics, served at `/metrics`.
//! - `overload`: shedding beyond `MAX_IN_FLIGHT` requests at once.
//! - `net`: who is asking (the client address behind trusted proxies), per-address limits.
pub mod app;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod db;
pub mod error;
pub mod graphql;
pub mod metrics;
pub mod net;
pub mod overload;
pub mod seed;
pub mod serve;
pub mod telemetry;
pub mod web;
