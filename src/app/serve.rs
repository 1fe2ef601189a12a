//! Serving HTTP connections: an accept loop around hyper instead of `axum::serve`, which
//! sets no header-read timeout (hyper needs a timer for one) and admits connections
//! without bound. Here:
//!
//! - a client has `HTTP_HEADER_TIMEOUT_MS` to send a request's headers, and a keep-alive
//!   connection may sit idle as long (hyper runs one timer for both): a connection that
//!   sends half a header and then nothing is closed;
//! - at most `MAX_CONNECTIONS` connections at once; at the cap, a new connection closes
//!   the one idle longest (reading headers or between requests; never one serving a
//!   request), so slow or idle clients cannot keep a new one out, and the cap is logged
//!   (at most once a second) and counted (`http_connections_evicted_total`). With every
//!   connection busy, the new one is closed at once;
//! - every request carries its peer address (`ConnectInfo`), for per-client limits;
//! - stopping: no new connections, idle ones close, in-flight requests finish;
//! - the listening socket asks the kernel for a long accept queue (`listen`).
use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// The bounds of the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub header_timeout: Duration,
}

/// One open connection, as the cap sees it.
struct Open {
    /// Milliseconds since `Registry::born` when it last became idle; `BUSY` while it
    /// serves a request.
    idle_since: AtomicU64,
    /// Closes the connection at once (the cap needs its place).
    evict: tokio::sync::Notify,
}

const BUSY: u64 = u64::MAX;

/// Every open connection. A std Mutex: held for an insert, a remove or one scan, never
/// across an await.
struct Registry {
    open: Mutex<HashMap<u64, Arc<Open>>>,
    next: AtomicU64,
    born: Instant,
    last_warning: AtomicU64,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    /// A place for a new connection, closing the longest-idle one when at `cap`;
    /// `None` when every connection is busy.
    fn admit(&self, cap: usize) -> Option<(u64, Arc<Open>)> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.len() >= cap {
            let oldest = open
                .values()
                .map(|o| o.idle_since.load(Relaxed))
                .filter(|&t| t != BUSY)
                .min();
            let victim = oldest.and_then(|t| {
                open.iter()
                    .find(|(_, o)| o.idle_since.load(Relaxed) == t)
                    .map(|(id, _)| *id)
            });
            self.warn_once_a_second(cap, oldest.map(|t| self.now_ms().saturating_sub(t)));
            let victim = victim.and_then(|id| open.remove(&id))?;
            victim.evict.notify_one();
            crate::metrics::connection_evicted();
        }
        let id = self.next.fetch_add(1, Relaxed);
        let entry = Arc::new(Open {
            idle_since: AtomicU64::new(self.now_ms()),
            evict: tokio::sync::Notify::new(),
        });
        open.insert(id, entry.clone());
        crate::metrics::live_gauge("http_connections", 1.0);
        Some((id, entry))
    }

    /// A connection ended (an evicted one was already removed when it was chosen).
    fn leave(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        crate::metrics::live_gauge("http_connections", -1.0);
    }

    fn warn_once_a_second(&self, cap: usize, idle_ms: Option<u64>) {
        let now = self.now_ms() / 1000 + 1;
        if self.last_warning.swap(now, Relaxed) != now {
            match idle_ms {
                Some(idle_ms) => tracing::warn!(
                    max_connections = cap,
                    idle_ms,
                    "connection cap reached (MAX_CONNECTIONS): closing the connection idle longest to admit a new one"
                ),
                None => tracing::warn!(
                    max_connections = cap,
                    "connection cap reached (MAX_CONNECTIONS) and every connection is serving a request: refusing a new one"
                ),
            }
        }
    }
}

/// Marks a connection busy while a request is served.
struct Busy(Arc<Open>, Arc<Registry>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since.store(self.1.now_ms(), Relaxed);
    }
}

/// Connections the kernel may hold for `accept` (capped by `net.core.somaxconn`).
/// `TcpListener::bind` asks for 1,024: 2,000 clients connecting at once overflowed it
/// (2,831 `ListenOverflows`), and each dropped handshake waited a 1 s SYN retransmit,
/// which put p99.9 at 2.1 s and idled those connections for the first seconds.
const LISTEN_BACKLOG: u32 = 8192;

/// The listening socket, as `TcpListener::bind` makes it (`SO_REUSEADDR` on Unix) but
/// with `LISTEN_BACKLOG`.
pub fn listen(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `router` on `listener` until `stop` resolves, then lets in-flight requests
/// finish (see the module header).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    stop: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let registry = Arc::new(Registry {
        open: Mutex::new(HashMap::new()),
        next: AtomicU64::new(0),
        born: Instant::now(),
        last_warning: AtomicU64::new(0),
    });
    // Stopping: `stopping` tells every connection; `done` closes once every connection
    // task has dropped its receiver.
    let (stopping, _) = tokio::sync::watch::channel(false);
    let (done_tx, done_rx) = tokio::sync::watch::channel(());
    let mut stop = std::pin::pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // No Nagle delay on answers: a response must not wait for the client's ACK of
        // the previous one on a keep-alive connection.
        let _ = tcp.set_nodelay(true);
        let Some((id, open)) = registry.admit(limits.max_connections) else {
            drop(tcp);
            continue;
        };
        let (registry, router, mut stopping) =
            (registry.clone(), router.clone(), stopping.subscribe());
        let done = done_rx.clone();
        tokio::spawn(async move {
            let service = {
                let (open, registry) = (open.clone(), registry.clone());
                hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                    req.extensions_mut().insert(ConnectInfo(peer));
                    open.idle_since.store(BUSY, Relaxed);
                    let busy = Busy(open.clone(), registry.clone());
                    let answer = router.clone().oneshot(req.map(axum::body::Body::new));
                    async move {
                        let response = answer.await;
                        drop(busy);
                        response
                    }
                })
            };
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .keep_alive(true);
            let conn = builder
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            let mut conn = std::pin::pin!(conn);
            let mut draining = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::trace!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    () = open.evict.notified() => break,
                    changed = stopping.changed(), if !draining => {
                        draining = true;
                        if changed.is_ok() {
                            conn.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            registry.leave(id);
            drop(done);
        });
    }
    drop(listener);
    let _ = stopping.send(true);
    drop(done_rx);
    done_tx.closed().await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
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

    fn registry() -> Registry {
        Registry {
            open: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            born: Instant::now(),
            last_warning: AtomicU64::new(0),
        }
    }

    #[test]
    fn at_the_cap_the_longest_idle_connection_makes_room_and_busy_ones_never_do() {
        let r = registry();
        let (a, first) = r.admit(2).unwrap();
        let (_, second) = r.admit(2).unwrap();
        first.idle_since.store(5, Relaxed);
        second.idle_since.store(9, Relaxed);
        let (_, third) = r.admit(2).unwrap();
        assert!(
            !r.open.lock().unwrap().contains_key(&a),
            "the oldest idle went"
        );
        // Both left are busy: no room.
        second.idle_since.store(BUSY, Relaxed);
        third.idle_since.store(BUSY, Relaxed);
        assert!(r.admit(2).is_none());
        assert_eq!(r.open.lock().unwrap().len(), 2);
    }
}
