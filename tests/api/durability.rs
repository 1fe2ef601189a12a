//! Never stale when Redis loses data: a Redis that comes back from an older snapshot, an
//! older AOF, or empty, serves nothing older than the last acknowledged write, through
//! every instance, including one started after the rollback (the history check,
//! `catalog::history`).
use std::{path::Path, time::Duration};

use serde_json::{Value, json};

use crate::fixtures::OwnRedis;
use crate::harness::{TestApp, redis_backend, spawn_app_with, spawn_sibling};

const ITEM: &str = "query($id: ID!) { product(id: $id) { version stockQuantity } }";

fn in_stock_page(category: &str) -> String {
    format!(
        r#"{{ products(first: 10, filter: {{ categoryId: "{category}", inStock: true }}) {{ totalCount nodes {{ id }} }} }}"#
    )
}

fn temp_dir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("larder-{what}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn redis_cli(port: u16, args: &[&str]) -> String {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A product and an `inStock` page of its category, both cached at version 1 through
/// every instance. Returns (product id, page query).
async fn cached_everywhere(apps: &[&TestApp]) -> (String, String) {
    let id = apps[0].create("Kept", "2.00", "Restore", 3).await;
    let r = apps[0]
        .gql(
            "query($id: ID!) { product(id: $id) { category { id } } }",
            json!({ "id": id }),
        )
        .await;
    let page = in_stock_page(r.ok()["product"]["category"]["id"].as_str().unwrap());
    for app in apps {
        for _ in 0..2 {
            assert_eq!(
                app.gql(ITEM, json!({ "id": id })).await.ok()["product"]["version"],
                1
            );
            assert_eq!(
                app.gql(&page, json!({})).await.ok()["products"]["totalCount"],
                1
            );
        }
    }
    (id, page)
}

/// Reads through every app for `over`, alternating: each must show version 2, out of
/// stock and off the `inStock` page.
async fn all_fresh(apps: &[&TestApp], id: &str, page: &str, over: Duration) -> usize {
    let start = std::time::Instant::now();
    let mut reads = 0;
    while start.elapsed() < over {
        for app in apps {
            let item = app.gql(ITEM, json!({ "id": id })).await;
            assert_eq!(
                item.ok()["product"],
                json!({ "version": 2, "stockQuantity": 0 }),
                "read {reads}: {}",
                item.body
            );
            let listed = app.gql(page, json!({})).await;
            assert_eq!(
                listed.ok()["products"]["totalCount"],
                0,
                "read {reads}: {}",
                listed.body
            );
            reads += 2;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reads
}

async fn wait_connected(app: &TestApp) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !app.catalog.cache().is_connected() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How Redis comes back after the write.
#[derive(Clone, Copy, Debug)]
enum Comeback {
    /// From an RDB snapshot taken before the write.
    Snapshot,
    /// From a copy of its AOF taken before the write.
    OlderAof,
    /// With no data at all.
    Empty,
}

async fn start_redis(port: u16, dir: &Path, how: Comeback) -> OwnRedis {
    match how {
        Comeback::Snapshot => OwnRedis::start_in(port, dir).await,
        Comeback::OlderAof => OwnRedis::start_aof(port, dir).await,
        Comeback::Empty => OwnRedis::start(port).await,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

async fn comeback_serves_nothing_stale(test: &str, how: Comeback) {
    let Some(b) = redis_backend(test) else {
        return;
    };
    let dir = temp_dir("durable");
    let port = OwnRedis::free_port();
    let mut redis = match how {
        Comeback::OlderAof => OwnRedis::start_aof(port, &dir).await,
        _ => OwnRedis::start_in(port, &dir).await,
    };
    let a = spawn_app_with(&b, &[("REDIS_URL", &redis.url())]).await;
    let b2 = spawn_sibling(&a).await;
    let (id, page) = cached_everywhere(&[&a, &b2]).await;
    // The older state Redis will come back with.
    let older = dir.join("older");
    match how {
        Comeback::Snapshot => assert_eq!(redis_cli(port, &["SAVE"]), "OK"),
        Comeback::OlderAof => copy_dir(&dir.join("appendonlydir"), &older),
        Comeback::Empty => {}
    }
    let w = a.update(&id, json!({ "stockQuantity": 0 })).await;
    assert_eq!(w.ok()["updateProduct"]["version"], 2);
    redis.stop().await;
    if let Comeback::OlderAof = how {
        std::fs::remove_dir_all(dir.join("appendonlydir")).unwrap();
        copy_dir(&older, &dir.join("appendonlydir"));
    }
    redis = start_redis(port, &dir, how).await;
    if let Comeback::Snapshot | Comeback::OlderAof = how {
        // It really came back with the old entries.
        let raw = redis_cli(port, &["KEYS", "*p:*"]);
        assert!(!raw.is_empty(), "{how:?}: Redis came back empty");
    }
    wait_connected(&a).await;
    wait_connected(&b2).await;
    let reads = all_fresh(&[&a, &b2], &id, &page, Duration::from_secs(2)).await;
    assert!(reads >= 40, "{reads} reads");
    // An instance started after the rollback has no memory of it: Postgres tells it.
    let late = spawn_sibling(&a).await;
    all_fresh(&[&late], &id, &page, Duration::from_millis(300)).await;
    // And the cache is used again afterwards.
    let again: Value = late.gql(ITEM, json!({ "id": id })).await.body;
    let hit = late.gql(ITEM, json!({ "id": id })).await;
    assert_eq!(hit.x_cache(), "HIT", "{} then {}", again, hit.body);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_redis_restored_from_an_older_snapshot_serves_nothing_stale_anywhere() {
    comeback_serves_nothing_stale(
        "a_redis_restored_from_an_older_snapshot",
        Comeback::Snapshot,
    )
    .await;
}

#[tokio::test]
async fn a_redis_restarted_from_an_older_aof_serves_nothing_stale_anywhere() {
    comeback_serves_nothing_stale("a_redis_restarted_from_an_older_aof", Comeback::OlderAof).await;
}

#[tokio::test]
async fn a_redis_restarted_empty_serves_nothing_stale_anywhere() {
    comeback_serves_nothing_stale("a_redis_restarted_empty", Comeback::Empty).await;
}

/// Waits until `master` reports `n` replicas online.
async fn replicas_online(master: u16, n: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = redis_cli(master, &["INFO", "replication"]);
        let online = info.lines().filter(|l| l.contains("state=online")).count();
        if online >= n {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "replicas never came online: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_wait_replicas_a_mutation_returns_after_its_tombstone_reached_the_replica() {
    let Some(b) = redis_backend("with_wait_replicas_a_mutation_returns_after_its_tombstone") else {
        return;
    };
    let (mp, rp) = (OwnRedis::free_port(), OwnRedis::free_port());
    let master = OwnRedis::start(mp).await;
    let replica = OwnRedis::start_replica(rp, mp).await;
    replicas_online(mp, 1).await;
    let app = spawn_app_with(
        &b,
        &[("REDIS_URL", &master.url()), ("CACHE_WAIT_REPLICAS", "1")],
    )
    .await;
    let id = app.create("Copied", "1.00", "Replicated", 1).await;
    let prefix = app.settings["CACHE_PREFIX"].clone();
    let key = format!("{{{prefix}}}p:{id}");
    for version in 2..=4 {
        let w = app.update(&id, json!({ "stockQuantity": version })).await;
        assert_eq!(w.ok()["updateProduct"]["version"], version);
        // Read from the replica the moment the mutation returned.
        assert_eq!(redis_cli(rp, &["GET", &key]), format!("P|{version}"));
    }
    assert_eq!(app.pending_outbox_rows().await, 0);

    // A replica that cannot acknowledge: the write is committed and answered, its
    // invalidation is on the master (reads use it), and its outbox row stays pending...
    replica.pause(true);
    let started = std::time::Instant::now();
    let w = app.update(&id, json!({ "stockQuantity": 9 })).await;
    assert_eq!(w.ok()["updateProduct"]["version"], 5, "{}", w.body);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "it waited for the replica"
    );
    assert_eq!(redis_cli(mp, &["GET", &key]), "P|5");
    let r = app.gql(ITEM, json!({ "id": id })).await;
    assert_eq!(r.ok()["product"]["version"], 5);
    assert_eq!(app.pending_outbox_rows().await, 1);
    // ...until the replica is back and has it.
    replica.pause(false);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.pending_outbox_rows().await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "never replayed to the replica"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let on_replica = redis_cli(rp, &["GET", &key]);
    assert!(
        on_replica == "P|5" || on_replica.starts_with("V|5|"),
        "{on_replica}"
    );
}

#[tokio::test]
async fn a_seed_while_redis_is_down_still_clears_the_cache_once_it_is_back() {
    let Some(b) = redis_backend("a_seed_while_redis_is_down_still_clears_the_cache") else {
        return;
    };
    let dir = temp_dir("seed");
    let port = OwnRedis::free_port();
    let mut redis = OwnRedis::start_in(port, &dir).await;
    let app = spawn_app_with(&b, &[("REDIS_URL", &redis.url())]).await;
    app.create("First", "1.00", "Seeded", 1).await;
    let page = "{ products(first: 1) { totalCount } }";
    for _ in 0..2 {
        assert_eq!(
            app.gql(page, json!({})).await.ok()["products"]["totalCount"],
            1
        );
    }
    // Redis goes away holding the page; rows arrive behind the cache's back.
    assert_eq!(redis_cli(port, &["SAVE"]), "OK");
    redis.stop().await;
    let added = larder::seed::seed_products(&app.catalog, 3).await.unwrap();
    assert_eq!(added, 3);
    assert!(
        app.pending_outbox_rows().await >= 1,
        "the clear is recorded"
    );
    // Back with the old page: the recorded clear is delivered before it is served.
    redis = OwnRedis::start_in(port, &dir).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while app.pending_outbox_rows().await > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the clear was never delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let late = spawn_sibling(&app).await;
    for reader in [&app, &late] {
        let r = reader.gql(page, json!({})).await;
        assert_eq!(r.ok()["products"]["totalCount"], 4, "{}", r.body);
    }
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_fresh_start_on_redis_uses_the_cache_from_the_first_request() {
    let Some(b) = redis_backend("a_fresh_start_on_redis_uses_the_cache_from_the_first_request")
    else {
        return;
    };
    // Without a seed to wait for, the very first request comes at once.
    let bare = spawn_app_with(&b, &[]).await;
    let first = bare.gql(ITEM, json!({ "id": "1" })).await;
    assert_eq!(first.x_cache(), "MISS", "{}", first.body);
    // The demo seed runs at start too, and its cache clear must land before requests.
    let app = spawn_app_with(&b, &[("SEED_DEMO", "true")]).await;
    let ready: Value = app.get_json("/ready").await;
    assert_eq!(
        ready["cache"],
        json!({
            "backend": "redis",
            "connected": true,
            "trusted": true,
            "reason": null,
            "lease": { "held": true, "withheldKeys": 0 },
        })
    );
    assert_eq!(
        app.pending_outbox_rows().await,
        0,
        "the seed's clear was delivered"
    );
    let first = app.gql(ITEM, json!({ "id": "1" })).await;
    assert_eq!(first.x_cache(), "MISS", "{}", first.body);
    let second = app.gql(ITEM, json!({ "id": "1" })).await;
    assert_eq!(second.x_cache(), "HIT", "{}", second.body);
}

#[tokio::test]
async fn a_redis_that_goes_back_without_dropping_its_connection_is_caught_by_the_next_read() {
    let Some(b) = redis_backend("a_redis_that_goes_back_without_dropping_its_connection") else {
        return;
    };
    let dir = temp_dir("reload");
    let port = OwnRedis::free_port();
    let redis = OwnRedis::start_in_with(port, &dir, &["--enable-debug-command", "local"]).await;
    let app = spawn_app_with(&b, &[("REDIS_URL", &redis.url())]).await;
    let (id, page) = cached_everywhere(&[&app]).await;
    assert_eq!(redis_cli(port, &["SAVE"]), "OK");
    let w = app.update(&id, json!({ "stockQuantity": 0 })).await;
    assert_eq!(w.ok()["updateProduct"]["version"], 2);
    // The older snapshot comes back under the same connections (as a failover behind a
    // proxy would): no reconnect, no connection error, no event at all.
    assert_eq!(redis_cli(port, &["DEBUG", "RELOAD", "NOSAVE"]), "OK");
    let raw = redis_cli(
        port,
        &[
            "GET",
            &format!("{{{}}}p:{id}", app.settings["CACHE_PREFIX"]),
        ],
    );
    assert!(raw.starts_with("V|1|"), "the old entry is back: {raw}");
    all_fresh(&[&app], &id, &page, Duration::from_millis(500)).await;
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_never_make_a_healthy_redis_look_rolled_back() {
    let Some(b) = redis_backend("concurrent_writes_never_make_a_healthy_redis_look_rolled_back")
    else {
        return;
    };
    let app = std::sync::Arc::new(spawn_app_with(&b, &[]).await);
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(app.create(&format!("Busy {i}"), "1.00", "Busy", 1).await);
    }
    let epoch_key = format!("{{{}}}epoch", app.settings["CACHE_PREFIX"]);
    let epoch = || async {
        use fred::interfaces::KeysInterface;
        let client = app.catalog.cache().redis_client().unwrap();
        client
            .get::<Option<String>, _>(epoch_key.as_str())
            .await
            .unwrap()
    };
    let epoch_before = epoch().await;
    // Deliveries answered while reads are in flight must never look like a Redis that
    // went back: every read of this run goes through the cache.
    let writer = {
        let (app, ids) = (app.clone(), ids.clone());
        tokio::spawn(async move {
            for n in 0..400 {
                app.update(&ids[n % ids.len()], json!({ "stockQuantity": n % 7 + 1 }))
                    .await
                    .ok();
            }
        })
    };
    let readers: Vec<_> = (0..8)
        .map(|r| {
            let (app, ids) = (app.clone(), ids.clone());
            tokio::spawn(async move {
                let mut bypassed = 0;
                for n in 0..400 {
                    let id = &ids[(n * 7 + r) % ids.len()];
                    let r = app.product(id).await;
                    if r.x_cache() == "BYPASS" {
                        let why = app.catalog.cache().untrusted_reason();
                        eprintln!("bypassed read: {why:?}: {}", r.body);
                        bypassed += 1;
                    }
                }
                bypassed
            })
        })
        .collect();
    writer.await.unwrap();
    let mut bypassed = 0;
    for r in readers {
        bypassed += r.await.unwrap();
    }
    assert_eq!(bypassed, 0, "reads went around a healthy Redis");
    // Nor did a history check take it for one (its epoch would have jumped).
    assert_eq!(epoch().await, epoch_before, "a healthy Redis was retired");
    assert!(app.catalog.cache().is_trusted());
}

/// The invariant that makes a late invalidation harmless: a mark that Redis runs after
/// a pause, once its writer gave up and a newer write's mark already landed, changes
/// nothing it should not. Every write-side command only raises: a tombstone replaces
/// only an older version (a deletion is final), a list counter and the history counter
/// only go up, an epoch copy only rises, and a fill never goes below a tombstone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_side_command_only_raises_so_a_late_one_changes_nothing() {
    use larder::cache::{Cache, Kind, Mark};
    if redis_backend("every_write_side_command_only_raises").is_none() {
        return;
    }
    let redis = OwnRedis::start(OwnRedis::free_port()).await;
    let ttls = larder::config::CacheTtls {
        product: Duration::from_secs(60),
        category: Duration::from_secs(60),
        list: Duration::from_secs(60),
        absent: Duration::from_secs(60),
        jitter_percent: 0,
    };
    let cache = Cache::new(
        larder::config::CacheBackendKind::Redis,
        Some(&redis.url()),
        "late:",
        ttls,
        Duration::from_millis(500),
        Duration::from_millis(500),
        None,
        1,
    )
    .unwrap();
    cache.wait_connected(Duration::from_secs(2)).await;
    let port = redis.port;
    let get = |key: &str| redis_cli(port, &["GET", key]);
    let key = cache.keys.item(Kind::Product, 7);
    let mark = |version: i64, gone: bool| {
        vec![(
            Kind::Product,
            Mark {
                key: key.clone(),
                version,
                gone,
                ttl: Duration::from_secs(60),
            },
        )]
    };
    let counter = cache.keys.counter(0, "c1:price");
    let history = cache.keys.history(0);
    let number = |key: &str| get(key).parse::<u64>().unwrap();
    let price = ["c1:price".to_string()];

    // Version 5's invalidation lands; then version 3's, sent before a pause, runs late.
    cache.invalidate(mark(5, false), &price).await.unwrap();
    let (c5, h5) = (number(&counter), number(&history));
    cache.invalidate(mark(3, false), &price).await.unwrap();
    assert_eq!(
        get(&key),
        "P|5",
        "a late tombstone never lowers the version"
    );
    assert!(
        number(&counter) > c5 && number(&history) > h5,
        "counters only go up"
    );

    // A reader's fill of version 4 (read before the write) is refused by the tombstone;
    // one of version 5 is taken (so the refusal is the rule's, not a dropped fill).
    cache.history_passed(&cache.sessions(), &[Some(number(&history))], None);
    let fill = |version: i64| larder::cache::Fill {
        key: key.clone(),
        version,
        payload: format!("V|{version}|0|{{}}"),
        ttl: Duration::from_secs(60),
    };
    let tally = larder::cache::RequestTally::default();
    cache.fill(Kind::Product, vec![fill(4)], &tally).await;
    assert_eq!(get(&key), "P|5", "an older fill never replaces a tombstone");
    cache.fill(Kind::Product, vec![fill(5)], &tally).await;
    assert_eq!(get(&key), "V|5|0|{}");
    cache.invalidate(mark(4, false), &[]).await.unwrap();
    assert_eq!(
        get(&key),
        "V|5|0|{}",
        "nor does a late tombstone replace a newer row"
    );

    // A deletion is final: no late tombstone of any version brings the row back.
    cache.invalidate(mark(6, true), &[]).await.unwrap();
    cache.invalidate(mark(9, false), &[]).await.unwrap();
    assert_eq!(get(&key), "G|6");

    // The epoch only rises: a clear raises every copy, a late raise to a lower target
    // (the epoch jump after lost history) lowers nothing, and neither does its floor
    // for the history counter.
    let epoch = cache.clear().await.unwrap().unwrap();
    let h = number(&history);
    cache.jump_epoch(&[0]).await.unwrap();
    assert!(number(&cache.keys.epoch(0)) > epoch);
    assert!(number(&history) >= h);
}
