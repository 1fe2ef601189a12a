//! Shedding, the last resort under overload: beyond `MAX_IN_FLIGHT` requests served at
//! once, a new request gets 503 `OVERLOADED` with `Retry-After: 1` at once (counted in
//! `http_requests_shed_total`), instead of queueing until everything times out. The
//! default (10,000) sheds nothing at the load the bench drives; `/health`, `/ready` and
//! `/metrics` are never shed, so probes keep telling the truth.
use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering::SeqCst},
};

use axum::{
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use crate::error::ErrorCode;

/// The in-flight count and its limit, shared by every request.
pub struct Gate {
    in_flight: AtomicUsize,
    limit: usize,
}

impl Gate {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            limit,
        })
    }
}

/// Releases a request's place when its response is done (or it is dropped).
struct Place(Arc<Gate>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, SeqCst);
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`).
pub async fn shed(State(gate): State<Arc<Gate>>, req: Request, next: Next) -> Response {
    if matches!(req.uri().path(), "/health" | "/ready" | "/metrics") {
        return next.run(req).await;
    }
    let before = gate.in_flight.fetch_add(1, SeqCst);
    let _place = Place(gate.clone());
    if before >= gate.limit {
        crate::metrics::shed();
        return overloaded();
    }
    next.run(req).await
}

fn overloaded() -> Response {
    let body = serde_json::json!({ "errors": [{
        "message": "the server is overloaded; try again shortly",
        "extensions": { "code": ErrorCode::Overloaded.as_str() },
    }] });
    let mut r = (ErrorCode::Overloaded.status(), axum::Json(body)).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    debug_assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    r
}
