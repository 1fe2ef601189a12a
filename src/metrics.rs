//! Prometheus metrics (rendered at `/metrics` by `app::routes`): HTTP requests and
//! latency by route and status, GraphQL operations by name and outcome, cache lookups /
//! errors / fills / invalidations by entity kind and command latency, SQL statements
//! and latency, the database pool, and build info. Every label has a bounded set of values: routes are
//! matched paths, operation names are those the server knows (`know_operations`), no ids
//! or query text ever become labels.
use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    sync::OnceLock,
    time::Instant,
};

use axum::{
    extract::{MatchedPath, Request},
    middleware::Next,
    response::Response,
};
use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const BUCKETS: &[f64] = &[
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0,
];

/// Installs the process-wide recorder once (tests start several apps in one process).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let handle = match builder.install_recorder() {
            Ok(h) => h,
            // Another recorder is installed: keep a private one so /metrics still renders.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        gauge!("larder_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
        handle
    })
}

/// Middleware: counts and times every HTTP request by matched route and status.
pub async fn track_http(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    // A bounded label: any other method a client invents counts as `other`.
    let method = match req.method().as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        _ => "other",
    };
    let started = Instant::now();
    let resp = next.run(req).await;
    let elapsed = started.elapsed().as_secs_f64();
    let key = (route, method, resp.status().as_u16());
    // Handles are looked up once per worker thread and label set, not in the shared
    // registry on every request.
    HTTP.with_borrow_mut(|handles| {
        let (count, time) = handles
            .entry(key)
            .or_insert_with_key(|(route, method, status)| {
                let labels = [
                    ("route", route.clone().unwrap_or_else(|| "other".into())),
                    ("method", method.to_string()),
                    ("status", status.to_string()),
                ];
                (
                    counter!("http_requests_total", &labels),
                    histogram!("http_request_duration_seconds", &labels),
                )
            });
        count.increment(1);
        time.record(elapsed);
    });
    resp
}

type HttpKey = (Option<String>, &'static str, u16);
/// A counter and the latency histogram next to it.
type Timed = (Counter, Histogram);

thread_local! {
    static HTTP: RefCell<HashMap<HttpKey, Timed>> = RefCell::new(HashMap::new());
    /// Per operation name: the error and ok counters.
    static OPERATIONS: RefCell<HashMap<String, [Option<Counter>; 2]>> = RefCell::new(HashMap::new());
}

/// The gauges read when `/metrics` is scraped: database pool connections in use and
/// idle, and whether the cache backend is connected.
pub fn scrape_gauges(in_use: u32, idle: u32, backend: &'static str, connected: bool) {
    gauge!("db_pool_connections", "state" => "in_use").set(f64::from(in_use));
    gauge!("db_pool_connections", "state" => "idle").set(f64::from(idle));
    gauge!("cache_connected", "backend" => backend).set(if connected { 1.0 } else { 0.0 });
}

/// The operation names `/metrics` may carry as labels: the dashboard's own and those
/// the operator lists (`METRICS_OPERATION_NAMES`). Every other name a client sends counts
/// as `other`, so no client can add label values. Process-wide (tests start several
/// apps in one process): each app adds its names.
pub fn know_operations(names: impl IntoIterator<Item = String>) {
    KNOWN
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .extend(names);
}

static KNOWN: std::sync::LazyLock<std::sync::RwLock<HashSet<String>>> =
    std::sync::LazyLock::new(Default::default);

fn is_known(name: &str) -> bool {
    KNOWN
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .contains(name)
}

/// A GraphQL operation finished: `name` is the client's operation name (a label only
/// when known, see `know_operations`; otherwise `other`), `outcome` is `ok` or `error`.
pub fn graphql_operation(name: Option<&str>, ok: bool) {
    let name = name.unwrap_or("anonymous");
    let done =
        OPERATIONS.with_borrow(
            |ops| match ops.get(name).and_then(|c| c[ok as usize].as_ref()) {
                Some(c) => {
                    c.increment(1);
                    true
                }
                None => false,
            },
        );
    if done {
        return;
    }
    let label = match name {
        "anonymous" => "anonymous",
        n if is_known(n) => n,
        _ => "other",
    }
    .to_string();
    let outcome = if ok { "ok" } else { "error" };
    let c =
        counter!("graphql_operations_total", "operation" => label.clone(), "outcome" => outcome);
    c.increment(1);
    // Remembered per thread by label: at most the known names, `anonymous` and `other`
    // (an unknown name is looked up again each time; it costs a lock, not a label).
    if label == name || label == "other" {
        OPERATIONS.with_borrow_mut(|ops| ops.entry(label).or_default()[ok as usize] = Some(c));
    }
}

/// One SQL statement of `kind` (`read` or `write`) took `seconds`.
pub fn sql_statement(kind: &'static str, seconds: f64) {
    counter!("db_statements_total", "kind" => kind).increment(1);
    histogram!("db_statement_duration_seconds", "kind" => kind).record(seconds);
}

/// One cache command `op` took `seconds`.
pub fn cache_command(op: &'static str, seconds: f64, ok: bool) {
    thread_local! {
        static HANDLES: RefCell<HashMap<(&'static str, bool), Timed>> = RefCell::new(HashMap::new());
    }
    HANDLES.with_borrow_mut(|handles| {
        let (count, time) = handles.entry((op, ok)).or_insert_with(|| {
            let outcome = if ok { "ok" } else { "error" };
            (
                counter!("cache_round_trips_total", "op" => op, "outcome" => outcome),
                histogram!("cache_command_duration_seconds", "op" => op),
            )
        });
        count.increment(1);
        time.record(seconds);
    });
}

/// Cache events by entity kind: `hit`, `miss`, `error`, `fill`, `fill_rejected`, `invalidation`.
pub fn cache_event(kind: &'static str, event: &'static str, n: u64) {
    thread_local! {
        static HANDLES: RefCell<HashMap<(&'static str, &'static str), Counter>> =
            RefCell::new(HashMap::new());
    }
    if n > 0 {
        HANDLES.with_borrow_mut(|handles| {
            handles
                .entry((kind, event))
                .or_insert_with(|| counter!("cache_events_total", "kind" => kind, "event" => event))
                .increment(n);
        });
    }
}

/// A new page or "absent" marker not stored: the fill budget was spent
/// (`CACHE_FILL_BUDGET_PER_SEC`).
pub fn cache_fill_skipped(kind: &'static str) {
    counter!("cache_fills_skipped_total", "kind" => kind).increment(1);
}

/// A connection closed to admit a new one at `MAX_CONNECTIONS`.
pub fn connection_evicted() {
    counter!("http_connections_evicted_total").increment(1);
}

/// A history check found the cache behind Postgres and retired every entry.
pub fn history_repaired() {
    counter!("cache_history_repairs_total").increment(1);
}

/// A write's tombstones reached fewer replicas than `CACHE_WAIT_REPLICAS` in time.
pub fn wait_short() {
    counter!("cache_wait_short_total").increment(1);
}

/// A cache read slower than `CACHE_TIMEOUT_MS` that was waited out (within its budget).
pub fn cache_slow_read() {
    counter!("cache_slow_reads_total").increment(1);
}

/// A database read refused by the read bound (`DB_READ_QUEUE`, or no slot in time).
pub fn db_read_refused() {
    counter!("db_reads_refused_total").increment(1);
}

/// `/ready` asked the database (at most once a second, however often it is called).
pub fn ready_ping() {
    counter!("ready_database_pings_total").increment(1);
}

/// A request refused because `MAX_IN_FLIGHT` requests were already being served.
pub fn shed() {
    counter!("http_requests_shed_total").increment(1);
}

/// A product change that could not be published (subscribers miss it).
pub fn subscription_event_lost() {
    counter!("subscription_events_lost_total").increment(1);
}

/// A WebSocket client dropped for not reading its messages or changes in time.
pub fn subscription_dropped_slow() {
    counter!("subscription_slow_consumers_total").increment(1);
}

/// A WebSocket upgrade refused by `SUBSCRIPTION_MAX_CONNECTIONS`.
pub fn websocket_refused() {
    counter!("websocket_connections_refused_total").increment(1);
}

/// `websocket_connections` or `subscriptions` open now, moved by `delta`.
pub fn live_gauge(name: &'static str, delta: f64) {
    gauge!(name).increment(delta);
}

/// A persisted query (APQ) handled: `found_local`, `found_shared`, `not_found`,
/// `registered`, `known`, `refused_full`, `refused_unavailable`, `refused_rate`, `hash_mismatch`,
/// `malformed`, `not_supported`.
pub fn persisted_query(outcome: &'static str) {
    counter!("persisted_queries_total", "outcome" => outcome).increment(1);
}

/// One trust lease renewal (`catalog::lease`): whether it answered, and how long it took.
pub fn lease_renewal(ok: bool, seconds: f64) {
    let outcome = if ok { "ok" } else { "error" };
    counter!("cache_lease_renewals_total", "outcome" => outcome).increment(1);
    histogram!("cache_lease_renewal_duration_seconds").record(seconds);
}

/// A mutation that waited for every trust lease that might not know of its
/// undelivered invalidation to expire, and for how long.
pub fn lease_wait(seconds: f64) {
    counter!("mutation_lease_waits_total").increment(1);
    histogram!("mutation_lease_wait_seconds").record(seconds);
}

/// A read answered from the cache without a trust lease after the database failed it:
/// not covered by the promise (`extensions.cache.covered: false`).
pub fn uncovered_read() {
    counter!("cache_uncovered_reads_total").increment(1);
}

/// The trust lease as `/metrics` shows it: held (1) or not (0), and how many keys
/// (item keys and list counter copies) the current grant withholds.
pub fn scrape_lease(held: bool, withheld: u64) {
    gauge!("cache_lease_held").set(if held { 1.0 } else { 0.0 });
    gauge!("cache_lease_withheld_keys").set(withheld.min(1 << 40) as f64);
}
