//! Requests a hostile stranger sends, each against real backends, each checking the
//! bound that holds it: no cache key a read creates lives without a TTL or names a
//! category that does not exist; new keys stay within the fill budget; a request's SQL
//! is bounded and priced; work stops with its request; `cacheStats` asks Redis at most
//! once a second; no panic reaches a client as a dropped connection; slow connections
//! beyond the cap do not keep a client out; metrics labels, `/ready`, persisted query
//! registrations and CORS are bounded or safe.
use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::fixtures::OwnRedis;
use crate::harness::{
    Backend, TestApp, backends, each_backend, redis_backend, spawn_app, spawn_app_with,
    spawn_sibling,
};

/// Every key under this app's prefix, with its TTL in ms (-1: none).
async fn keys_with_ttl(app: &TestApp) -> HashMap<String, i64> {
    use fred::prelude::*;
    let client = app.catalog.cache().redis_client().expect("a Redis backend");
    let prefix = &app.settings["CACHE_PREFIX"];
    let pattern = format!("{{{prefix}}}*");
    let mut keys = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let (next, page): (String, Vec<String>) = client
            .scan_page(cursor.as_str(), pattern.as_str(), Some(1000), None)
            .await
            .expect("SCAN");
        keys.extend(page);
        if next == "0" {
            break;
        }
        cursor = next;
    }
    let mut out = HashMap::new();
    for k in keys {
        let ttl: i64 = client.pttl(k.as_str()).await.expect("PTTL");
        out.insert(k, ttl);
    }
    out
}

/// Keys that may live without a TTL: one epoch copy and one history counter per group,
/// fixed in number, written by the server's own upkeep.
fn fixed_key(key: &str) -> bool {
    key.ends_with("}epoch") || key.ends_with("}hist")
}

/// A query of `n` aliased pages, each a search no one made before (`<tag><i>`), asking
/// only for the count.
fn search_pages(n: usize, tag: &str) -> String {
    let parts: Vec<String> = (0..n)
        .map(|i| {
            format!(r#"a{i}: products(first: 0, filter: {{search: "{tag}{i}"}}) {{ totalCount }}"#)
        })
        .collect();
    format!("{{ {} }}", parts.join(" "))
}

async fn statements(app: &TestApp) -> u64 {
    app.catalog.sql_total()
}

#[tokio::test]
async fn reads_create_no_key_without_a_ttl_and_none_for_categories_that_do_not_exist() {
    let Some(b) = redis_backend("reads_create_no_key_without_a_ttl") else {
        return;
    };
    // Priced as they are, 200 list fields are refused outright; allow them here, to see
    // what they would leave behind.
    let app = spawn_app_with(
        &b,
        &[
            ("QUERY_MAX_COMPLEXITY", "100000"),
            ("QUERY_MAX_SQL_STATEMENTS", "1000"),
        ],
    )
    .await;
    let other = spawn_sibling(&app).await;
    app.create("Kettle", "20", "Kitchen", 3).await;
    // 200 aliases, each a category id that does not exist (the next one, 2, among them).
    let aliases: Vec<String> = (0..200)
        .map(|i| {
            let id = if i == 0 { 2 } else { 1_000 + i * 7919 };
            format!(r#"a{i}: products(first: 1, filter: {{categoryId: "{id}", inStock: true}}) {{ totalCount }}"#)
        })
        .collect();
    let query = format!("{{ {} }}", aliases.join(" "));
    let r = app.gql(&query, json!({})).await;
    let data = r.ok();
    assert!(
        (0..200).all(|i| data[format!("a{i}")]["totalCount"] == 0),
        "{data}"
    );
    let keys = keys_with_ttl(&app).await;
    let forever: Vec<&String> = keys
        .iter()
        .filter(|(k, ttl)| **ttl < 0 && !fixed_key(k))
        .map(|(k, _)| k)
        .collect();
    assert!(forever.is_empty(), "keys without a TTL: {forever:?}");
    // Counters are `n:<scope>:<field>`: `all`, `categories` or `c<id>`; category 1 exists.
    let made_up: Vec<&String> = keys
        .keys()
        .filter_map(|k| Some((k, k.split_once("}n:c")?.1)))
        .filter(|(_, rest)| {
            rest.starts_with(|c: char| c.is_ascii_digit()) && !rest.starts_with("1:")
        })
        .map(|(k, _)| k)
        .collect();
    assert!(
        made_up.is_empty(),
        "counters of categories that do not exist: {made_up:?}"
    );
    // The empty answer is not kept past the category's creation, on either instance.
    let page = r#"{ products(filter: {categoryId: "2"}) { totalCount nodes { name } } }"#;
    assert_eq!(
        other.gql(page, json!({})).await.ok()["products"]["totalCount"],
        0
    );
    app.create("Teapot", "9", "Tea", 1).await;
    for instance in [&app, &other] {
        let r = instance.gql(page, json!({})).await;
        assert_eq!(
            r.ok()["products"]["nodes"][0]["name"],
            "Teapot",
            "{}",
            r.body
        );
    }
}

#[tokio::test]
async fn distinct_filters_create_new_keys_only_within_the_fill_budget() {
    let Some(b) = redis_backend("distinct_filters_create_new_keys_only_within_the_fill_budget")
    else {
        return;
    };
    let budget = 20u64;
    let app = spawn_app_with(
        &b,
        &[
            ("CACHE_FILL_BUDGET_PER_SEC", "20"),
            ("QUERY_MAX_SQL_STATEMENTS", "200"),
            ("QUERY_MAX_COMPLEXITY", "100000"),
        ],
    )
    .await;
    app.create("Kettle", "20", "Kitchen", 3).await;
    let before = keys_with_ttl(&app).await.len() as u64;
    let started = Instant::now();
    // 100,000 distinct filters and ids: 1,000 requests of 100 aliases, 8 clients at once.
    let per_request = 100;
    let requests = 1_000;
    let app = Arc::new(app);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (app, next) = (app.clone(), next.clone());
            tokio::spawn(async move {
                loop {
                    let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= requests {
                        return;
                    }
                    // Every one distinct: 10 pages (a search or a price range each,
                    // 10,000 in all) and 90 product ids that do not exist (an "absent"
                    // marker each, 90,000; read in one statement, which keeps this short).
                    let mut aliases: Vec<String> = (0..10)
                        .map(|i| {
                            let k = n * 10 + i;
                            match k % 2 {
                                0 => format!(r#"a{i}: products(first: 0, filter: {{search: "s{k}"}}) {{ totalCount }}"#),
                                _ => format!(r#"a{i}: products(first: 0, filter: {{minPrice: "{}.{:02}"}}) {{ totalCount }}"#, k / 100, k % 100),
                            }
                        })
                        .collect();
                    let ids: Vec<String> = (0..per_request - 10)
                        .map(|i| format!(r#""{}""#, 1_000_000 + n * per_request + i))
                        .collect();
                    aliases.push(format!("ids: productsByIds(ids: [{}]) {{ id }}", ids.join(",")));
                    let r = app.gql(&format!("{{ {} }}", aliases.join(" ")), json!({})).await;
                    assert!(r.body["errors"].is_null(), "{}", r.body);
                }
            })
        })
        .collect();
    for c in clients {
        c.await.unwrap();
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = keys_with_ttl(&app).await.len() as u64;
    let added = after.saturating_sub(before);
    // One second's burst, then `budget` a second (the catalog's own keys are a handful).
    let bound = budget + (budget as f64 * seconds).ceil() as u64 + 10;
    eprintln!(
        "fill budget: 100000 distinct filters in {seconds:.1} s added {added} keys (bound {bound})"
    );
    assert!(added <= bound, "{added} new keys > {bound}");
    assert!(
        added >= budget / 2,
        "pages are still stored within the budget"
    );
}

#[tokio::test]
async fn one_request_runs_at_most_its_sql_statements_and_list_fields_are_priced() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        app.create("Kettle", "20", "Kitchen", 3).await;
        let aliases = search_pages;
        // 700 list fields: refused by their price before anything runs.
        let before = statements(&app).await;
        let r = app.gql(&aliases(700, "x"), json!({})).await;
        assert_eq!(r.code(), Some("GRAPHQL_VALIDATION_FAILED"), "{}", r.body);
        assert_eq!(statements(&app).await, before);
        // Within the complexity bound, past the statement bound: a clear error, and no
        // more than the bound ran.
        let loose = spawn_app_with(&b, &[("QUERY_MAX_COMPLEXITY", "1000000")]).await;
        let before = statements(&loose).await;
        let r = loose.gql(&aliases(700, "y"), json!({})).await;
        assert_eq!(r.code(), Some("QUERY_TOO_EXPENSIVE"), "{}", r.body);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let ran = statements(&loose).await - before;
        assert!(ran <= 50, "{ran} statements for one request");
        // 25 pages (50 statements) is within both bounds.
        let r = loose.gql(&aliases(25, "z"), json!({})).await;
        r.ok();
    })
    .await;
}

#[tokio::test]
async fn read_work_stops_when_its_request_times_out() {
    each_backend(|b| async move {
        let app = spawn_app_with(
            &b,
            &[
                ("REQUEST_TIMEOUT_MS", "300"),
                ("QUERY_MAX_COMPLEXITY", "100000"),
                ("QUERY_MAX_SQL_STATEMENTS", "200"),
            ],
        )
        .await;
        app.create("Kettle", "20", "Kitchen", 3).await;
        app.catalog
            .hooks()
            .set_read_delay(Duration::from_millis(100));
        let before = statements(&app).await;
        let r = app.gql(&search_pages(60, "t"), json!({})).await;
        assert_eq!(r.code(), Some("TIMEOUT"), "{}", r.body);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let ran = statements(&app).await - before;
        // 4 pages at once, 100 ms a statement: about 12 start before the timeout; the
        // other 48 never run.
        assert!(
            ran <= 20,
            "{ran} statements ran for a request that timed out"
        );
        app.catalog.hooks().set_read_delay(Duration::ZERO);
        app.product("1").await.ok();
    })
    .await;
}

#[tokio::test]
async fn cache_stats_asks_redis_at_most_once_a_second_whatever_the_aliases() {
    if redis_backend("cache_stats_asks_redis_at_most_once_a_second").is_none() {
        return;
    }
    let mut redis = OwnRedis::start(OwnRedis::free_port()).await;
    let Backend::PostgresRedis { pg, .. } = backends().pop().unwrap() else {
        unreachable!()
    };
    let b = Backend::PostgresRedis {
        pg,
        redis: redis.url(),
    };
    let app = spawn_app(&b).await;
    let info_calls = || {
        crate::fixtures::cli(redis.port, &["info", "commandstats"])
            .lines()
            .find_map(|l| l.strip_prefix("cmdstat_info:calls="))
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let aliases: Vec<String> = (0..1000)
        .map(|i| format!("a{i}: cacheStats {{ hitRate redis {{ usedMemoryBytes }} }}"))
        .collect();
    let query = format!("{{ {} }}", aliases.join(" "));
    let before = info_calls();
    let r = app.gql(&query, json!({})).await;
    assert!(r.ok()["a999"]["redis"]["usedMemoryBytes"].as_u64().unwrap() > 0);
    let r = app.gql(&query, json!({})).await;
    r.ok();
    // (The history check asks INFO once a second too.)
    let calls = info_calls() - before;
    assert!(calls <= 4, "{calls} INFO calls for 2,000 aliases");
    redis.stop().await;
}

#[tokio::test]
async fn a_panic_answers_with_a_code_and_the_server_keeps_serving() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Kettle", "20", "Kitchen", 3).await;
        app.catalog.hooks().set_panic_on_read(true);
        // Inside a loader batch (its own task): an error for that field, with the request
        // id, and the rest of the answer.
        let r = app
            .gql(
                r#"{ p: product(id: "4242") { id } t: __typename }"#,
                json!({}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.code(), Some("INTERNAL_SERVER_ERROR"), "{}", r.body);
        assert!(r.body["errors"][0]["extensions"]["requestId"].is_string());
        assert_eq!(r.data()["t"], "Query");
        // In a resolver's own future: the whole request answers 500 with a code.
        let resp = app
            .client
            .post(format!("{}/graphql", app.base))
            .header("x-request-id", "panicking-request")
            .json(&json!({ "query": "{ categories { id } }" }))
            .send()
            .await
            .expect("an answer, not a dropped connection");
        assert_eq!(resp.status(), 500);
        assert_eq!(resp.headers()["x-request-id"], "panicking-request");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["errors"][0]["extensions"]["code"],
            "INTERNAL_SERVER_ERROR"
        );
        let logged = crate::logs::lines_with("a request panicked");
        assert!(
            logged
                .iter()
                .any(|l| crate::logs::request_id_of(l).as_deref() == Some("panicking-request")),
            "the panic is logged under the request id: {logged:?}"
        );
        app.catalog.hooks().set_panic_on_read(false);
        assert_eq!(app.product(&id).await.ok()["product"]["name"], "Kettle");
    })
    .await;
}

/// Opens `n` connections that send half a request header, then nothing.
async fn slow_clients(base: &str, n: usize) -> Vec<tokio::net::TcpStream> {
    let addr = base.trim_start_matches("http://").to_string();
    let mut out = Vec::new();
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(&addr)
            .await
            .expect("connects");
        s.write_all(b"GET /graphql?query=%7B__typename%7D HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        out.push(s);
    }
    out
}

#[tokio::test]
async fn slow_connections_beyond_the_cap_neither_stay_nor_keep_a_client_out() {
    let app = spawn_app_with(
        &Backend::Embedded,
        &[
            ("MAX_CONNECTIONS", "40"),
            ("HTTP_HEADER_TIMEOUT_MS", "1500"),
        ],
    )
    .await;
    // A client that opens a new connection for every request.
    let fresh = || {
        reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap()
    };
    let one = |client: reqwest::Client, base: String| async move {
        let started = Instant::now();
        let r = client
            .get(format!("{base}/graphql?query=%7B__typename%7D"))
            .header("accept", "application/json")
            .send()
            .await
            .expect("an answer");
        assert_eq!(r.status(), 200);
        started.elapsed()
    };
    let mut alone = Vec::new();
    for _ in 0..20 {
        alone.push(one(fresh(), app.base.clone()).await);
    }
    alone.sort();
    // Three times the cap in slow connections, opened while the client keeps asking.
    let mut slow = slow_clients(&app.base, 60).await;
    let mut crowded = Vec::new();
    for i in 0..20 {
        crowded.push(one(fresh(), app.base.clone()).await);
        if i % 5 == 0 {
            slow.extend(slow_clients(&app.base, 20).await);
        }
    }
    crowded.sort();
    let p95 = |v: &[Duration]| v[v.len() * 95 / 100 - 1];
    eprintln!(
        "alone p95 {:?}, with slow clients p95 {:?}",
        p95(&alone),
        p95(&crowded)
    );
    assert!(
        p95(&crowded) <= p95(&alone) * 3 + Duration::from_millis(50),
        "{crowded:?} vs {alone:?}"
    );
    // Of the 120 slow connections, the server keeps at most its cap open: the others
    // were closed (the oldest first) to admit the client's.
    let mut open = 0;
    for s in &mut slow {
        let mut buf = [0u8; 64];
        let waited = tokio::time::timeout(Duration::from_millis(20), s.read(&mut buf)).await;
        if waited.is_err() {
            open += 1;
        }
    }
    assert!(
        open <= 40,
        "{open} of {} slow connections still open, cap 40",
        slow.len()
    );
    assert!(
        open >= 10,
        "only {open} open: the cap closes only what it must"
    );
    // A connection that never finishes its header is closed after the header timeout.
    let mut late = slow_clients(&app.base, 1).await.pop().unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), late.read(&mut buf))
        .await
        .expect("closed within 5 s")
        .unwrap_or(0);
    assert!(
        started.elapsed() >= Duration::from_millis(1200),
        "closed after {:?}",
        started.elapsed()
    );
    let _ = n;
    drop(slow);
}

#[tokio::test]
async fn metrics_label_only_operations_the_server_knows() {
    let app = spawn_app_with(
        &Backend::Embedded,
        &[("METRICS_OPERATION_NAMES", "KnownToOps")],
    )
    .await;
    let named = |name: String| {
        let body =
            json!({ "query": format!("query {name} {{ __typename }}"), "operationName": name });
        app.send(app.client.post(format!("{}/graphql", app.base)).json(&body))
    };
    for i in 0..150 {
        named(format!("Stranger{i}")).await.ok();
    }
    named("KnownToOps".into()).await.ok();
    named("CacheStats".into()).await.ok();
    let metrics = app.metrics_text().await;
    assert!(
        !metrics.contains("Stranger"),
        "a client's name became a label"
    );
    assert!(metrics.contains(r#"operation="KnownToOps""#));
    assert!(
        metrics.contains(r#"operation="CacheStats""#),
        "the dashboard's own"
    );
    assert!(metrics.contains(r#"operation="other""#));
}

#[tokio::test]
async fn ready_asks_the_database_at_most_once_a_second() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let pings = |text: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix("ready_database_pings_total "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0.0)
        };
        let metrics = || app.metrics_text();
        // The counter is process-wide (other tests' apps ping too): one app's burst of
        // 300 probes within a second may add at most a few.
        let before = pings(&metrics().await);
        let probes = (0..300).map(|_| app.get_json("/ready"));
        let answers = futures::future::join_all(probes).await;
        assert!(answers.iter().all(|a| a["status"] == "ready"));
        let added = pings(&metrics().await) - before;
        assert!(added < 30.0, "{added} database pings for 300 probes");
    })
    .await;
}

#[tokio::test]
async fn persisted_query_registrations_are_limited_per_client_address() {
    let hash = crate::persisted::sha256;
    for trusted in [false, true] {
        let mut settings = vec![("PERSISTED_QUERY_REGISTRATIONS_PER_MINUTE", "3")];
        if trusted {
            settings.push(("TRUSTED_PROXIES", "127.0.0.1"));
        }
        let app = spawn_app_with(&Backend::Embedded, &settings).await;
        let mut outcomes = Vec::new();
        for i in 0..6 {
            let q = format!("{{ a{i}{}: __typename }}", u8::from(trusted));
            // Behind a trusted proxy every request speaks for another client.
            let body = json!({ "query": q, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": hash(&q) } } });
            let r = app
                .send(
                    app.client
                        .post(format!("{}/graphql", app.base))
                        .header("x-forwarded-for", format!("203.0.113.{i}"))
                        .json(&body),
                )
                .await;
            r.ok();
            outcomes.push(r.body["extensions"]["persistedQuery"]["code"].clone());
        }
        let limited = outcomes
            .iter()
            .filter(|c| *c == "PERSISTED_QUERY_RATE_LIMITED")
            .count();
        assert_eq!(limited, if trusted { 0 } else { 3 }, "{outcomes:?}");
    }
}

#[tokio::test]
async fn cors_accepts_any_origin_when_asked_to() {
    let app = spawn_app_with(&Backend::Embedded, &[("CORS_ALLOW_ORIGINS", "*")]).await;
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.base))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn a_generated_admin_token_is_never_logged() {
    let mut settings: HashMap<String, String> = HashMap::new();
    let db =
        std::env::temp_dir().join(format!("larder-token-{}.db", uuid::Uuid::new_v4().simple()));
    settings.insert(
        "DATABASE_URL".into(),
        format!("sqlite://{}?mode=rwc", db.display()),
    );
    settings.insert("CACHE_BACKEND".into(), "memory".into());
    settings.insert("SEED_DEMO".into(), "false".into());
    settings.insert("BIND_ADDR".into(), "127.0.0.1:0".into());
    settings.insert("RUST_LOG".into(), "warn".into());
    let config = larder::config::Config::from_lookup(|k| settings.get(k).cloned()).unwrap();
    crate::logs::init("warn");
    let app = larder::app::Application::build(config).await.unwrap();
    let token = app.admin_token().to_string();
    let port = app.port();
    let server = tokio::spawn(async move {
        let _ = app.run_until(std::future::pending()).await;
    });
    reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !crate::logs::lines_with("generated a token").is_empty(),
        "the log says a token was generated"
    );
    assert!(
        crate::logs::lines_with(&token).is_empty(),
        "the token is in the log"
    );
    server.abort();
    let _ = std::fs::remove_file(db);
}
