//! Abuse limits, each with the abusive request and one just inside the limit: depth,
//! complexity (aliases count, lists weigh by `first`), directives, recursion, fragment
//! bombs, batches, body size, timeouts; plus error masking, introspection switch,
//! CORS and HTTP cache headers.
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{Backend, TestApp, spawn_app, spawn_app_with};

async fn post_raw(app: &TestApp, query: &str) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("accept", "application/graphql-response+json")
        // The admin token: `cachePerformance` needs it (and nothing here is refused for it).
        .bearer_auth(crate::harness::TOKEN)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.expect("JSON body"))
}

fn message(body: &Value) -> String {
    body["errors"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `{ product(id: "1") { category { products(first: 1) { nodes { category { … } } } } } }`
/// nested until the selection depth is `depth`.
fn deep_query(depth: usize) -> String {
    let cycle = ["category {", "products(first: 1) {", "nodes {"];
    let mut q = String::from("{ product(id: \"1\") {");
    let mut opened = 1;
    while opened < depth - 1 {
        q += cycle[(opened - 1) % 3];
        opened += 1;
    }
    // The innermost selection must be a field that takes no selection.
    q += if opened >= 2 && (opened - 2) % 3 == 1 {
        " totalCount"
    } else {
        " id"
    };
    q + &" }".repeat(opened) + " }"
}

#[tokio::test]
async fn query_depth_has_a_limit() {
    let app = spawn_app_with(&Backend::Embedded, &[("QUERY_MAX_DEPTH", "10")]).await;
    app.create("A", "1", "C", 1).await;
    let (status, body) = post_raw(&app, &deep_query(10)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_raw(&app, &deep_query(11)).await;
    assert_eq!(
        (status, message(&body).as_str()),
        (400, "Query is nested too deep."),
        "{body}"
    );
}

#[tokio::test]
async fn complexity_counts_aliases_and_weighs_lists_by_first() {
    let app = spawn_app_with(&Backend::Embedded, &[("QUERY_MAX_COMPLEXITY", "100")]).await;
    app.create("A", "1", "C", 1).await;
    let aliases = |n: usize| {
        format!(
            "{{ {} }}",
            (0..n)
                .map(|i| format!("a{i}: product(id: \"1\") {{ id }}"))
                .collect::<Vec<_>>()
                .join(" ")
        )
    };
    assert_eq!(post_raw(&app, &aliases(50)).await.0, 200);
    let (status, body) = post_raw(&app, &aliases(51)).await;
    assert_eq!(
        (status, message(&body).as_str()),
        (400, "Query is too complex.")
    );
    // products(first: n) { nodes { id } } costs n * 2 + 1, plus 50 for each of the two
    // SQL statements it may cause: 101 + 2n.
    let app = spawn_app_with(&Backend::Embedded, &[("QUERY_MAX_COMPLEXITY", "200")]).await;
    assert_eq!(
        post_raw(&app, "{ products(first: 49) { nodes { id } } }")
            .await
            .0,
        200
    );
    let (status, body) = post_raw(&app, "{ products(first: 50) { nodes { id } } }").await;
    assert_eq!(
        (status, message(&body).as_str()),
        (400, "Query is too complex.")
    );
    // Ten lists nested (depth 30), each 100 wide: 100^10 overflows a
    // usize; the price saturates instead (no panic in a debug build, no wrap to a small
    // number in a release build).
    let wide = spawn_app_with(&Backend::Embedded, &[("QUERY_MAX_DEPTH", "32")]).await;
    let mut q = String::from("{ products(first: 100) { nodes {");
    for _ in 0..9 {
        q += " category { products(first: 100) { nodes {";
    }
    q += " id";
    q += &" } } }".repeat(9);
    q += " } } }";
    let (status, body) = post_raw(&wide, &q).await;
    assert_eq!(
        (status, message(&body).as_str()),
        (400, "Query is too complex."),
        "{body}"
    );
}

#[tokio::test]
async fn directives_per_field_recursion_and_fragment_bombs_are_refused() {
    let app = spawn_app_with(&Backend::Embedded, &[("QUERY_MAX_DEPTH", "32")]).await;
    app.create("A", "1", "C", 1).await;
    assert_eq!(
        post_raw(
            &app,
            "{ product(id: \"1\") { name @include(if: true) @skip(if: false) } }"
        )
        .await
        .0,
        200
    );
    let (status, _) = post_raw(
        &app,
        "{ product(id: \"1\") { name @include(if: true) @skip(if: false) @include(if: true) } }",
    )
    .await;
    assert_eq!(status, 400);
    // Selection sets may nest 32 deep, not 33.
    let (status, body) = post_raw(&app, &deep_query(32)).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_raw(&app, &deep_query(34)).await;
    assert_eq!(status, 400);
    assert!(message(&body).contains("recursion depth"), "{body}");
    // 30 fragments, each spreading the next twice: 2^30 fields once expanded.
    let mut bomb = String::from("{ ...F0 } ");
    for i in 0..30 {
        bomb += &format!("fragment F{i} on Query {{ ...F{} ...F{} }} ", i + 1, i + 1);
    }
    bomb += "fragment F30 on Query { __typename }";
    let started = Instant::now();
    let (status, body) = post_raw(&app, &bomb).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("expands to more than"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Thousands of nested brackets: a clean error, no stack overflow.
    let nested = format!(
        "{{ productsByIds(ids: {}\"1\"{}) {{ id }} }}",
        "[".repeat(20_000),
        "]".repeat(20_000)
    );
    assert_eq!(post_raw(&app, &nested).await.0, 400);
    assert_eq!(post_raw(&app, "{ categories { name } }").await.0, 200);
}

#[tokio::test]
async fn batches_and_oversized_bodies_get_clear_json_errors() {
    let app = spawn_app(&Backend::Embedded).await;
    let url = format!("{}/graphql", app.base);
    let r = app
        .client
        .post(&url)
        .json(&json!([{ "query": "{ categories { id } }" }, { "query": "{ categories { id } }" }]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(message(&body).contains("batched"), "{body}");
    let big = json!({ "query": format!("{{ categories {{ id }} }} #{}", "x".repeat(70 * 1024)) });
    let r = app.client.post(&url).json(&big).send().await.unwrap();
    assert_eq!(r.status(), 413);
    let body: Value = r.json().await.expect("a 413 is JSON too");
    assert_eq!(body["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn a_request_over_its_time_is_cancelled_with_a_clear_error() {
    let app = spawn_app_with(&Backend::Embedded, &[("REQUEST_TIMEOUT_MS", "300")]).await;
    for i in 0..40 {
        app.create(&format!("P{i}"), "1", &format!("C{}", i % 4), 1)
            .await;
    }
    let started = Instant::now();
    let (status, body) = post_raw(
        &app,
        "{ cachePerformance(scenario: CATEGORY_PAGE, iterations: 200) { speedup } }",
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["extensions"]["code"].as_str()),
        (503, Some("TIMEOUT")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // The cancelled comparison released its one-at-a-time gate: a small one runs now.
    let (status, body) = post_raw(
        &app,
        "{ cachePerformance(scenario: SINGLE_PRODUCT, iterations: 1) { iterations } }",
    )
    .await;
    assert_eq!(
        (status, &body["data"]["cachePerformance"]["iterations"]),
        (200, &json!(1)),
        "{body}"
    );
}

#[tokio::test]
async fn internal_errors_hide_their_cause_and_carry_the_request_id() {
    let app = spawn_app(&Backend::Embedded).await;
    app.create("A", "1", "C", 1).await;
    app.break_products_table().await;
    let r = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("x-request-id", "req-42")
        .json(&json!({ "query": "{ products(first: 5) { totalCount } }" }))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    let err = &body["errors"][0];
    assert_eq!(err["extensions"]["code"], "INTERNAL_SERVER_ERROR", "{body}");
    assert_eq!(err["extensions"]["requestId"], "req-42");
    let text = body["errors"].to_string().to_lowercase();
    for leak in ["no such table", "sqlite", "sqlx", "select", "/tmp", ".rs:"] {
        assert!(!text.contains(leak), "{leak} leaked: {body}");
    }
}

#[tokio::test]
async fn introspection_can_be_switched_off_and_then_suggests_nothing() {
    let app = spawn_app_with(&Backend::Embedded, &[("INTROSPECTION", "false")]).await;
    let (_, body) = post_raw(
        &app,
        "{ __schema { queryType { name } } __type(name: \"Product\") { name } }",
    )
    .await;
    assert!(
        body["data"]["__schema"].is_null() && body["data"]["__type"].is_null(),
        "{body}"
    );
    let (_, body) = post_raw(&app, "{ prodcts { totalCount } }").await;
    assert!(!body.to_string().contains("Did you mean"), "{body}");
    let open = spawn_app(&Backend::Embedded).await;
    let (_, body) = post_raw(&open, "{ __schema { queryType { name } } }").await;
    assert_eq!(body["data"]["__schema"]["queryType"]["name"], "Query");
}

#[tokio::test]
async fn cors_is_off_unless_origins_are_listed() {
    let preflight = |app: &TestApp, origin: &str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.base))
            .header("origin", origin.to_string())
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type, authorization",
            )
            .send()
    };
    let closed = spawn_app(&Backend::Embedded).await;
    let r = preflight(&closed, "https://shop.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    let open = spawn_app_with(
        &Backend::Embedded,
        &[(
            "CORS_ALLOW_ORIGINS",
            "https://shop.example, https://admin.example",
        )],
    )
    .await;
    let r = preflight(&open, "https://shop.example").await.unwrap();
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://shop.example"
    );
    let r = preflight(&open, "https://evil.example").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn get_queries_carry_cache_control_from_hints_and_everything_else_is_no_store() {
    let app = spawn_app(&Backend::Embedded).await;
    let id = app.create("A", "1", "C", 1).await;
    let cache_control =
        |r: &crate::harness::Gql| r.headers["cache-control"].to_str().unwrap().to_string();
    let r = app
        .get(
            "query($id: ID!) { product(id: $id) { name category { name } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(cache_control(&r), "public, max-age=10");
    let r = app.get("{ categories { name } }", json!({})).await;
    assert_eq!(cache_control(&r), "public, max-age=30");
    let r = app
        .get(
            "{ cacheStats { hits } product(id: \"1\") { name } }",
            json!({}),
        )
        .await;
    assert_eq!(cache_control(&r), "no-store");
    let r = app.get("{ product(id: \"x\") { name } }", json!({})).await;
    assert_eq!(cache_control(&r), "no-store");
    let r = app.product(&id).await;
    assert_eq!(
        cache_control(&r),
        "no-store",
        "POST responses are never stored"
    );
    let r = app.update(&id, json!({ "name": "B" })).await;
    assert_eq!(cache_control(&r), "no-store");
}
