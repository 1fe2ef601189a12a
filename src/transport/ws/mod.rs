//! Subscriptions over WebSocket, on `/graphql` itself: a GET with `Upgrade: websocket`
//! speaking `graphql-transport-ws` or the legacy `graphql-ws` (async-graphql's protocol
//! code, `GraphQLProtocol` from async-graphql-axum). Everything HTTP requests get is
//! applied here too, since async-graphql's WebSocket runs whatever it is sent:
//!
//! - on the upgrade: the origin, as CORS decides it for HTTP (403 otherwise); at most
//!   `SUBSCRIPTION_MAX_CONNECTIONS` connections (503 `OVERLOADED`); messages and frames
//!   no larger than `BODY_LIMIT_BYTES` (tungstenite's default is 64 MiB);
//! - per connection: `connection_init` within `SUBSCRIPTION_INIT_TIMEOUT_MS` (else close
//!   4408); a WebSocket ping every `SUBSCRIPTION_KEEPALIVE_MS` (and `ka` for the legacy
//!   protocol), closed (1001) when silent for two; a message the client does not read
//!   within `SUBSCRIPTION_SEND_TIMEOUT_MS`, or changes it falls behind on, drop it
//!   (1013): memory never grows for a slow reader;
//! - per operation (`LiveExecutor`): subscriptions only (queries and mutations belong
//!   to HTTP), the nesting scan and fragment-expansion bound before parsing goes
//!   further, async-graphql's depth and complexity limits, at most
//!   `SUBSCRIPTION_MAX_PER_CONNECTION` at once (of them at most
//!   `SUBSCRIPTION_MAX_UNFILTERED_PER_CONNECTION` without an id), errors masked as on
//!   HTTP, and a request id on every log line of the operation.
mod executor;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use async_graphql::{
    Data,
    http::{ALL_WEBSOCKET_PROTOCOLS, WebSocketProtocols},
};
use async_graphql_axum::{GraphQLProtocol, GraphQLWebSocket};
use axum::{
    extract::{
        ConnectInfo, FromRequestParts, RawQuery, State,
        ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade},
    },
    http::{HeaderMap, header, request::Parts},
    response::{IntoResponse, Response as HttpResponse},
};
use futures::{SinkExt, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::{negotiate::Media, respond::Rejection};
use crate::{
    config::SubscriptionLimits,
    error::ErrorCode,
    graphql::subscription::{Connection, Control, SLOW_CONSUMER},
    transport::Endpoint,
};
use executor::{Gauge, LiveExecutor};

/// How long a closed connection still reads what the client sends (its close reply).
const CLOSE_GRACE: Duration = Duration::from_millis(1000);

/// This instance's WebSocket bounds, shared by its connections.
pub struct Hub {
    connections: Arc<Semaphore>,
    unfiltered: Arc<Semaphore>,
    limits: SubscriptionLimits,
    /// Set at shutdown: every connection closes with 1001 (axum's graceful shutdown
    /// does not wait for upgraded connections).
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl Hub {
    pub fn new(limits: SubscriptionLimits) -> Self {
        Self {
            connections: Arc::new(Semaphore::new(limits.max_connections)),
            unfiltered: Arc::new(Semaphore::new(limits.max_unfiltered)),
            limits,
            shutdown: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Closes every connection (1001).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Waits up to `limit` for every connection to be gone.
    pub async fn closed(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.connections.available_permits() < self.limits.max_connections
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// `GET /graphql`: a WebSocket upgrade, or everything else `get` serves.
pub async fn get_or_upgrade(
    State(state): State<Endpoint>,
    request: axum::extract::Request,
) -> HttpResponse {
    let (parts, _) = request.into_parts();
    let wants_socket = parts
        .headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !wants_socket {
        let raw = parts.uri.query().map(str::to_string);
        let peer = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0);
        return super::get(State(state), peer, parts.headers, RawQuery(raw)).await;
    }
    // Boxed, so that a plain GET's future does not carry the upgrade's size.
    Box::pin(upgrade(state, parts)).await
}

async fn upgrade(state: Endpoint, mut parts: Parts) -> HttpResponse {
    let refuse = |code, message: &str| Rejection::new(code, message).into_response(Media::Json);
    if !origin_allowed(&parts.headers, &state.settings.cors_allow_origins) {
        return refuse(
            ErrorCode::Forbidden,
            "this origin may not open a WebSocket here (see CORS_ALLOW_ORIGINS)",
        );
    }
    // The protocol `GraphQLProtocol` picks: the first offered one that parses.
    let legacy = parts
        .headers
        .get(header::SEC_WEBSOCKET_PROTOCOL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|p| p.trim().parse::<WebSocketProtocols>().ok())
        })
        == Some(WebSocketProtocols::SubscriptionsTransportWS);
    let Ok(protocol) = GraphQLProtocol::from_request_parts(&mut parts, &()).await else {
        return refuse(
            ErrorCode::BadRequest,
            "Sec-WebSocket-Protocol must offer graphql-transport-ws or graphql-ws",
        );
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &state).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    let Ok(permit) = state.live.connections.clone().try_acquire_owned() else {
        crate::metrics::websocket_refused();
        return refuse(
            ErrorCode::Overloaded,
            "this server holds as many WebSocket connections as it allows (SUBSCRIPTION_MAX_CONNECTIONS)",
        );
    };
    let limit = state.settings.body_limit_bytes;
    let id = parts
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_upgrade(move |socket| serve(state, socket, (protocol, legacy), permit, id))
}

/// A browser's `Origin` must be this server's own (its `Host`) or one CORS allows;
/// clients that send none (not browsers) are not asked.
fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let own = origin
        .split_once("://")
        .is_some_and(|(_, authority)| Some(authority) == host);
    own || allowed
        .iter()
        .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One connection, until either side ends it: async-graphql-axum's `GraphQLWebSocket`
/// speaks the protocol into a small queue; the loop here writes the queue to the socket
/// with a deadline per message, pings, and ends the connection on a timeout or a
/// request (`Control`).
async fn serve(
    state: Endpoint,
    socket: WebSocket,
    (protocol, legacy): (GraphQLProtocol, bool),
    _permit: OwnedSemaphorePermit,
    request_id: String,
) {
    let limits = state.live.limits.clone();
    let span = tracing::error_span!("websocket", connection = %request_id);
    let _open = Gauge::open();
    let control = Arc::new(Control::default());
    let heard = Arc::new(AtomicU64::new(now_ms()));
    let (mut sink, stream) = socket.split();
    let input = {
        let (heard, control) = (heard.clone(), control.clone());
        stream
            .inspect(move |_| heard.store(now_ms(), SeqCst))
            // After the server's close the client may still answer (pongs, its own
            // close): read on for a moment, so its writes do not hit a closed socket.
            .take_until(async move {
                control.closed().await;
                tokio::time::sleep(CLOSE_GRACE).await;
            })
    };
    let mut data = Data::default();
    data.insert(Connection {
        catalog: state.catalog.clone(),
        unfiltered: state.live.unfiltered.clone(),
        unfiltered_here: Arc::new(Semaphore::new(limits.max_unfiltered_per_connection)),
        control: control.clone(),
    });
    let initialized = Arc::new(AtomicBool::new(false));
    let executor = LiveExecutor {
        schema: state.live_schema.clone(),
        active: Arc::new(AtomicUsize::new(0)),
        max: limits.max_per_connection,
        connection: request_id.clone().into(),
    };
    let init = initialized.clone();
    // A few messages ahead at most: the protocol waits while the client is behind.
    let (queue, mut queued) = futures::channel::mpsc::channel::<Message>(8);
    let speak = GraphQLWebSocket::new_with_pair(queue, input, executor, protocol)
        .with_data(data)
        .on_connection_init(move |_payload| {
            init.store(true, SeqCst);
            async { Ok(Data::default()) }
        })
        .serve();
    let mut shutdown = state.live.shutdown.subscribe();
    let write = async {
        let init_timeout = tokio::time::sleep(limits.init_timeout);
        tokio::pin!(init_timeout);
        let mut ping = tokio::time::interval(limits.keepalive);
        ping.tick().await;
        let silent = 2 * limits.keepalive.as_millis() as u64;
        let slow = |what: &str| {
            crate::metrics::subscription_dropped_slow();
            Some((
                SLOW_CONSUMER,
                format!("too slow: {what} not read in time; reconnect"),
            ))
        };
        let close = loop {
            tokio::select! {
                // A close asked for goes first (before, say, a `complete` already queued).
                biased;
                closing = control.closed() => break Some(closing),
                () = shutting_down(&mut shutdown) => {
                    break Some((1001, "the server is shutting down".to_string()));
                }
                message = queued.next() => match message {
                    Some(Message::Close(frame)) => {
                        break frame.map(|f| (f.code, f.reason.to_string()));
                    }
                    Some(message) => {
                        if !send(&mut sink, message, limits.send_timeout).await {
                            break slow("a message was");
                        }
                    }
                    None => break None,
                },
                _ = &mut init_timeout, if !initialized.load(SeqCst) => {
                    break Some((4408, "Connection initialisation timeout".to_string()));
                }
                _ = ping.tick() => {
                    if now_ms().saturating_sub(heard.load(SeqCst)) > silent {
                        break Some((1001, "no answer to pings".to_string()));
                    }
                    let mut ok = send(&mut sink, Message::Ping(Default::default()), limits.send_timeout).await;
                    if ok && legacy {
                        ok = send(&mut sink, Message::Text(r#"{"type":"ka"}"#.into()), limits.send_timeout).await;
                    }
                    if !ok {
                        break slow("pings were");
                    }
                }
            }
        };
        match &close {
            Some((code, reason)) => {
                tracing::info!(code, reason = %reason, "websocket closed by the server");
                let frame = Message::Close(Some(CloseFrame {
                    code: *code,
                    reason: reason.as_str().into(),
                }));
                // A client that reads nothing will not read this either: a short wait.
                let _ = send(&mut sink, frame, Duration::from_millis(200)).await;
            }
            None => tracing::debug!("websocket closed"),
        }
        // Stops the protocol side too (its input ends within CLOSE_GRACE); what it
        // still says is dropped.
        control.close(1000, String::new());
        while queued.next().await.is_some() {}
    };
    let _ = tracing::Instrument::instrument(
        async {
            tokio::join!(speak, write);
        },
        span,
    )
    .await;
}

/// Resolves once the server shuts down.
async fn shutting_down(rx: &mut tokio::sync::watch::Receiver<bool>) {
    if rx.wait_for(|down| *down).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Sends one message within `limit`; `false` if the client did not take it in time or
/// the connection is gone.
async fn send(
    sink: &mut futures::stream::SplitSink<WebSocket, Message>,
    message: Message,
    limit: Duration,
) -> bool {
    matches!(
        tokio::time::timeout(limit, sink.send(message)).await,
        Ok(Ok(()))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_as_cors_would() {
        let headers = |origin: Option<&str>| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, "127.0.0.1:8000".parse().unwrap());
            if let Some(o) = origin {
                h.insert(header::ORIGIN, o.parse().unwrap());
            }
            h
        };
        let allowed = vec!["https://shop.example".to_string()];
        assert!(origin_allowed(&headers(None), &[]), "not a browser");
        assert!(
            origin_allowed(&headers(Some("http://127.0.0.1:8000")), &[]),
            "own"
        );
        assert!(!origin_allowed(
            &headers(Some("https://evil.example")),
            &allowed
        ));
        assert!(origin_allowed(
            &headers(Some("https://shop.example")),
            &allowed
        ));
        assert!(!origin_allowed(
            &headers(Some("http://127.0.0.1:8001")),
            &[]
        ));
    }
}
