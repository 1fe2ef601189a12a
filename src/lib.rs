//! larder: a GraphQL product catalog whose resolvers read through a versioned cache.
//!
//! Layout, top to bottom; imports run one way, down (checked by `tests/api/layers.rs`):
//! - `app`: start-up, the router and its middleware, the probes, the accept loop.
//! - `seed`: the deterministic demo catalog and bulk seeding (`larder seed`).
//! - `transport`: GraphQL over HTTP and WebSocket on `/graphql` (negotiation, persisted
//!   queries, the response cache, limits), around the schema.
//! - `graphql`: schema, resolvers, per-request loaders; everything through `Catalog`.
//! - `catalog`: the use-cases; every read and write of products goes through here.
//! - `cache`: the versioned read-through cache (Redis via fred in `cache::redis`, or
//!   in-process moka), behind one store interface.
//! - `db`: connection, migrations, entities, list arguments and read queries (sea-orm).
//! - `config`: every setting, read once from the environment.
//! - `error`: `ErrorCode` and `AppError`, the one place that decides `extensions.code`.
//! - `metrics`: Prometheus counters and histograms.
//! - `web`: the dashboard's files (`frontend/`), embedded and served at `/`.
//! - `telemetry`: the tracing subscriber (compact or JSON).
pub mod app;
pub mod cache;
pub mod catalog;
pub mod config;
pub mod db;
pub mod error;
pub mod graphql;
pub mod metrics;
pub mod seed;
pub mod telemetry;
pub mod transport;
pub mod web;
