//! `cachePerformance`: runs a named read scenario through the full GraphQL path, first
//! with the cache (warmed by one untimed run) and then with the cache bypassed (a
//! catalog on the same pool with the `none` backend), and reports latency percentiles,
//! SQL statements and cache round trips per run. One comparison runs at a time per
//! instance, so the query cannot be used to multiply database load.
use std::{
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use async_graphql::{Context, Enum, SimpleObject};
use tokio::sync::Semaphore;

use super::{AppSchema, loaders::RequestContext};
use crate::{catalog::Catalog, error::AppError};

pub const MAX_ITERATIONS: i32 = 200;

#[derive(Enum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum PerformanceScenario {
    /// `product(id)` with its category.
    SingleProduct,
    /// A 20-item `products` page with categories.
    ListPage,
    /// One category with its product count and first 20 products.
    CategoryPage,
}

/// Latency and work of one side of the comparison, per run. Times in milliseconds.
#[derive(SimpleObject, Clone, Debug)]
pub struct LatencySummary {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub mean_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub sql_statements_per_run: f64,
    pub cache_round_trips_per_run: f64,
}

#[derive(SimpleObject, Clone, Debug)]
pub struct PerformanceReport {
    pub scenario: PerformanceScenario,
    pub iterations: i32,
    /// Through the cache, warmed by one untimed run first.
    pub cached: LatencySummary,
    /// With the cache bypassed: every run reads the database.
    pub uncached: LatencySummary,
    /// Uncached mean over cached mean.
    pub speedup: f64,
}

/// Shared by all requests: one comparison at a time.
pub struct PerformanceGate(pub Semaphore);

impl Default for PerformanceGate {
    fn default() -> Self {
        Self(Semaphore::new(1))
    }
}

pub async fn run(
    ctx: &Context<'_>,
    scenario: PerformanceScenario,
    iterations: i32,
) -> async_graphql::Result<PerformanceReport> {
    if !(1..=MAX_ITERATIONS).contains(&iterations) {
        return Err(AppError::bad_input(
            "iterations",
            format!("iterations must be between 1 and {MAX_ITERATIONS}"),
        )
        .into());
    }
    let schema = ctx.data::<AppSchema>()?.clone();
    let gate = ctx.data::<Arc<PerformanceGate>>()?.clone();
    let _permit = gate
        .0
        .acquire()
        .await
        .map_err(|_| AppError::Internal("performance gate closed".into()))?;
    let catalog = ctx
        .data::<super::loaders::RequestContext>()?
        .catalog
        .clone();
    let query = scenario_query(&schema, &catalog, scenario).await?;
    let cached = measure(&schema, &catalog, &query, iterations as usize, true).await?;
    let uncached = measure(
        &schema,
        &catalog.without_cache(),
        &query,
        iterations as usize,
        false,
    )
    .await?;
    let speedup = if cached.mean_ms > 0.0 {
        uncached.mean_ms / cached.mean_ms
    } else {
        0.0
    };
    Ok(PerformanceReport {
        scenario,
        iterations,
        cached,
        uncached,
        speedup,
    })
}

/// The query text of a scenario, aimed at real rows (the first product and category).
async fn scenario_query(
    schema: &AppSchema,
    catalog: &Catalog,
    scenario: PerformanceScenario,
) -> Result<String, AppError> {
    let probe = "{ products(first: 1) { nodes { id category { id } } } }";
    let resp = execute(schema, catalog, probe).await?.0;
    let first = resp.data.into_json().ok();
    let node = first.as_ref().map(|v| &v["products"]["nodes"][0]);
    let product = node.and_then(|n| n["id"].as_str()).map(str::to_string);
    let category = node
        .and_then(|n| n["category"]["id"].as_str())
        .map(str::to_string);
    let (Some(product), Some(category)) = (product, category) else {
        return Err(AppError::bad_input(
            "scenario",
            "the catalog is empty: add a product first",
        ));
    };
    Ok(match scenario {
        PerformanceScenario::SingleProduct => {
            format!(r#"{{ product(id: "{product}") {{ id name price stockQuantity version category {{ id name }} }} }}"#)
        }
        PerformanceScenario::ListPage => {
            "{ products(first: 20) { totalCount nodes { id name price stockQuantity category { id name } } } }".into()
        }
        PerformanceScenario::CategoryPage => format!(
            r#"{{ category(id: "{category}") {{ name productCount products(first: 20) {{ totalCount nodes {{ id name price }} }} }} }}"#
        ),
    })
}

/// Executes `query` as its own request; returns the response and its tally.
async fn execute(
    schema: &AppSchema,
    catalog: &Catalog,
    query: &str,
) -> Result<(async_graphql::Response, Arc<crate::catalog::RequestTally>), AppError> {
    let ctx = RequestContext::new(catalog, false);
    let tally = ctx.tally.clone();
    let resp = schema
        .execute(async_graphql::Request::new(query).data(ctx))
        .await;
    if let Some(e) = resp.errors.first() {
        return Err(AppError::Internal(format!(
            "scenario query failed: {}",
            e.message
        )));
    }
    Ok((resp, tally))
}

async fn measure(
    schema: &AppSchema,
    catalog: &Catalog,
    query: &str,
    n: usize,
    warm: bool,
) -> Result<LatencySummary, AppError> {
    if warm {
        execute(schema, catalog, query).await?;
    }
    let mut times = Vec::with_capacity(n);
    let (mut sql, mut trips) = (0u64, 0u64);
    for _ in 0..n {
        let started = Instant::now();
        let (_, tally) = execute(schema, catalog, query).await?;
        times.push(started.elapsed());
        sql += tally.sql_statements.load(Relaxed);
        trips += tally.round_trips.load(Relaxed);
    }
    Ok(summarize(&mut times, sql, trips))
}

fn summarize(times: &mut [Duration], sql: u64, trips: u64) -> LatencySummary {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let n = times.len().max(1);
    // Nearest-rank percentile.
    let pct = |p: f64| ms(times[((p * n as f64).ceil() as usize).clamp(1, n) - 1]);
    LatencySummary {
        p50_ms: pct(0.50),
        p95_ms: pct(0.95),
        mean_ms: times.iter().map(|d| ms(*d)).sum::<f64>() / n as f64,
        min_ms: times.first().map(|d| ms(*d)).unwrap_or(0.0),
        max_ms: times.last().map(|d| ms(*d)).unwrap_or(0.0),
        sql_statements_per_run: sql as f64 / n as f64,
        cache_round_trips_per_run: trips as f64 / n as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let mut times: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let s = summarize(&mut times, 200, 100);
        assert_eq!(
            (s.p50_ms, s.p95_ms, s.min_ms, s.max_ms),
            (50.0, 95.0, 1.0, 100.0)
        );
        assert_eq!(
            (
                s.mean_ms,
                s.sql_statements_per_run,
                s.cache_round_trips_per_run
            ),
            (50.5, 2.0, 1.0)
        );
    }
}
