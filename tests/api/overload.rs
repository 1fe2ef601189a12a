//! Load held: a slow Redis is waited out, not treated as down; database reads stay
//! within their bound when Redis is gone (and past the queue fail with a clear
//! `OVERLOADED`, never `DATABASE_UNAVAILABLE`); beyond `MAX_IN_FLIGHT`, requests are
//! shed with 503 and `Retry-After`, while the probes still answer.
use std::time::Duration;

use futures::future::join_all;
use larder::cache::Kind;
use serde_json::{Value, json};

use crate::fixtures::{OwnRedis, pause_first_fill};
use crate::harness::{post_value, redis_backend, spawn_app_with};

const ITEM: &str = "query($id: ID!) { product(id: $id) { id name } }";

#[tokio::test]
async fn a_redis_slower_than_its_timeout_but_within_the_read_budget_sends_no_read_to_the_database()
{
    let Some(b) = redis_backend("a_redis_slower_than_its_timeout") else {
        return;
    };
    let redis = OwnRedis::start(OwnRedis::free_port()).await;
    let app = spawn_app_with(
        &b,
        &[
            ("REDIS_URL", &redis.url()),
            ("CACHE_READ_BUDGET_MS", "1000"),
        ],
    )
    .await;
    let id = app.create("Patient", "1.00", "Slow", 1).await;
    app.product(&id).await.ok();
    // Stalled for three times the 100 ms command timeout, well inside the budget.
    redis.pause(true);
    let url = format!("{}/graphql", app.base);
    let body = json!({ "query": ITEM, "variables": { "id": id } });
    let read = tokio::spawn(post_value(app.client.clone(), url, body));
    tokio::time::sleep(Duration::from_millis(300)).await;
    redis.pause(false);
    let r = read.await.unwrap();
    assert_eq!(r["data"]["product"]["name"], "Patient", "{r}");
    assert_eq!(
        r["extensions"]["cache"]["sqlStatements"], 0,
        "waited for Redis: {r}"
    );
    assert!(
        !app.catalog.cache().is_degraded(),
        "a slow Redis is not a lost one"
    );
    let next = app.product(&id).await;
    assert_eq!((next.x_cache(), next.sql()), ("HIT", 0), "{}", next.body);
}

async fn uncached_reads(app: &crate::harness::TestApp, ids: &[String]) -> Vec<Value> {
    let url = format!("{}/graphql", app.base);
    join_all(ids.iter().map(|id| {
        let body = json!({ "query": ITEM, "variables": { "id": id } });
        post_value(app.client.clone(), url.clone(), body)
    }))
    .await
}

#[tokio::test]
async fn with_redis_gone_database_reads_stay_within_their_bound_and_past_the_queue_say_overloaded()
{
    let Some(b) = redis_backend("with_redis_gone_database_reads_stay_within_their_bound") else {
        return;
    };
    let mut redis = OwnRedis::start(OwnRedis::free_port()).await;
    let settings = [
        ("REDIS_URL", redis.url()),
        ("DB_MAX_CONNECTIONS", "6".to_string()),
        ("DB_READ_CONCURRENCY", "2".to_string()),
    ];
    let settings: Vec<(&str, &str)> = settings.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let app = spawn_app_with(&b, &settings).await;
    let mut ids = Vec::new();
    for i in 0..60 {
        ids.push(app.create(&format!("P{i}"), "1.00", "Bound", 1).await);
    }
    redis.stop().await;
    // Every read goes to the database now, 60 at once: all answered, 2 at a time, and
    // the misses of different ids merged into far fewer statements than requests.
    let mut statements = 0;
    for (r, id) in uncached_reads(&app, &ids).await.iter().zip(&ids) {
        assert!(r["errors"].is_null(), "{r}");
        assert_eq!(r["extensions"]["cache"]["source"], "database", "{r}");
        assert_eq!(r["data"]["product"]["id"], *id, "{r}");
        statements += r["extensions"]["cache"]["sqlStatements"].as_u64().unwrap();
    }
    assert!(
        app.catalog.db_read_peak() <= 2,
        "peak {}",
        app.catalog.db_read_peak()
    );
    assert!(
        statements < 30,
        "60 reads of different ids took {statements} statements"
    );

    // With no room to wait, the excess is refused at once, clearly.
    let tight = [
        ("REDIS_URL", redis.url()),
        ("DB_READ_CONCURRENCY", "1".to_string()),
        ("DB_READ_QUEUE", "0".to_string()),
    ];
    let tight: Vec<(&str, &str)> = tight.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut settings = app.settings.clone();
    for (k, v) in tight {
        settings.insert(k.into(), v.into());
    }
    let small = crate::harness::start(&app.backend, settings).await;
    let answers = uncached_reads(&small, &ids).await;
    let codes: Vec<&str> = answers
        .iter()
        .filter_map(|r| r["errors"][0]["extensions"]["code"].as_str())
        .collect();
    assert!(
        !codes.is_empty(),
        "60 reads through one slot with no queue: some refused"
    );
    assert!(codes.iter().all(|c| *c == "OVERLOADED"), "{codes:?}");
    assert!(
        answers.iter().any(|r| r["errors"].is_null()),
        "and some served"
    );
}

#[tokio::test]
async fn past_max_in_flight_requests_are_shed_with_503_and_retry_after_while_probes_answer() {
    let b = crate::harness::Backend::Embedded;
    let app = spawn_app_with(&b, &[("MAX_IN_FLIGHT", "1")]).await;
    let id = app.create("Held", "1.00", "Shed", 1).await;
    // One request held in flight, paused before its fill.
    let (reached, release) = pause_first_fill(&app, Kind::Product);
    let url = format!("{}/graphql", app.base);
    let body = json!({ "query": ITEM, "variables": { "id": id } });
    let held = tokio::spawn(post_value(app.client.clone(), url.clone(), body.clone()));
    tokio::time::timeout(Duration::from_secs(10), reached.notified())
        .await
        .unwrap();
    let shed = app.client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(shed.status(), 503);
    assert_eq!(shed.headers()["retry-after"], "1");
    let shed: Value = shed.json().await.unwrap();
    assert_eq!(
        shed["errors"][0]["extensions"]["code"], "OVERLOADED",
        "{shed}"
    );
    let health = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let metrics = app
        .client
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert!(
        metrics
            .text()
            .await
            .unwrap()
            .contains("http_requests_shed_total")
    );
    release.notify_one();
    assert_eq!(held.await.unwrap()["data"]["product"]["name"], "Held");
    app.catalog.hooks().set_before_fill(None);
    // The place is free again.
    assert!(app.product(&id).await.body["errors"].is_null());
}
