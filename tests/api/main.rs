//! larder's integration tests: one test binary (one link step) with a module per area.
//! Every test starts real servers with `harness::spawn_app`; `fixtures` holds the
//! processes a test owns (its own Redis, its own Redis Cluster).
// The tests' nested async blocks (each_backend around spawn_app around requests) are
// deeper than rustc's default query depth allows when their layout is computed from a
// clean build.
#![recursion_limit = "256"]
mod cache;
mod cluster;
mod consistency;
mod durability;
mod fixtures;
mod fuzz;
mod harness;
mod hostile;
mod http;
mod layers;
mod limits;
mod lists;
mod live;
mod logs;
mod measure;
mod overload;
mod persisted;
mod products;
mod responses;
mod schema;
