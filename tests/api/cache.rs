//! The cache's promises, each proven against a real server: hits on second reads, no
//! stale read after any write (on one instance and across two), conditional fills that
//! reject an old version, batching, single-flight, outages, TTLs and `clearCache`.
use std::{
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use fred::interfaces::KeysInterface;
use futures::future::join_all;
use larder::{
    cache::Kind,
    catalog::{
        list_name,
        model::{OrderField, ProductOrder, ProductQuery},
    },
};
use serde_json::{Value, json};

use crate::fixtures::{OwnRedis, pause_first_fill};
use crate::harness::{
    TestApp, each_backend, post_value, redis_backend, spawn_app, spawn_app_with, spawn_sibling,
    start,
};

#[tokio::test]
async fn second_reads_of_an_item_a_list_and_the_categories_are_hits() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Tea", "3.00", "Drinks", 4).await;
        let first = app.product(&id).await;
        assert_eq!(
            (first.x_cache(), first.cache()["misses"]["product"].as_u64()),
            ("MISS", Some(1)),
            "{}",
            first.body
        );
        let second = app.product(&id).await;
        assert_eq!(second.x_cache(), "HIT", "{}", second.body);
        // A replay of the whole answer, whose stamps (the product and its category)
        // were each read again and found current.
        assert_eq!(
            second.cache()["hits"],
            json!({ "product": 1, "category": 1, "list": 0, "response": 1 })
        );
        assert_eq!(
            (second.sql(), second.cache()["source"].as_str()),
            (0, Some("cache"))
        );

        for q in [
            "{ products(first: 5) { totalCount nodes { name } } }",
            "{ categories { name productCount } }",
        ] {
            let cold = app.gql(q, json!({})).await;
            assert!(cold.sql() > 0, "{q}: {}", cold.body);
            let warm = app.gql(q, json!({})).await;
            assert_eq!(
                (warm.x_cache(), warm.sql()),
                ("HIT", 0),
                "{q}: {}",
                warm.body
            );
            assert_eq!(warm.data(), cold.data());
        }
        // One cached product and one never read: a partial answer.
        let other = app.create("Coffee", "4.00", "Drinks", 1).await;
        let r = app
            .gql(
                "query($ids: [ID!]!) { productsByIds(ids: $ids) { name } }",
                json!({ "ids": [id, other] }),
            )
            .await;
        assert_eq!(
            (r.x_cache(), r.cache()["source"].as_str()),
            ("PARTIAL", Some("both")),
            "{}",
            r.body
        );
    })
    .await;
}

/// Every read the tests compare: an item, lists in several filters and orders, the
/// categories with counts and nested pages.
const VIEWS: &[&str] = &[
    "query($id: ID!) { product(id: $id) { id name price version stockQuantity inStock category { id name } } }",
    "{ products(first: 50, orderBy: { field: NAME }) { totalCount nodes { id name price version } } }",
    "{ products(first: 50, orderBy: { field: PRICE, direction: DESC }) { totalCount nodes { id price } } }",
    "{ products(first: 2, orderBy: { field: CREATED_AT, direction: DESC }) { totalCount nodes { id name } pageInfo { hasNextPage } } }",
    "{ products(filter: { search: \"mug\" }) { totalCount nodes { id name } } }",
    "{ products(filter: { inStock: true, minPrice: \"5\" }) { totalCount nodes { id name } } }",
    "{ categories { name productCount products(first: 10, orderBy: { field: NAME }) { totalCount nodes { name price version } } } }",
];

async fn views(app: &TestApp, id: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for q in VIEWS {
        out.push(app.gql(q, json!({ "id": id })).await.ok().clone());
    }
    out
}

/// Reads every view twice through `reader` (so caches are warm), then checks they
/// equal what an uncached instance on the same database answers.
async fn assert_views_fresh(reader: &TestApp, truth: &TestApp, id: &str, step: &str) {
    let expected = views(truth, id).await;
    assert_eq!(views(reader, id).await, expected, "{step}: first read");
    assert_eq!(views(reader, id).await, expected, "{step}: second read");
}

async fn uncached_twin(app: &TestApp) -> TestApp {
    let mut settings = app.settings.clone();
    settings.insert("CACHE_BACKEND".into(), "none".into());
    start(&app.backend, settings).await
}

async fn write_sequence(writer: &TestApp, reader: &TestApp, truth: &TestApp) {
    for (n, p, c) in [
        ("Red Mug", "6.00", "Kitchen"),
        ("Blue Mug", "7.50", "Kitchen"),
        ("Chair", "40.00", "Furniture"),
    ] {
        writer.create(n, p, c, 3).await;
    }
    let id = writer.create("Green Mug", "5.00", "Kitchen", 2).await;
    assert_views_fresh(reader, truth, &id, "after setup").await;

    writer
        .update(&id, json!({ "price": "8.25", "name": "Green Mug XL" }))
        .await
        .ok();
    assert_views_fresh(reader, truth, &id, "after a price and name update").await;

    writer.update(&id, json!({ "stockQuantity": 0 })).await.ok();
    assert_views_fresh(reader, truth, &id, "after a stock update").await;

    writer
        .update(&id, json!({ "category": "Furniture" }))
        .await
        .ok();
    assert_views_fresh(reader, truth, &id, "after a category move").await;

    writer
        .update(&id, json!({ "category": "Garden" }))
        .await
        .ok();
    assert_views_fresh(reader, truth, &id, "after a move to a new category").await;

    let created = writer.create("Zinc Mug", "9.00", "Kitchen", 5).await;
    assert_views_fresh(reader, truth, &created, "after a create").await;

    writer
        .admin(
            &format!(r#"mutation {{ deleteProduct(id: "{id}") {{ id }} }}"#),
            json!({}),
        )
        .await
        .ok();
    assert_views_fresh(reader, truth, &id, "after a delete").await;
    let gone = reader.product(&id).await;
    assert_eq!(gone.ok()["product"], Value::Null);
}

#[tokio::test]
async fn every_write_makes_the_next_reads_of_the_item_and_every_list_fresh() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let truth = uncached_twin(&app).await;
        write_sequence(&app, &app, &truth).await;
    })
    .await;
}

#[tokio::test]
async fn a_write_through_one_instance_is_seen_by_reads_through_another() {
    let Some(b) = redis_backend("a_write_through_one_instance_is_seen_by_reads_through_another")
    else {
        return;
    };
    let writer = spawn_app(&b).await;
    let reader = spawn_sibling(&writer).await;
    let truth = uncached_twin(&writer).await;
    write_sequence(&writer, &reader, &truth).await;
    // And the other way round.
    write_sequence(&reader, &writer, &truth).await;
}

#[tokio::test]
async fn an_absent_marker_never_hides_a_product_created_later() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let first = app.create("First", "1", "C", 1).await;
        let next: i64 = first.parse::<i64>().unwrap() + 1;
        // Reading the next id caches "absent"; a second read is a hit on that marker.
        assert_eq!(
            app.product(&next.to_string()).await.ok()["product"],
            Value::Null
        );
        let r = app.product(&next.to_string()).await;
        assert_eq!(
            (r.x_cache(), r.ok()["product"].clone()),
            ("HIT", Value::Null)
        );
        let created = app.create("Second", "1", "C", 1).await;
        assert_eq!(created, next.to_string());
        assert_eq!(
            app.product(&created).await.ok()["product"]["name"],
            "Second"
        );
    })
    .await;
}

#[tokio::test]
async fn a_fill_carrying_an_old_version_after_a_write_is_rejected() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Racy", "1.00", "C", 1).await;
        let (reached, release) = pause_first_fill(&app, Kind::Product);
        // A reader loads version 1 from the database and stops before its fill.
        let (client, url) = (app.client.clone(), format!("{}/graphql", app.base));
        let query = json!({ "query": format!(r#"{{ product(id: "{id}") {{ version }} }}"#) });
        let slow_reader = tokio::spawn(post_value(client, url, query));
        tokio::time::timeout(Duration::from_secs(10), reached.notified())
            .await
            .expect("reader reached the fill");
        // The write commits and invalidates while the reader holds version 1.
        assert_eq!(
            app.update(&id, json!({ "name": "Racy v2" })).await.ok()["updateProduct"]["version"],
            2
        );
        let rejected_before = app
            .catalog
            .cache()
            .stats
            .kind(Kind::Product)
            .fills_rejected
            .load(Ordering::Relaxed);
        release.notify_one();
        let old = slow_reader.await.unwrap();
        assert_eq!(
            old["data"]["product"]["version"], 1,
            "the reader began before the write"
        );
        let rejected = app
            .catalog
            .cache()
            .stats
            .kind(Kind::Product)
            .fills_rejected
            .load(Ordering::Relaxed);
        assert_eq!(rejected, rejected_before + 1, "the stale fill was refused");
        for _ in 0..2 {
            let r = app.product(&id).await;
            assert_eq!(r.ok()["product"]["version"], 2, "{}", r.body);
        }
        app.catalog.hooks().set_before_fill(None);
    })
    .await;
}

#[tokio::test]
async fn fifty_products_with_categories_cost_one_round_trip_and_one_statement_per_kind() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let mut ids = Vec::new();
        for i in 0..50 {
            ids.push(
                app.create(&format!("P{i}"), "1.00", &format!("Cat {}", i % 7), 1)
                    .await,
            );
        }
        let q = "query($ids: [ID!]!) { productsByIds(ids: $ids) { name category { name } } }";
        let cold = app.gql(q, json!({ "ids": ids })).await;
        assert_eq!(cold.ok()["productsByIds"].as_array().unwrap().len(), 50);
        // Per kind: one read and one fill round trip, one SQL statement.
        assert_eq!((cold.sql(), cold.round_trips()), (2, 4), "{}", cold.cache());
        // The same request again: replayed after one round trip reading its stamps.
        let replay = app.gql(q, json!({ "ids": ids })).await;
        assert_eq!(
            (replay.sql(), replay.round_trips()),
            (0, 1),
            "{}",
            replay.cache()
        );
        assert_eq!(replay.cache()["hits"]["response"], 1);
        assert_eq!(replay.data(), cold.data());
        // Another text of the same query executes: one read round trip for the
        // products; their categories come from process (never changed, same epoch).
        let warm = app.gql(&format!("{q} "), json!({ "ids": ids })).await;
        assert_eq!((warm.sql(), warm.round_trips()), (0, 1), "{}", warm.cache());
        assert_eq!(warm.cache()["hits"]["category"], 7, "{}", warm.cache());
        assert_eq!(warm.cache()["hits"]["response"], 0);
        assert_eq!(warm.data(), cold.data());
    })
    .await;
}

#[tokio::test]
async fn two_hundred_concurrent_requests_for_one_uncached_id_cause_one_database_query() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Hot", "1.00", "C", 1).await;
        // Warm the category so only the product is uncached.
        let other = app.create("Other", "1.00", "C", 1).await;
        app.product(&other).await.ok();
        app.product(&other).await.ok();
        let before = app.catalog.sql_total();
        let query = json!({ "query": format!(r#"{{ product(id: "{id}") {{ name version }} }}"#) });
        let url = format!("{}/graphql", app.base);
        let responses = join_all((0..200).map(|_| {
            let (client, url, query) = (app.client.clone(), url.clone(), query.clone());
            post_value(client, url, query)
        }))
        .await;
        for r in &responses {
            assert_eq!(r["data"]["product"]["name"], "Hot", "{r}");
        }
        let sql: u64 = responses
            .iter()
            .map(|r| r["extensions"]["cache"]["sqlStatements"].as_u64().unwrap())
            .sum();
        assert_eq!((sql, app.catalog.sql_total() - before), (1, 1));
    })
    .await;
}

#[tokio::test]
async fn cache_stats_count_per_kind_and_reset() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Tea", "1.00", "C", 1).await;
        app.product(&id).await.ok();
        app.product(&id).await.ok();
        let q = "{ cacheStats { backend connected hits misses hitRate entities { kind hits misses fills fillsRejected invalidations errors } } }";
        let r = app.gql(q, json!({})).await;
        let s = &r.ok()["cacheStats"];
        assert_eq!(s["connected"], true);
        let product = s["entities"].as_array().unwrap().iter().find(|e| e["kind"] == "product").unwrap();
        assert_eq!((product["hits"].as_u64(), product["misses"].as_u64(), product["fills"].as_u64()), (Some(1), Some(1), Some(1)));
        assert_eq!(product["invalidations"], 1, "the creation's tombstone");
        let r = app.admin("mutation { resetCacheStats { hits misses } }", json!({})).await;
        assert_eq!(r.ok()["resetCacheStats"], json!({ "hits": 0, "misses": 0 }));
    })
    .await;
}

#[tokio::test]
async fn clear_cache_makes_every_entry_a_miss() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Tea", "1.00", "C", 1).await;
        app.product(&id).await.ok();
        assert_eq!(app.product(&id).await.x_cache(), "HIT");
        let r = app
            .admin(
                "mutation { clearCache { backend cleared epoch } }",
                json!({}),
            )
            .await;
        assert_eq!(r.ok()["clearCache"]["cleared"], true);
        let r = app.product(&id).await;
        assert_eq!(
            (r.x_cache(), r.ok()["product"]["name"].as_str()),
            ("MISS", Some("Tea"))
        );
        assert_eq!(app.product(&id).await.x_cache(), "HIT");
    })
    .await;
}

#[tokio::test]
async fn clear_cache_leaves_other_prefixes_untouched() {
    let Some(b) = redis_backend("clear_cache_leaves_other_prefixes_untouched") else {
        return;
    };
    let app = spawn_app(&b).await;
    let neighbour = spawn_app(&b).await;
    let id = app.create("Mine", "1.00", "C", 1).await;
    let theirs = neighbour.create("Theirs", "1.00", "C", 1).await;
    for a in [&app, &neighbour] {
        a.product(if std::ptr::eq(a, &app) { &id } else { &theirs })
            .await
            .ok();
    }
    let client = app.catalog.cache().redis_client().unwrap();
    client
        .set::<(), _, _>("unrelated:key", "kept", None, None, false)
        .await
        .unwrap();
    app.admin("mutation { clearCache { cleared } }", json!({}))
        .await
        .ok();
    assert_eq!(neighbour.product(&theirs).await.x_cache(), "HIT");
    assert_eq!(app.product(&id).await.x_cache(), "MISS");
    let kept: Option<String> = client.get("unrelated:key").await.unwrap();
    assert_eq!(kept.as_deref(), Some("kept"));
    client.del::<(), _>("unrelated:key").await.unwrap();
}

#[tokio::test]
async fn entries_expire_within_their_ttl_and_jitter() {
    let Some(b) = redis_backend("entries_expire_within_their_ttl_and_jitter") else {
        return;
    };
    let app = spawn_app(&b).await;
    let id = app.create("Tea", "1.00", "C", 1).await;
    app.product(&id).await.ok();
    app.product("424242").await.ok();
    app.gql(
        "{ products(first: 3) { totalCount } categories { name } }",
        json!({}),
    )
    .await
    .ok();
    let cache = app.catalog.cache();
    let client = cache.redis_client().unwrap();
    let id: i32 = id.parse().unwrap();
    let page = ProductQuery {
        filter: Default::default(),
        order: ProductOrder {
            field: OrderField::Id,
            descending: false,
        },
        first: 3,
        after: None,
    };
    let mut checks = vec![
        (cache.keys.item(Kind::Product, id), 600_000),
        (cache.keys.item(Kind::Category, 1), 600_000),
        (cache.keys.item(Kind::Product, 424242), 60_000),
    ];
    checks.push((cache.keys.list(&list_name(&page)), 300_000));
    checks.push((cache.keys.list("categories"), 300_000));
    for (key, ttl) in checks {
        let pttl: i64 = client.pttl(&key).await.unwrap();
        let (lo, hi) = (ttl * 90 / 100 - 5_000, ttl * 110 / 100);
        assert!(
            (lo..=hi).contains(&pttl),
            "{key}: {pttl} ms not in {lo}..={hi}"
        );
    }
}

/// Polls until a read of `id` is a cache hit; returns how long that took.
async fn until_hit(app: &TestApp, id: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        let r = app.product(id).await;
        r.ok();
        if r.x_cache() == "HIT" {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("caching did not resume within {limit:?}");
}

#[tokio::test]
async fn a_redis_outage_fails_no_request_and_caching_resumes_by_itself() {
    let Some(b) = redis_backend("a_redis_outage_fails_no_request_and_caching_resumes_by_itself")
    else {
        return;
    };
    let mut redis = OwnRedis::start(OwnRedis::free_port()).await;
    let url = redis.url();
    let app = spawn_app_with(&b, &[("REDIS_URL", &url)]).await;
    let id = app.create("Tea", "1.00", "C", 1).await;
    until_hit(&app, &id, Duration::from_secs(5)).await;

    redis.stop().await;
    for i in 0..20 {
        let started = Instant::now();
        let r = app.product(&id).await;
        assert_eq!(r.ok()["product"]["name"], "Tea");
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "read {i} took {:?}",
            started.elapsed()
        );
        app.gql(
            "{ products(first: 5) { totalCount } categories { name } }",
            json!({}),
        )
        .await
        .ok();
    }
    // Writes succeed too; their invalidation is delivered once Redis is back.
    assert_eq!(
        app.update(&id, json!({ "name": "Tea v2" })).await.ok()["updateProduct"]["version"],
        2
    );
    let ready: Value = app.get_json("/ready").await;
    assert_eq!(
        (
            ready["status"].as_str(),
            ready["cache"]["connected"].as_bool(),
            ready["cache"]["trusted"].as_bool(),
            ready["cache"]["reason"].as_str(),
        ),
        (
            Some("ready"),
            Some(false),
            Some(false),
            Some("not connected")
        )
    );

    let _redis = OwnRedis::start(redis.port).await;
    until_hit(&app, &id, Duration::from_secs(10)).await;
    assert_eq!(app.product(&id).await.ok()["product"]["name"], "Tea v2");
}

#[tokio::test]
async fn a_fill_over_a_tombstone_keeps_the_tombstones_remaining_life() {
    let Some(b) = redis_backend("a_fill_over_a_tombstone_keeps_the_tombstones_remaining_life")
    else {
        return;
    };
    // Entry TTLs shorter than a tombstone's floor: the fill that replaces P|4 with V|4
    // must not let the key expire before a slower reader's V|3 could still arrive.
    let app = spawn_app_with(&b, &[("CACHE_TTL_PRODUCT_SECS", "5")]).await;
    let id = app.create("Tea", "1.00", "C", 1).await;
    app.update(&id, json!({ "name": "Tea v2" })).await.ok();
    let cache = app.catalog.cache();
    let key = cache.keys.item(Kind::Product, id.parse().unwrap());
    let client = cache.redis_client().unwrap();
    let before: i64 = client.pttl(&key).await.unwrap();
    assert!(before > 55_000, "the tombstone lives >= 60 s: {before} ms");
    // A reader loads version 2 and fills it (TTL about 5 s) over the tombstone.
    assert_eq!(app.product(&id).await.ok()["product"]["version"], 2);
    let raw: Option<String> = client.get(&key).await.unwrap();
    assert!(raw.unwrap_or_default().starts_with("V|2|"));
    let after: i64 = client.pttl(&key).await.unwrap();
    assert!(
        after > 50_000,
        "the filled value kept the tombstone's life: {after} ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_reads_of_a_group_reach_redis_as_fewer_mgets() {
    let Some(b) = crate::harness::redis_backend("concurrent_reads_merge") else {
        return;
    };
    let redis = crate::fixtures::OwnRedis::start(crate::fixtures::OwnRedis::free_port()).await;
    let url = redis.url();
    // No response cache: every request reads its product through the item cache.
    let app = crate::harness::spawn_app_with(
        &b,
        &[
            ("REDIS_URL", url.as_str()),
            ("RESPONSE_CACHE_MAX_BYTES", "0"),
        ],
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..64 {
        ids.push(app.create(&format!("P{i}"), "1.00", "C", 1).await);
    }
    for id in &ids {
        app.product(id).await.ok();
    }
    crate::fixtures::cli(redis.port, &["CONFIG", "RESETSTAT"]);
    let reads = ids.iter().map(|id| app.product(id));
    let answers = futures::future::join_all(reads).await;
    for (r, id) in answers.iter().zip(&ids) {
        assert_eq!(r.ok()["product"]["id"], id.as_str());
        assert_eq!(r.sql(), 0, "a hit: {}", r.cache());
    }
    let stats = crate::fixtures::cli(redis.port, &["INFO", "commandstats"]);
    let mgets: u64 = stats
        .lines()
        .find_map(|l| l.strip_prefix("cmdstat_mget:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    eprintln!("64 concurrent hits: {mgets} MGETs");
    assert!(
        mgets > 0 && mgets < 64,
        "{mgets} MGETs for 64 concurrent reads"
    );
}
