//! Building and running the server: `AppState`, the router, start-up (connect, migrate,
//! seed, bind) and graceful shutdown.
use std::{future::Future, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::{DefaultBodyLimit, State},
    http::{HeaderName, HeaderValue, Method, Request, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use tokio::net::TcpListener;
use tower_http::{
    LatencyUnit,
    catch_panic::CatchPanicLayer,
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    timeout::TimeoutLayer,
    trace::{DefaultOnResponse, TraceLayer},
};

use crate::{
    cache::{Cache, CacheError},
    catalog::Catalog,
    config::Config,
    db,
    graphql::{self, AppSchema, QueryLimits, transport::responses::ResponseCache},
    seed,
};

/// Everything a request handler may touch, behind one `Arc`: axum clones the state
/// for every request, and one reference count is cheaper than one per field.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// The fields of `AppState` (reached through `Deref`).
pub struct Shared {
    /// The use-cases (database pool and cache inside).
    pub catalog: Catalog,
    /// The GraphQL schema, built once.
    pub schema: AppSchema,
    /// The settings this process started with.
    pub config: Config,
    /// The bearer token mutations need (from `ADMIN_TOKEN`, or generated at start).
    pub admin_token: String,
    /// Whole answers of repeated reads, replayed while their stamps hold.
    pub responses: ResponseCache,
    /// Persisted query documents (APQ) by hash.
    pub documents: crate::cache::documents::Documents,
    /// The schema WebSocket connections run on (`graphql::build_live_schema`).
    pub live_schema: AppSchema,
    /// WebSocket bounds of this instance.
    pub live: crate::graphql::transport::ws::Hub,
    /// The last database ping of `/ready` and when (a tokio Mutex: held across the
    /// ping, so concurrent probes wait for one answer).
    pub ready: tokio::sync::Mutex<Option<(std::time::Instant, bool)>>,
    /// Persisted query registrations per client address (`PERSISTED_QUERY_REGISTRATIONS_PER_MINUTE`).
    pub registrations: crate::net::PerAddress,
    /// Long documents run one at a time, on a thread of their own
    /// (`graphql::transport::execute::heavy`).
    pub heavy: Arc<tokio::sync::Semaphore>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("seeding: {0:?}")]
    Seed(crate::error::AppError),
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        crate::metrics::handle();
        crate::metrics::know_operations(
            crate::web::dashboard_operations()
                .into_iter()
                .chain(config.metrics_operation_names.iter().cloned()),
        );
        let db = db::connect(
            &config.database_url,
            config.db_max_connections,
            config.db_timeout,
        )
        .await?;
        let cache = Cache::from_config(&config)?;
        // A bounded wait, so the demo seed and the first requests find the cache
        // connected instead of reading around it (Redis may also be down: go on then).
        cache.wait_connected(Duration::from_secs(2)).await;
        let reads = crate::catalog::ReadBound::new(
            config.db_read_concurrency,
            config.db_read_queue,
            config.db_timeout,
        )
        .per_request(config.max_sql_per_request);
        let catalog = Catalog::with_read_bound(db, Arc::new(cache), reads);
        catalog.spawn_change_relay();
        if catalog.cache().backend() == "redis" {
            catalog.cache().feed.wait_up(Duration::from_secs(2)).await;
            catalog.spawn_outbox_replayer();
            catalog.spawn_history_checker();
            // Reads use Redis only once its history is checked: wait for that too, so
            // the first requests (and the demo seed's cache clear) find it trusted.
            catalog.cache().wait_trusted(Duration::from_secs(2)).await;
        }
        if config.seed_demo {
            seed::demo_if_empty(&catalog)
                .await
                .map_err(StartupError::Seed)?;
        }
        let admin_token = match &config.admin_token {
            Some(t) => t.clone(),
            None => generate_token(),
        };
        let limits = QueryLimits {
            introspection: config.introspection,
            max_depth: config.max_depth,
            max_complexity: config.max_complexity,
        };
        let schema = graphql::build_schema(&limits);
        let live_schema = graphql::build_live_schema(&limits);
        let listener = listen(config.bind_addr).map_err(|source| StartupError::Bind {
            addr: config.bind_addr,
            source,
        })?;
        let state = AppState(Arc::new(Shared {
            responses: ResponseCache::new(config.response_cache_bytes),
            documents: crate::cache::documents::Documents::new(config.persisted_limits),
            live_schema,
            live: crate::graphql::transport::ws::Hub::new(config.subscriptions.clone()),
            ready: Default::default(),
            registrations: crate::net::PerAddress::new(config.persisted_registrations_per_minute),
            heavy: Arc::new(tokio::sync::Semaphore::new(1)),
            catalog,
            schema,
            config,
            admin_token,
        }));
        Ok(Self {
            router: router(state.clone()),
            listener,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until SIGTERM or Ctrl-C; in-flight requests finish first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serves until `stop` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = self.listener.local_addr()?;
        let c = &self.state.config;
        tracing::info!(
            %addr,
            database = %crate::config::redact_url(&c.database_url),
            cache = self.state.catalog.cache().backend(),
            "larder listening"
        );
        if c.admin_token.is_none() {
            // Printed once to the terminal, never into the log (logs travel to places a
            // secret should not); links carry it in the fragment, which no browser sends
            // to a server or in a `Referer`.
            tracing::warn!(
                "ADMIN_TOKEN is not set: generated a token for this run and printed it to stderr (not logged)"
            );
            let token = &self.state.admin_token;
            eprintln!(
                "larder: ADMIN_TOKEN is not set; this run's admin token is {token}\n        dashboard: http://{addr}/#token={token}\n        GraphiQL:  http://{addr}/graphql#token={token}"
            );
        }
        // Stopping tells WebSocket connections too (1001): a graceful shutdown waits for
        // HTTP requests, not for upgraded connections.
        let state = self.state.clone();
        let stop = async move {
            stop.await;
            state.live.begin_shutdown();
        };
        let limits = crate::serve::Limits {
            max_connections: c.max_connections,
            header_timeout: c.header_timeout,
        };
        let served = crate::serve::serve(self.listener, self.router, limits, stop).await;
        self.state.live.closed(Duration::from_secs(1)).await;
        served
    }
}

/// Connections the kernel may hold for `accept` (capped by `net.core.somaxconn`).
/// `TcpListener::bind` asks for 1,024: 2,000 clients connecting at once overflowed it
/// (2,831 `ListenOverflows`), and each dropped handshake waited a 1 s SYN retransmit,
/// which put p99.9 at 2.1 s and idled those connections for the first seconds.
const LISTEN_BACKLOG: u32 = 8192;

/// The listening socket, as `TcpListener::bind` makes it (`SO_REUSEADDR` on Unix) but
/// with `LISTEN_BACKLOG`.
fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

fn generate_token() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

pub fn router(state: AppState) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let body_limit = state.config.body_limit_bytes;
    let timeout = state.config.request_timeout;
    let cors = cors_layer(&state.config.cors_allow_origins);
    Router::new()
        .route("/graphql", get(graphql::transport::ws::get_or_upgrade).post(graphql::transport::post))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(crate::metrics::render))
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
                    crate::overload::Gate::new(state.config.max_in_flight),
                    crate::overload::shed,
                ))
                .layer(DefaultBodyLimit::max(body_limit)),
        )
        .with_state(state)
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
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let db_ok = {
        let mut last = state.ready.lock().await;
        match *last {
            Some((at, ok)) if at.elapsed() < Duration::from_secs(1) => ok,
            _ => {
                crate::metrics::ready_ping();
                let ok = state.catalog.db().ping().await.is_ok();
                *last = Some((std::time::Instant::now(), ok));
                ok
            }
        }
    };
    let cache = state.catalog.cache();
    let body = serde_json::json!({
        "status": if db_ok { "ready" } else { "unavailable" },
        "database": if db_ok { "ok" } else { "unreachable" },
        "cache": {
            "backend": cache.backend(),
            "connected": cache.is_connected(),
            // Whether reads use the cache now, and why not when they do not.
            "trusted": cache.is_trusted(),
            "reason": cache.untrusted_reason(),
        },
    });
    let status = if db_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down; finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A crowd connecting at once is queued, not dropped: with `bind`'s backlog of 1,024
    /// the connections past it get no SYN-ACK and wait a second for a retransmit.
    #[tokio::test]
    async fn a_crowd_connecting_at_once_is_queued() {
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0);
        let crowd = somaxconn.min(1_500) as usize;
        if crowd <= 1_100 {
            eprintln!("net.core.somaxconn is {somaxconn}: too low to tell the backlog apart");
            return;
        }
        // Nothing accepts: every connection has to wait in the kernel's queue.
        let listener = listen("127.0.0.1:0".parse().unwrap()).expect("listens");
        let addr = listener.local_addr().unwrap();
        let connects = (0..crowd).map(|_| async move {
            tokio::time::timeout(
                Duration::from_millis(700),
                tokio::net::TcpStream::connect(addr),
            )
            .await
        });
        let results = futures::future::join_all(connects).await;
        let connected = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
        assert_eq!(connected, crowd, "connected within 700 ms");
        drop(listener);
    }
}
