//! larder's integration tests: one test binary (one link step) with a module per area.
//! Every test starts real servers with `helpers::spawn_app`.
mod cache;
mod consistency;
mod durability;
mod fuzz;
mod helpers;
mod http;
mod limits;
mod lists;
mod logs;
mod measure;
mod products;
mod responses;
mod schema;
