//! The router: `/graphql` (the transport), the probes (`/health`, `/ready`, `/metrics`)
//! and the dashboard's files, behind one middleware stack (CORS, request ids, one log
//! line per request, a panic catcher, the request timeout, metrics, shedding, the body
//! limit). The probes get the state they read (`Probes`), the GraphQL handlers theirs
//! (`transport::Endpoint`).
use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderName, HeaderValue, Method, Request, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tower_http::{
    LatencyUnit,
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};

use crate::{catalog::Catalog, config::Config, transport::Endpoint};

/// What the probes read: the catalog (database and cache state) and `/ready`'s last
/// database ping.
#[derive(Clone)]
pub struct Probes(Arc<ProbeState>);

pub struct ProbeState {
    catalog: Catalog,
    /// The last database ping of `/ready` and when (a tokio Mutex: held across the
    /// ping, so concurrent probes wait for one answer).
    ready: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
}

impl Probes {
    pub fn new(catalog: Catalog) -> Self {
        Self(Arc::new(ProbeState {
            catalog,
            ready: Default::default(),
        }))
    }
}

pub fn router(config: &Config, endpoint: Endpoint, probes: Probes) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let timeout = config.request_timeout;
    let cors = cors_layer(&config.cors_allow_origins);
    let graphql = Router::new()
        .route(
            "/graphql",
            get(crate::transport::get_or_upgrade).post(crate::transport::post),
        )
        .with_state(endpoint);
    let probes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(probes);
    graphql
        .merge(probes)
        .fallback(get(crate::web::asset))
        // One stack, outermost first, applied as one layer: each `Router::layer` call
        // boxes the routes once more, and every box is cloned for every request (nine
        // of them were 7-9% of the CPU at 2,000 connections, in allocation).
        .layer(
            tower::ServiceBuilder::new()
                .layer(cors)
                .layer(axum::middleware::from_fn(plain_request_id))
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(
                    TraceLayer::new_for_http()
                        // At ERROR level, so the span (and with it the request id on every line
                        // logged inside it) exists under any filter that lets a warning through.
                        .make_span_with(|req: &Request<_>| {
                            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
                            tracing::error_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                        })
                        // One line per answered request, in its span (so with its request id).
                        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Micros)),
                )
                .layer(PropagateRequestIdLayer::new(request_id))
                // A panic anywhere below answers 500 with a code, logged in the request's
                // span (so with its id), instead of a dropped connection.
                .layer(CatchPanicLayer::custom(panicked))
                .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, timeout + Duration::from_millis(500)))
                .layer(axum::middleware::from_fn(crate::metrics::track_http))
                .layer(axum::middleware::from_fn_with_state(
                    super::overload::Gate::new(config.max_in_flight),
                    super::overload::shed,
                ))
                .layer(DefaultBodyLimit::max(config.body_limit_bytes)),
        )
}

/// Longest client-chosen `x-request-id` that is kept.
const MAX_REQUEST_ID: usize = 128;

/// Keeps a client's `x-request-id` only when it is short and plain (at most 128 of
/// `[A-Za-z0-9._-]`); otherwise it is dropped and `SetRequestIdLayer` generates one, so
/// a hostile id is never echoed or written on every log line.
async fn plain_request_id(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let plain = |v: &HeaderValue| {
        let b = v.as_bytes();
        !b.is_empty()
            && b.len() <= MAX_REQUEST_ID
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    };
    let headers = req.headers_mut();
    if headers.get("x-request-id").is_some_and(|v| !plain(v))
        || headers.get_all("x-request-id").iter().count() > 1
    {
        headers.remove("x-request-id");
    }
    next.run(req).await
}

/// CORS is off unless origins are listed: browsers then refuse cross-origin calls. `*`
/// allows any origin (credentials are never allowed: the token travels in a header the
/// page sets, not in a cookie).
fn cors_layer(origins: &[String]) -> tower::util::Either<CorsLayer, tower::layer::util::Identity> {
    let any = origins.iter().any(|o| o == "*");
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    if allowed.is_empty() {
        return tower::util::Either::Right(tower::layer::util::Identity::new());
    }
    // tower-http panics on `*` inside a list: it is its own setting.
    let origin = if any {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(allowed)
    };
    tower::util::Either::Left(
        CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([
                header::CONTENT_TYPE,
                header::AUTHORIZATION,
                header::ACCEPT,
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                HeaderName::from_static("x-cache"),
                HeaderName::from_static("x-request-id"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

/// The answer to a request whose handling panicked (the panic is logged here, in the
/// request's span).
fn panicked(panic: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = %message, "a request panicked");
    let body = serde_json::json!({ "errors": [{
        "message": "internal error; the server log has the details under this request's id",
        "extensions": { "code": crate::error::ErrorCode::InternalServerError.as_str() },
    }] });
    let mut r = (StatusCode::INTERNAL_SERVER_ERROR, Json(body)).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The process is alive.
async fn health() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Ready when the database answers; reports the cache (and whether reads trust it)
/// without requiring it. The database is asked at most once a second (probes are never
/// shed, so this must cost nothing however often it is called).
async fn ready(State(probes): State<Probes>) -> impl IntoResponse {
    let db_ok = {
        let mut last = probes.0.ready.lock().await;
        match *last {
            Some((at, ok)) if at.elapsed() < Duration::from_secs(1) => ok,
            _ => {
                crate::metrics::ready_ping();
                let ok = probes.0.catalog.db().ping().await.is_ok();
                *last = Some((std::time::Instant::now(), ok));
                ok
            }
        }
    };
    let cache = probes.0.catalog.cache_status();
    let mut body = serde_json::json!({
        "status": if db_ok { "ready" } else { "unavailable" },
        "database": if db_ok { "ok" } else { "unreachable" },
        "cache": {
            "backend": cache.backend,
            "connected": cache.connected,
            // Whether reads use the cache now, and why not when they do not.
            "trusted": cache.reason.is_none(),
            "reason": cache.reason,
        },
    });
    // A shared cache's trust lease: held, and how many keys it withholds.
    if let Some(l) = &cache.lease {
        let withheld = match l.withheld {
            u64::MAX => serde_json::json!("all"),
            n => serde_json::json!(n),
        };
        body["cache"]["lease"] = serde_json::json!({ "held": l.held, "withheldKeys": withheld });
    }
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

/// `GET /metrics`: the Prometheus text, with the gauges read at scrape time (the
/// database pool, the cache connection) set first.
async fn metrics(State(probes): State<Probes>) -> impl IntoResponse {
    let catalog = &probes.0.catalog;
    let (in_use, idle) = catalog.pool_connections();
    let cache = catalog.cache_status();
    crate::metrics::scrape_gauges(in_use, idle, cache.backend, cache.connected);
    if let Some(lease) = &cache.lease {
        crate::metrics::scrape_lease(lease.held, lease.withheld);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::handle().render(),
    )
}
