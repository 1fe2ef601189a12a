//! Redis Cluster: a real cluster of 3 masters and 3 replicas per test (`OwnCluster`).
//! The keys of a warmed catalog spread over every master; a write through one
//! instance is seen through another at once, for items and list pages; with
//! persisted query documents spread by hash and are shared; with
//! `CACHE_WAIT_REPLICAS` a write waits for the replica of each node it touched. (The
//! consistency checker's cluster scenarios, steady state and a master killed mid-run,
//! are in `consistency`.)
use serde_json::json;

use crate::{
    fixtures::OwnCluster,
    harness::{TestApp, redis_backend, spawn_app_with, spawn_sibling},
    persisted::sha256,
};

/// Two instances on one Postgres database and the test's own cluster, or `None` when
/// this run has no Postgres + Redis backend.
async fn on_cluster(test: &str, extra: &[(&str, &str)]) -> Option<(TestApp, TestApp, OwnCluster)> {
    let b = redis_backend(test)?;
    let cluster = OwnCluster::start().await;
    let url = cluster.url();
    let mut settings = vec![("REDIS_URL", url.as_str())];
    settings.extend_from_slice(extra);
    let a = spawn_app_with(&b, &settings).await;
    let b = spawn_sibling(&a).await;
    for app in [&a, &b] {
        app.catalog
            .cache()
            .wait_trusted(std::time::Duration::from_secs(10))
            .await;
        assert!(app.catalog.cache().is_trusted(), "trusts the cluster");
    }
    Some((a, b, cluster))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warmed_catalog_spreads_over_every_master_none_above_60_percent() {
    let Some((a, _b, cluster)) = on_cluster("cluster spread", &[("SEED_DEMO", "true")]).await
    else {
        return;
    };
    // Every product, 20-item pages of every category, and the categories.
    for start in (1..=1000).step_by(50) {
        let ids: Vec<String> = (start..start + 50).map(|i| i.to_string()).collect();
        a.gql(
            "query($ids: [ID!]!) { productsByIds(ids: $ids) { id } }",
            json!({ "ids": ids }),
        )
        .await
        .ok();
    }
    let cats = a.gql("{ categories { id } }", json!({})).await;
    for c in cats.ok()["categories"].as_array().unwrap() {
        let q = format!(
            r#"{{ products(first: 20, filter: {{ categoryId: "{}" }}) {{ nodes {{ id category {{ name }} }} }} }}"#,
            c["id"].as_str().unwrap()
        );
        let r = a.gql(&q, json!({})).await;
        r.ok();
        // Read again: a page and its items are hits, one wave of commands.
        let again = a.gql(&q, json!({})).await;
        assert_eq!(again.sql(), 0, "{}", again.cache());
    }
    let per = cluster.keys_per_master();
    let total: u64 = per.iter().map(|(_, n)| n).sum();
    eprintln!("cluster spread: keys per master {per:?} of {total}");
    assert_eq!(per.len(), 3);
    assert!(total > 1000, "{per:?}");
    for (port, n) in &per {
        assert!(*n > 0, "master {port} holds nothing: {per:?}");
        assert!(
            *n * 100 <= total * 60,
            "master {port} holds {n} of {total}: {per:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_through_one_instance_is_seen_through_another_at_once_on_a_cluster() {
    let Some((a, b, _cluster)) = on_cluster("cluster cross-instance", &[]).await else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..20 {
        ids.push(a.create(&format!("Item {i:02}"), "5.00", "Tools", 10).await);
    }
    let page =
        r#"first: 50, filter: { minPrice: "4.00" }, orderBy: { field: NAME, direction: ASC }"#;
    // Warm both instances: items and a price-filtered page.
    for app in [&a, &b] {
        for id in &ids {
            app.product(id).await.ok();
        }
        assert_eq!(app.names(page).await.len(), 20);
        let hit = app.product(&ids[3]).await;
        assert_eq!(hit.sql(), 0, "{}", hit.cache());
    }
    for (n, id) in ids.iter().enumerate().take(8) {
        let name = format!("Renamed {n}");
        a.update(id, json!({ "name": name })).await.ok();
        let seen = b.product(id).await;
        assert_eq!(seen.ok()["product"]["name"], name, "item {id} through b");
    }
    // A price move out of the filter, then one back in: the page follows each at once.
    a.update(&ids[10], json!({ "price": "1.00" })).await.ok();
    assert_eq!(b.names(page).await.len(), 19);
    a.update(&ids[10], json!({ "price": "9.00" })).await.ok();
    assert_eq!(b.names(page).await.len(), 20);
    a.admin(
        "mutation($id: ID!) { deleteProduct(id: $id) { id } }",
        json!({ "id": ids[0] }),
    )
    .await
    .ok();
    assert!(b.product(&ids[0]).await.ok()["product"].is_null());
    assert_eq!(b.names(page).await.len(), 19);
    // clearCache through b retires what a cached, in every group.
    a.product(&ids[5]).await.ok();
    b.admin("mutation { clearCache { cleared } }", json!({}))
        .await
        .ok();
    let after = a.product(&ids[5]).await;
    assert_eq!(after.cache()["hits"]["product"], 0, "{}", after.cache());
    assert!(after.sql() >= 1, "{}", after.cache());
    // Persisted query documents, spread over the groups by hash: registered through a,
    // each is answered through b from the node that holds its group.
    let docs: Vec<String> = (0..32).map(|i| format!("{{ d{i}: __typename }}")).collect();
    for d in &docs {
        let r = a.post_registering(d, json!({})).await;
        assert!(
            r.body["extensions"]["persistedQuery"].is_null(),
            "{}",
            r.body
        );
    }
    for d in &docs {
        b.post_hash(&sha256(d), json!({})).await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_wait_replicas_a_write_returns_delivered_once_each_touched_node_replicated() {
    let Some((a, b, _cluster)) = on_cluster("cluster WAIT", &[("CACHE_WAIT_REPLICAS", "1")]).await
    else {
        return;
    };
    let id = a.create("Replicated", "5.00", "Tools", 10).await;
    b.product(&id).await.ok();
    for stock in 1..=5 {
        // A stock change (one group) and a price change (every group's counters).
        a.update(&id, json!({ "stockQuantity": stock })).await.ok();
        a.update(&id, json!({ "price": format!("{stock}.50") }))
            .await
            .ok();
    }
    assert_eq!(a.pending_outbox_rows().await, 0, "every row delivered");
    let seen = b.product(&id).await;
    assert_eq!(seen.ok()["product"]["price"], "5.50");
}

/// `redis-cli -c` (follows the cluster's redirects) against one node.
fn cli_c(port: u16, args: &[&str]) -> String {
    let mut all = vec!["-c"];
    all.extend_from_slice(args);
    crate::fixtures::cli(port, &all).trim_end().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_group_that_went_back_is_refused_at_once_and_caught_by_a_new_instance() {
    let Some((a, _b, cluster)) = on_cluster("cluster group rolled back", &[]).await else {
        return;
    };
    let id = a.create("Before", "5.00", "Tools", 10).await;
    a.product(&id).await.ok();
    let keys = a.catalog.cache().keys.clone();
    let key = keys.item(larder::cache::Kind::Product, id.parse().unwrap());
    let group = keys.group_of(&key);
    assert_ne!(group, 0, "a group other than the first");
    let hist = keys.history(group);
    let port = cluster.nodes[0].port;
    let (old_entry, old_hist) = (cli_c(port, &["get", &key]), cli_c(port, &["get", &hist]));
    assert!(old_entry.starts_with("V|1|"), "{old_entry}");
    // One group goes back to before a write (a replica promoted without it), as the
    // entry and history counter of that group only.
    let rollback = || {
        cli_c(port, &["set", &key, &old_entry, "px", "600000"]);
        cli_c(port, &["set", &hist, &old_hist]);
    };
    a.update(&id, json!({ "name": "After" })).await.ok();
    rollback();
    // The instance that saw the group's newer history refuses it at once.
    let seen = a.product(&id).await;
    assert_eq!(seen.ok()["product"]["name"], "After", "{}", seen.cache());
    // A new instance knows only what Postgres recorded for that group.
    a.update(&id, json!({ "name": "After again" })).await.ok();
    rollback();
    let c = spawn_sibling(&a).await;
    c.catalog
        .cache()
        .wait_trusted(std::time::Duration::from_secs(10))
        .await;
    let seen = c.product(&id).await;
    assert_eq!(
        seen.ok()["product"]["name"],
        "After again",
        "{}",
        seen.cache()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_master_sends_only_its_own_keys_to_the_database_until_its_replica_takes_over() {
    let bound = [("DB_MAX_CONNECTIONS", "6"), ("DB_READ_CONCURRENCY", "2")];
    let Some((a, _b, mut cluster)) = on_cluster("cluster master killed, scoped", &bound).await
    else {
        return;
    };
    let mut ids = Vec::new();
    for i in 0..32 {
        ids.push(
            a.create(&format!("Scoped {i:02}"), "5.00", "Tools", 10)
                .await,
        );
    }
    for id in &ids {
        a.product(id).await.ok();
        assert_eq!(a.product(id).await.sql(), 0, "warm");
    }
    // Which master holds each product's entry (a master answers EXISTS only for its slots).
    let keys = a.catalog.cache().keys.clone();
    let masters = cluster.masters();
    let owner = |id: &String| {
        let key = keys.item(larder::cache::Kind::Product, id.parse().unwrap());
        *masters
            .iter()
            .find(|&&p| crate::fixtures::cli(p, &["exists", &key]).trim() == "1")
            .expect("some master holds it")
    };
    let owners: Vec<u16> = ids.iter().map(owner).collect();
    let victim = owners[0];
    cluster.kill(victim).await;
    let killed = std::time::Instant::now();
    // Well inside the failover window (cluster-node-timeout 1.5 s): the other masters'
    // keys are still cache hits, the victim's are read from Postgres, all correct.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let (mut hits, mut from_db) = (0, 0);
    for (i, (id, &port)) in ids.iter().zip(&owners).enumerate() {
        let r = a.product(id).await;
        assert_eq!(r.ok()["product"]["name"], format!("Scoped {i:02}"));
        if port == victim {
            assert!(r.sql() >= 1, "the killed master's key {id}: {}", r.cache());
            from_db += 1;
        } else {
            assert_eq!(r.sql(), 0, "a live master's key {id}: {}", r.cache());
            hits += 1;
        }
    }
    // The victim's keys all at once: answered, at most DB_READ_CONCURRENCY at a time.
    let victims: Vec<&String> = ids
        .iter()
        .zip(&owners)
        .filter(|(_, p)| **p == victim)
        .map(|(id, _)| id)
        .collect();
    let burst = victims
        .iter()
        .cycle()
        .take(victims.len() * 4)
        .map(|id| a.product(id));
    for r in futures::future::join_all(burst).await {
        assert!(r.ok()["product"]["name"].is_string());
    }
    let peak = a.catalog.db_read_peak();
    let window = killed.elapsed();
    eprintln!(
        "cluster scoped: {hits} hits, {from_db} from Postgres, database reads at once at most {peak}, {window:?} after the kill"
    );
    assert!(hits > 0 && from_db > 0);
    assert!(peak <= 2, "database reads at once: {peak}");
    assert_eq!(
        cluster.masters().len(),
        2,
        "still inside the failover window"
    );
    // After the failover the victim's groups come back to the cache.
    cluster.wait_ok(std::time::Duration::from_secs(15)).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let back = ids
        .iter()
        .zip(&owners)
        .find(|(_, p)| **p == victim)
        .unwrap()
        .0;
    loop {
        let r = a.product(back).await;
        if r.sql() == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the victim's keys did not come back to the cache"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // The dead master's connection is closed, not retried forever: the store's session
    // (which retires replayable answers) stays put once the failover is over.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let session = a.catalog.cache().session();
    tokio::time::sleep(std::time::Duration::from_millis(4500)).await;
    assert_eq!(
        a.catalog.cache().session(),
        session,
        "a dead node keeps reconnecting"
    );
}
