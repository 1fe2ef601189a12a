//! Subscriptions over WebSocket (`graphql-transport-ws`, and the legacy `graphql-ws`):
//! changes made through one instance reach subscribers on another; each change is read
//! with fresh loaders; every limit is sent its abusive case; a lost feed ends
//! subscriptions with an error.
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use crate::fixtures::OwnRedis;
use crate::harness::{
    Backend, TestApp, each_backend, redis_backend, spawn_app, spawn_app_with, spawn_sibling,
};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

const CHANGES: &str = "subscription($id: ID) { productChanged(id: $id) { kind id version product { name category { name productCount } } } }";

/// A raw WebSocket client of one larder.
struct Ws {
    socket: Socket,
}

/// What the server did with an upgrade that it refused.
fn refused_status(
    app: &TestApp,
    headers: &[(&str, &str)],
) -> impl std::future::Future<Output = u16> {
    let request = upgrade_request(app, "graphql-transport-ws", headers);
    async move {
        match tokio_tungstenite::connect_async(request).await {
            Ok(_) => 101,
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
            Err(e) => panic!("upgrade failed otherwise: {e}"),
        }
    }
}

fn upgrade_request(
    app: &TestApp,
    protocol: &str,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    upgrade_request_at(&app.base, protocol, headers)
}

fn upgrade_request_at(
    base: &str,
    protocol: &str,
    headers: &[(&str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let url = format!("{}/graphql", base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("a ws url");
    let h = request.headers_mut();
    h.insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(protocol).unwrap(),
    );
    for (k, v) in headers {
        let name = tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes());
        h.insert(name.unwrap(), HeaderValue::from_str(v).unwrap());
    }
    request
}

impl Ws {
    async fn open(app: &TestApp, protocol: &str) -> Self {
        Self::open_at(&app.base, protocol).await
    }

    async fn open_at(base: &str, protocol: &str) -> Self {
        let (socket, response) =
            tokio_tungstenite::connect_async(upgrade_request_at(base, protocol, &[]))
                .await
                .expect("the upgrade is accepted");
        assert_eq!(response.headers()["sec-websocket-protocol"], protocol);
        Self { socket }
    }

    /// Opened and initialised (`connection_ack` received).
    async fn ready(app: &TestApp) -> Self {
        Self::ready_at(&app.base).await
    }

    async fn ready_at(base: &str) -> Self {
        let mut ws = Self::open_at(base, "graphql-transport-ws").await;
        ws.send(json!({ "type": "connection_init" })).await;
        assert_eq!(ws.next().await["type"], "connection_ack");
        ws
    }

    async fn send(&mut self, message: Value) {
        self.socket
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("sent");
    }

    async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next JSON message (pings answered on the way), within 10 s.
    async fn next(&mut self) -> Value {
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), self.socket.next())
                .await
                .expect("a message within 10 s")
                .expect("the connection is open")
                .expect("a frame");
            match m {
                Message::Text(t) => return serde_json::from_str(&t).expect("JSON"),
                Message::Close(frame) => panic!("closed: {frame:?}"),
                _ => continue,
            }
        }
    }

    /// The next `next` payload of subscription `id` (skipping `ka` and others).
    async fn change(&mut self, id: &str) -> Value {
        loop {
            let m = self.next().await;
            if m["id"] == id && (m["type"] == "next" || m["type"] == "data") {
                return m["payload"].clone();
            }
            assert!(m["id"] != id || m["type"] != "complete", "{m}");
        }
    }

    /// Waits for subscription `id`'s answer, which must be an error with `code` whose
    /// message names `bound`.
    async fn refused(&mut self, id: &str, code: &str, bound: &str) {
        let m = loop {
            let m = self.next().await;
            if m["id"] == id {
                break m;
            }
        };
        let e = &m["payload"]["errors"][0];
        assert_eq!(e["extensions"]["code"], code, "{m}");
        assert!(e["message"].as_str().unwrap().contains(bound), "{m}");
    }

    /// The close frame (code, reason) the server ends with, within `limit`.
    async fn closed(&mut self, limit: Duration) -> (u16, String) {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let next = tokio::time::timeout_at(deadline, self.socket.next())
                .await
                .expect("closed in time");
            match next {
                Some(Ok(Message::Close(Some(f)))) => {
                    return (u16::from(f.code), f.reason.to_string());
                }
                Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return (0, e.to_string()),
            }
        }
    }
}

async fn created(app: &TestApp, name: &str, category: &str) -> String {
    app.create(name, "3.00", category, 5).await
}

#[tokio::test]
async fn a_subscriber_sees_created_updated_and_deleted_made_through_another_instance() {
    each_backend(|b| async move {
        let a = spawn_app(&b).await;
        // On Redis the change crosses instances; in process, one instance is all there is.
        let other = match b {
            Backend::Embedded => None,
            _ => Some(spawn_sibling(&a).await),
        };
        let watcher = other.as_ref().unwrap_or(&a);
        let mut ws = Ws::ready(watcher).await;
        ws.subscribe("all", CHANGES, json!({})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        let id = created(&a, "Kettle", "Kitchen").await;
        let c = ws.change("all").await;
        let change = &c["data"]["productChanged"];
        assert_eq!(change["kind"], "CREATED", "{c}");
        assert_eq!(
            (change["id"].as_str(), change["version"].as_i64()),
            (Some(id.as_str()), Some(1))
        );
        assert_eq!(change["product"]["name"], "Kettle");
        // Cached on the watcher's side: the change must not be told before it is gone.
        watcher.product(&id).await.ok();
        assert_eq!(watcher.product(&id).await.sql(), 0);
        // The subscriber reacts by reading, at once, while the mutation may still be
        // returning: it sees the new value (a change told before its invalidation was
        // delivered would let it read the cached old one).
        let reacting = async {
            let c = ws.change("all").await;
            let read = watcher.product(&id).await;
            (c, read)
        };
        let (_, (c, read)) = tokio::join!(a.update(&id, json!({ "name": "Tea kettle" })), reacting);
        let change = &c["data"]["productChanged"];
        assert_eq!(
            (change["kind"].as_str(), change["version"].as_i64()),
            (Some("UPDATED"), Some(2))
        );
        assert_eq!(
            change["product"]["name"], "Tea kettle",
            "the new name, through another instance"
        );
        assert_eq!(read.ok()["product"]["name"], "Tea kettle", "{}", read.body);
        a.admin(
            "mutation($id: ID!) { deleteProduct(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await
        .ok();
        let c = ws.change("all").await;
        let change = &c["data"]["productChanged"];
        assert_eq!(
            (change["kind"].as_str(), change["version"].as_i64()),
            (Some("DELETED"), Some(3))
        );
        assert!(change["product"].is_null(), "{c}");
    })
    .await;
}

#[tokio::test]
async fn each_change_is_read_with_fresh_loaders_and_a_subscription_by_id_sees_only_its_product() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let mut ws = Ws::ready(&app).await;
        ws.subscribe("all", CHANGES, json!({})).await;
        let first = created(&app, "Cup", "Crockery").await;
        ws.subscribe("one", CHANGES, json!({ "id": first })).await;
        let c = ws.change("all").await;
        assert_eq!(
            c["data"]["productChanged"]["product"]["category"]["productCount"], 1,
            "{c}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        created(&app, "Saucer", "Crockery").await;
        // A connection-long loader cache would still say 1 here.
        let c = ws.change("all").await;
        assert_eq!(c["data"]["productChanged"]["product"]["name"], "Saucer");
        assert_eq!(
            c["data"]["productChanged"]["product"]["category"]["productCount"], 2,
            "{c}"
        );
        app.update(&first, json!({ "price": "4.00" })).await.ok();
        let c = ws.change("one").await;
        assert_eq!(c["data"]["productChanged"]["id"], first.as_str());
        assert_eq!(c["data"]["productChanged"]["version"], 2, "{c}");
    })
    .await;
}

#[tokio::test]
async fn the_legacy_graphql_ws_protocol_is_served_too() {
    let app = spawn_app(&Backend::Embedded).await;
    let mut ws = Ws::open(&app, "graphql-ws").await;
    ws.send(json!({ "type": "connection_init" })).await;
    assert_eq!(ws.next().await["type"], "connection_ack");
    ws.send(json!({ "id": "1", "type": "start", "payload": { "query": CHANGES } }))
        .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    created(&app, "Spoon", "Cutlery").await;
    let c = ws.change("1").await;
    assert_eq!(c["data"]["productChanged"]["kind"], "CREATED", "{c}");
}

#[tokio::test]
async fn queries_mutations_and_oversized_documents_are_refused_over_the_socket() {
    let app = spawn_app_with(&Backend::Embedded, &[("QUERY_MAX_DEPTH", "4")]).await;
    let mut ws = Ws::ready(&app).await;
    let nested = format!(
        "subscription {{ productChanged {}{} }}",
        "{ product ".repeat(200),
        "}".repeat(200)
    );
    let bomb = "subscription { productChanged { ...A } } fragment A on ProductChange { id ...B ...B ...B ...B ...B ...B ...B ...B ...B ...B } fragment B on ProductChange { ...C ...C ...C ...C ...C ...C ...C ...C ...C ...C } fragment C on ProductChange { ...D ...D ...D ...D ...D ...D ...D ...D ...D ...D } fragment D on ProductChange { ...E ...E ...E ...E ...E ...E ...E ...E ...E ...E } fragment E on ProductChange { kind id version kind id version kind id version kind }";
    let two = "subscription { a: productChanged { id } b: productChanged { id } }";
    let spread = "subscription { ...F } fragment F on Subscription { a: productChanged { id } b: productChanged { id } }";
    let cases = [
        ("{ __typename }", "BAD_REQUEST", "only subscriptions"),
        (two, "GRAPHQL_VALIDATION_FAILED", "exactly one root field"),
        (
            spread,
            "GRAPHQL_VALIDATION_FAILED",
            "exactly one root field",
        ),
        (
            "mutation { clearCache { cleared } }",
            "BAD_REQUEST",
            "only subscriptions",
        ),
        (nested.as_str(), "GRAPHQL_VALIDATION_FAILED", "nest"),
        (bomb, "GRAPHQL_VALIDATION_FAILED", "fields"),
        (
            "subscription { productChanged { product { category { products { nodes { name } } } } } }",
            "GRAPHQL_VALIDATION_FAILED",
            "too deep",
        ),
    ];
    for (i, (query, code, says)) in cases.iter().enumerate() {
        let id = i.to_string();
        ws.subscribe(&id, query, json!({})).await;
        let m = ws.next().await;
        assert_eq!(m["id"], id.as_str(), "{m}");
        let e = &m["payload"]["errors"][0];
        assert_eq!(e["extensions"]["code"], *code, "{query}: {m}");
        assert!(
            e["message"].as_str().unwrap().to_lowercase().contains(says),
            "{query}: {m}"
        );
        let done = ws.next().await;
        assert_eq!(done["type"], "complete", "{done}");
    }
}

#[tokio::test]
async fn a_message_larger_than_the_body_limit_closes_the_connection() {
    let app = spawn_app_with(&Backend::Embedded, &[("BODY_LIMIT_BYTES", "4096")]).await;
    let mut ws = Ws::ready(&app).await;
    let padding = " ".repeat(8_000);
    ws.subscribe(
        "big",
        &format!("subscription {{ productChanged {{ id }} }}{padding}"),
        json!({}),
    )
    .await;
    let (code, reason) = ws.closed(Duration::from_secs(5)).await;
    assert!(matches!(code, 1009 | 0 | 1005 | 1006), "{code} {reason}");
    // Within the limit, the same connection kind is fine.
    let mut ws = Ws::ready(&app).await;
    ws.subscribe("small", "subscription { productChanged { id } }", json!({}))
        .await;
    created(&app, "Fork", "Cutlery").await;
    ws.change("small").await;
}

#[tokio::test]
async fn connection_init_must_come_in_time() {
    let app = spawn_app_with(
        &Backend::Embedded,
        &[("SUBSCRIPTION_INIT_TIMEOUT_MS", "200")],
    )
    .await;
    let mut ws = Ws::open(&app, "graphql-transport-ws").await;
    let (code, reason) = ws.closed(Duration::from_secs(3)).await;
    assert_eq!(
        (code, reason.as_str()),
        (4408, "Connection initialisation timeout")
    );
}

#[tokio::test]
async fn connections_and_subscriptions_are_bounded() {
    let app = spawn_app_with(
        &Backend::Embedded,
        &[
            ("SUBSCRIPTION_MAX_CONNECTIONS", "2"),
            ("SUBSCRIPTION_MAX_PER_CONNECTION", "2"),
            ("SUBSCRIPTION_MAX_UNFILTERED", "1"),
        ],
    )
    .await;
    let id = created(&app, "Plate", "Crockery").await;
    let mut first = Ws::ready(&app).await;
    let mut second = Ws::ready(&app).await;
    assert_eq!(refused_status(&app, &[]).await, 503, "a third connection");
    first.subscribe("a", CHANGES, json!({})).await;
    // The only unfiltered subscription this instance allows is taken: an id works.
    second.subscribe("b", CHANGES, json!({})).await;
    let m = second.next().await;
    assert_eq!(
        m["payload"]["errors"][0]["extensions"]["code"], "OVERLOADED",
        "{m}"
    );
    second.subscribe("c", CHANGES, json!({ "id": id })).await;
    second.subscribe("d", CHANGES, json!({ "id": id })).await;
    second.subscribe("e", CHANGES, json!({ "id": id })).await;
    second
        .refused("e", "BAD_REQUEST", "SUBSCRIPTION_MAX_PER_CONNECTION")
        .await;
    // The subscriptions within the bounds work.
    app.update(&id, json!({ "stockQuantity": 9 })).await.ok();
    first.change("a").await;
    second.change("c").await;
    // A closed connection frees its place.
    drop(first);
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ws::ready(&app).await;
}

#[tokio::test]
async fn one_connection_holds_only_its_share_of_subscriptions_without_an_id() {
    let app = spawn_app_with(
        &Backend::Embedded,
        &[
            ("SUBSCRIPTION_MAX_UNFILTERED", "10"),
            ("SUBSCRIPTION_MAX_UNFILTERED_PER_CONNECTION", "2"),
        ],
    )
    .await;
    let id = created(&app, "Plate", "Crockery").await;
    let mut greedy = Ws::ready(&app).await;
    for sub in ["a", "b", "c"] {
        greedy.subscribe(sub, CHANGES, json!({})).await;
    }
    // Subscriptions start concurrently, so any one of the three may be the refused one.
    let m = greedy.next().await;
    let e = &m["payload"]["errors"][0];
    assert_eq!(e["extensions"]["code"], "BAD_REQUEST", "{m}");
    let message = e["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("SUBSCRIPTION_MAX_UNFILTERED_PER_CONNECTION"),
        "{m}"
    );
    let live = if m["id"] == "a" { "b" } else { "a" };
    // Another connection still gets one: the instance's share was not taken.
    let mut other = Ws::ready(&app).await;
    other.subscribe("x", CHANGES, json!({})).await;
    told_eventually(&app, &id, &mut greedy, live).await;
    told_eventually(&app, &id, &mut other, "x").await;
}

/// A subscription starts listening a moment after its `subscribe` message is read, and
/// nothing acknowledges it: change the product until `sub` has been told, within 10 s.
async fn told_eventually(app: &TestApp, id: &str, ws: &mut Ws, sub: &str) {
    for stock in 1..=20 {
        app.update(id, json!({ "stockQuantity": stock })).await.ok();
        if tokio::time::timeout(Duration::from_millis(500), ws.change(sub))
            .await
            .is_ok()
        {
            return;
        }
    }
    panic!("subscription {sub} was never told of a change");
}

#[tokio::test]
async fn a_foreign_origin_is_refused_and_this_one_accepted() {
    let app = spawn_app_with(
        &Backend::Embedded,
        &[("CORS_ALLOW_ORIGINS", "https://shop.example")],
    )
    .await;
    assert_eq!(
        refused_status(&app, &[("origin", "https://evil.example")]).await,
        403
    );
    assert_eq!(
        refused_status(&app, &[("origin", "https://shop.example")]).await,
        101
    );
    let own = app.base.clone();
    assert_eq!(refused_status(&app, &[("origin", &own)]).await, 101);
    assert_eq!(
        refused_status(&app, &[("sec-websocket-protocol", "chat")]).await,
        400
    );
}

#[tokio::test]
async fn the_server_pings_and_closes_a_silent_connection() {
    let app = spawn_app_with(&Backend::Embedded, &[("SUBSCRIPTION_KEEPALIVE_MS", "150")]).await;
    let mut ws = Ws::ready(&app).await;
    // Reading answers pings (tungstenite sends the pongs): the connection stays.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(700);
    while let Ok(Some(Ok(m))) = tokio::time::timeout_at(until, ws.socket.next()).await {
        if matches!(m, Message::Ping(_)) {
            pings += 1;
        }
    }
    assert!(pings >= 3, "{pings} pings");
    // Not reading at all: no pongs, closed (1001) after two intervals.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (code, reason) = ws.closed(Duration::from_secs(3)).await;
    assert_eq!(code, 1001, "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_does_not_read_is_dropped_with_a_close_code() {
    let app = spawn_app_with(
        &Backend::Embedded,
        &[("SUBSCRIPTION_SEND_TIMEOUT_MS", "300")],
    )
    .await;
    let mut ws = Ws::ready(&app).await;
    ws.subscribe(
        "all",
        "subscription { productChanged { kind id version } }",
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Far more changes than socket buffers hold (about 2,000 fill them here), while the
    // client reads nothing, at the pace the relay keeps up with (it would report a loss
    // otherwise).
    let feed = &app.catalog.cache().feed;
    for n in 0..50_000u32 {
        feed.publish(format!("D:{}:2", 1_000_000 + n))
            .await
            .unwrap();
        if n % 100 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    // It reads now: what was sent, then the close.
    let mut read = 0;
    let (code, reason) = loop {
        let next = tokio::time::timeout(Duration::from_secs(20), ws.socket.next()).await;
        match next.expect("closed in time") {
            Some(Ok(Message::Close(Some(f)))) => break (u16::from(f.code), f.reason.to_string()),
            Some(Ok(Message::Text(t))) => {
                read += 1;
                assert!(!t.contains("errors"), "{t}");
                // A `complete` would end it for good on the client: only the close may.
                assert!(!t.contains("complete"), "{t}");
            }
            Some(Ok(_)) => {}
            other => panic!("after {read} messages: {other:?}"),
        }
    };
    eprintln!("slow consumer: read {read} changes before the close");
    assert_eq!(code, 1013, "{reason}");
    assert!(reason.starts_with("too slow"), "{reason}");
}

#[tokio::test]
async fn a_lost_feed_ends_subscriptions_with_an_error_never_silence() {
    let Some(b) = redis_backend("a_lost_feed_ends_subscriptions_with_an_error_never_silence")
    else {
        return;
    };
    let mut redis = OwnRedis::start(OwnRedis::free_port()).await;
    let url = redis.url();
    let app = spawn_app_with(&b, &[("REDIS_URL", url.as_str())]).await;
    app.catalog
        .cache()
        .feed
        .wait_up(Duration::from_secs(5))
        .await;
    let mut ws = Ws::ready(&app).await;
    ws.subscribe("all", CHANGES, json!({})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    created(&app, "Bowl", "Crockery").await;
    ws.change("all").await;
    redis.stop().await;
    let m = ws.change("all").await;
    assert_eq!(
        m["errors"][0]["extensions"]["code"], "LIVE_UPDATES_UNAVAILABLE",
        "{m}"
    );
    assert_eq!(ws.next().await["type"], "complete");
    // While the feed is down a new subscription is refused at once.
    ws.subscribe("again", CHANGES, json!({})).await;
    let m = ws.change("again").await;
    assert_eq!(
        m["errors"][0]["extensions"]["code"], "LIVE_UPDATES_UNAVAILABLE",
        "{m}"
    );
}

#[tokio::test]
async fn a_server_that_shuts_down_closes_its_sockets_with_1001() {
    let settings = spawn_app(&Backend::Embedded).await.settings.clone();
    let mut settings = settings;
    settings.insert("BIND_ADDR".into(), "127.0.0.1:0".into());
    let config = larder::config::Config::from_lookup(|k| settings.get(k).cloned()).unwrap();
    let app = larder::app::Application::build(config).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let mut ws = Ws::ready_at(&base).await;
    ws.subscribe("all", CHANGES, json!({})).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    let (code, reason) = ws.closed(Duration::from_secs(5)).await;
    assert_eq!(
        (code, reason.as_str()),
        (1001, "the server is shutting down")
    );
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn each_operation_logs_under_a_request_id_of_its_own_and_errors_are_masked() {
    let app = spawn_app(&Backend::Embedded).await;
    let id = created(&app, "Teapot", "Crockery").await;
    let mut ws = Ws::ready(&app).await;
    ws.subscribe("one", CHANGES, json!({ "id": id })).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The change's product cannot be read: an internal error, inside the operation.
    app.break_products_table().await;
    app.catalog
        .cache()
        .feed
        .publish(format!("U:{id}:9"))
        .await
        .unwrap();
    let m = ws.change("one").await;
    let e = &m["errors"][0];
    assert_eq!(e["extensions"]["code"], "INTERNAL_SERVER_ERROR", "{m}");
    assert!(
        !e["message"].as_str().unwrap().contains("products"),
        "masked: {m}"
    );
    let request_id = e["extensions"]["requestId"]
        .as_str()
        .expect("a request id")
        .to_string();
    let lines = crate::logs::lines_with("internal error");
    assert!(
        lines
            .iter()
            .any(|l| crate::logs::request_id_of(l).as_deref() == Some(request_id.as_str())),
        "a log line under {request_id}"
    );
}
