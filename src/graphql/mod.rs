//! The GraphQL layer: schema, resolvers, per-request loaders. It never speaks SQL or
//! Redis, nor reaches the cache around `Catalog`: everything goes through `Catalog`.
//! (The HTTP and WebSocket transport that runs it is `crate::transport`.)
//!
//! Layout:
//! - `query`, `mutation`, `subscription`: root fields.
//! - `types`, `scalars`, `stats`: object, input and scalar types.
//! - `connection`: `products(...)` as a Relay connection (pages, cursors, prefetch).
//! - `cost`: what a field costs in a query's complexity (SQL statements priced in).
//! - `performance`: the `cachePerformance` comparison.
//! - `loaders`: per-request DataLoaders and `RequestContext`.
//! - `guard`: the fragment-expansion check that runs before async-graphql's.
mod connection;
mod cost;
pub(crate) mod guard;
pub(crate) mod loaders;
pub(crate) mod mutation;
pub(crate) mod performance;
pub(crate) mod query;
pub(crate) mod scalars;
pub(crate) mod stats;
pub(crate) mod subscription;
pub(crate) mod types;

use async_graphql::{SDLExportOptions, Schema};

pub type AppSchema = Schema<query::Query, mutation::Mutation, subscription::SubscriptionRoot>;

/// Limits on what one query may ask for.
#[derive(Clone, Debug)]
pub struct QueryLimits {
    pub max_depth: usize,
    pub max_complexity: usize,
    pub introspection: bool,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            // The introspection query of graphql-js (GraphiQL, codegen) is 15 deep.
            max_depth: 15,
            max_complexity: 5_000,
            introspection: true,
        }
    }
}

/// The schema HTTP requests run on.
pub fn build_schema(limits: &QueryLimits) -> AppSchema {
    builder(limits).finish()
}

/// The same schema for WebSocket connections: every execution there (each change a
/// subscription sends) gets fresh loaders (`subscription::FreshLoaders`). A schema of
/// its own because an extension costs every field of every execution a boxed future,
/// which HTTP requests (which bring their own loaders) should not pay.
pub fn build_live_schema(limits: &QueryLimits) -> AppSchema {
    builder(limits)
        .extension(subscription::FreshLoaders)
        .finish()
}

fn builder(
    limits: &QueryLimits,
) -> async_graphql::SchemaBuilder<query::Query, mutation::Mutation, subscription::SubscriptionRoot>
{
    let mut builder = Schema::build(
        query::Query,
        mutation::Mutation,
        subscription::SubscriptionRoot,
    )
    .limit_depth(limits.max_depth)
    .limit_complexity(limits.max_complexity)
    .limit_recursive_depth(32)
    .limit_directives(10)
    .data(std::sync::Arc::new(performance::PerformanceGate::default()));
    if !limits.introspection {
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder
}

/// The schema as SDL, sorted, as checked in at `schema.graphql`.
pub fn sdl() -> String {
    build_schema(&QueryLimits::default()).sdl_with_options(
        SDLExportOptions::new()
            .sorted_fields()
            .sorted_arguments()
            .sorted_enum_items()
            .include_specified_by(),
    )
}
