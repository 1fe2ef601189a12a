//! Measurement: `cachePerformance` and `/metrics`.
use serde_json::json;

use crate::harness::{Backend, each_backend, spawn_app};

#[tokio::test]
async fn cache_performance_compares_a_warm_cache_with_the_database() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        for i in 0..25 {
            app.create(&format!("P{i}"), "2.50", &format!("C{}", i % 3), 1).await;
        }
        for scenario in ["SINGLE_PRODUCT", "LIST_PAGE", "CATEGORY_PAGE"] {
            let r = app
                .admin(
                    &format!("{{ cachePerformance(scenario: {scenario}, iterations: 20) {{ scenario iterations speedup cached {{ p50Ms p95Ms meanMs minMs maxMs sqlStatementsPerRun cacheRoundTripsPerRun }} uncached {{ p50Ms p95Ms meanMs minMs maxMs sqlStatementsPerRun cacheRoundTripsPerRun }} }} }}"),
                    json!({}),
                )
                .await;
            let rep = &r.ok()["cachePerformance"];
            assert_eq!((rep["scenario"].as_str(), rep["iterations"].as_i64()), (Some(scenario), Some(20)));
            for side in ["cached", "uncached"] {
                let s = &rep[side];
                let f = |k: &str| s[k].as_f64().unwrap_or(-1.0);
                assert!(f("minMs") > 0.0 && f("minMs") <= f("p50Ms") && f("p50Ms") <= f("p95Ms") && f("p95Ms") <= f("maxMs"), "{scenario} {side}: {s}");
                assert!(f("meanMs") >= f("minMs") && f("meanMs") <= f("maxMs"), "{s}");
            }
            assert_eq!(rep["cached"]["sqlStatementsPerRun"], 0.0, "{scenario}: a warm run reads no SQL");
            assert!(rep["cached"]["cacheRoundTripsPerRun"].as_f64().unwrap() >= 1.0);
            assert!(rep["uncached"]["sqlStatementsPerRun"].as_f64().unwrap() >= 1.0);
            assert_eq!(rep["uncached"]["cacheRoundTripsPerRun"], 0.0, "{scenario}: the cache was bypassed");
            assert!(rep["speedup"].as_f64().unwrap() > 0.0);
        }
        for bad in [0, 201] {
            let r = app.admin(&format!("{{ cachePerformance(scenario: LIST_PAGE, iterations: {bad}) {{ speedup }} }}"), json!({})).await;
            assert_eq!((r.code(), r.field()), (Some("BAD_USER_INPUT"), Some("iterations")));
        }
        // Without the token: refused before anything runs (it puts load on the database).
        let before = app.catalog.sql_total();
        let r = app.gql("{ cachePerformance(scenario: LIST_PAGE, iterations: 200) { speedup } }", json!({})).await;
        assert_eq!(r.code(), Some("UNAUTHENTICATED"), "{}", r.body);
        assert_eq!(app.catalog.sql_total(), before);
    })
    .await;
}

#[tokio::test]
async fn cache_performance_on_an_empty_catalog_is_a_clear_error() {
    let app = spawn_app(&Backend::Embedded).await;
    let r = app
        .admin(
            "{ cachePerformance(scenario: SINGLE_PRODUCT) { speedup } }",
            json!({}),
        )
        .await;
    assert_eq!(r.code(), Some("BAD_USER_INPUT"));
}

#[tokio::test]
async fn metrics_parse_as_prometheus_text_and_count_what_happened() {
    let app = spawn_app(&Backend::Embedded).await;
    let id = app.create("Tea", "1.00", "C", 1).await;
    app.product(&id).await.ok();
    app.product(&id).await.ok();
    let resp = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = resp.text().await.unwrap();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    // Counters are process-wide (tests share the process), so check lower bounds.
    assert!(
        value(
            "http_requests_total",
            &[("route", "/graphql"), ("status", "200")]
        ) >= 3.0
    );
    assert!(
        value(
            "cache_events_total",
            &[("kind", "product"), ("event", "hit")]
        ) >= 1.0
    );
    assert!(
        value(
            "cache_events_total",
            &[("kind", "product"), ("event", "fill")]
        ) >= 1.0
    );
    assert!(value("db_statements_total", &[("kind", "read")]) >= 1.0);
    assert!(value("graphql_operations_total", &[("outcome", "ok")]) >= 3.0);
    assert_eq!(value("larder_build_info", &[]), 1.0);
    for name in [
        "http_request_duration_seconds",
        "cache_command_duration_seconds",
        "db_statement_duration_seconds",
    ] {
        assert!(
            scrape.samples.iter().any(|s| s.metric == name),
            "{name} missing"
        );
    }
    // Labels come from a fixed set of names; none carries an id or query text.
    let allowed = [
        "route",
        "method",
        "status",
        "kind",
        "event",
        "op",
        "outcome",
        "operation",
        "state",
        "backend",
        "version",
        "le",
        "quantile",
    ];
    for s in &scrape.samples {
        for (k, v) in s.labels.iter() {
            assert!(
                allowed.contains(&k.as_str()),
                "unexpected label {k}={v} on {}",
                s.metric
            );
        }
    }
    assert!(!text.contains("product(id"));
}
