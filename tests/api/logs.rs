//! Request ids: a client's `x-request-id` is kept only when short and plain, and every
//! log line written while serving a request carries it, including lines written inside
//! DataLoader batches and detached writes (which run in tasks of their own).
//!
//! `capture` keeps the server's log lines (JSON, with the span fields) of this test
//! process in memory, so a test can look for the lines of its own request id.
use std::{
    io::Write,
    sync::{Mutex, Once},
};

use serde_json::{Value, json};
use tracing_subscriber::{EnvFilter, fmt::MakeWriter, prelude::*};

use crate::harness::{Backend, TestApp, spawn_app, spawn_app_with};

static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
const KEEP: usize = 50_000;

struct Capture;

struct Line(Vec<u8>);

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let mut lines = LINES.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() >= KEEP {
            lines.drain(..KEEP / 2);
        }
        lines.push(String::from_utf8_lossy(&self.0).into_owned());
    }
}

impl<'a> MakeWriter<'a> for Capture {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line(Vec::new())
    }
}

/// The test process's subscriber: readable lines through libtest's capture, and JSON
/// lines (with every span's fields) into memory. Installed once, by the first app.
pub fn init(filter: &str) {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::registry()
            .with(EnvFilter::new(filter))
            .with(tracing_subscriber::fmt::layer().with_test_writer())
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_span_list(true)
                    .with_writer(Capture),
            )
            .try_init();
    });
}

/// Captured log lines that mention `needle`.
pub(crate) fn lines_with(needle: &str) -> Vec<String> {
    LINES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|l| l.contains(needle))
        .cloned()
        .collect()
}

/// The request id a line was written under (from its `request` span).
pub(crate) fn request_id_of(line: &str) -> Option<String> {
    let v: Value = serde_json::from_str(line).ok()?;
    v["spans"]
        .as_array()?
        .iter()
        .find_map(|s| s["request_id"].as_str().map(String::from))
}

async fn post_with_id(app: &TestApp, id: &str, body: Value, admin: bool) -> reqwest::Response {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("x-request-id", id)
        .json(&body);
    if admin {
        req = req.bearer_auth(crate::harness::TOKEN);
    }
    req.send().await.expect("request reaches the server")
}

#[tokio::test]
async fn a_plain_client_request_id_is_kept_and_a_hostile_one_replaced() {
    let app = spawn_app(&Backend::Embedded).await;
    let body = json!({ "query": "{ __typename }" });
    let r = post_with_id(&app, "client-id_1.2", body.clone(), false).await;
    assert_eq!(r.headers()["x-request-id"], "client-id_1.2");
    let long = "a".repeat(8_000);
    for hostile in [long.as_str(), "has space", "semi;colon", &"b".repeat(129)] {
        let r = post_with_id(&app, hostile, body.clone(), false).await;
        let echoed = r.headers()["x-request-id"].to_str().unwrap().to_string();
        assert_ne!(echoed, hostile);
        assert!(
            echoed.len() == 36 && echoed.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
            "a generated UUID, got {echoed:?}"
        );
    }
    let at_limit = "c".repeat(128);
    let r = post_with_id(&app, &at_limit, body, false).await;
    assert_eq!(r.headers()["x-request-id"], at_limit.as_str());
}

#[tokio::test]
async fn errors_inside_loader_batches_are_logged_under_the_request_id() {
    let app = spawn_app(&Backend::Embedded).await;
    app.create("A", "1", "C", 1).await;
    app.break_products_table().await;
    let id = format!("rid-batch-{}", uuid::Uuid::new_v4().simple());
    let query = json!({ "query": "{ productsByIds(ids: [\"1\", \"2\"]) { id } }" });
    let body: Value = post_with_id(&app, &id, query, false)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["errors"][0]["extensions"]["requestId"], id.as_str());
    let lines = lines_with("database read failed");
    let ours: Vec<&String> = lines
        .iter()
        .filter(|l| request_id_of(l).as_deref() == Some(id.as_str()))
        .collect();
    assert!(
        !ours.is_empty(),
        "no 'database read failed' line under {id}; lines: {lines:#?}"
    );
    assert!(
        ours[0].contains("product"),
        "the line names what failed: {}",
        ours[0]
    );
}

#[tokio::test]
async fn detached_writes_log_under_the_request_id() {
    // Redis is configured but nothing listens: the write commits, its invalidation
    // cannot be delivered, and the write's own task logs that after its patience.
    let closed = crate::fixtures::OwnRedis::free_port();
    let app = spawn_app_with(
        &Backend::Embedded,
        &[
            ("CACHE_BACKEND", "redis"),
            ("REDIS_URL", &format!("redis://127.0.0.1:{closed}/")),
        ],
    )
    .await;
    let id = format!("rid-write-{}", uuid::Uuid::new_v4().simple());
    let create = json!({
        "query": "mutation { createProduct(input: { name: \"Tea\", price: \"1\", category: \"Drinks\" }) { id } }"
    });
    let body: Value = post_with_id(&app, &id, create, true)
        .await
        .json()
        .await
        .unwrap();
    assert!(body["errors"].is_null(), "{body}");
    let lines = lines_with("invalidation not delivered");
    assert!(
        lines
            .iter()
            .any(|l| request_id_of(l).as_deref() == Some(id.as_str())),
        "no 'invalidation not delivered' line under {id}; lines: {lines:#?}"
    );
}
