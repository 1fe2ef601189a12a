//! The consistency scenarios: several instances on one database and one cache under
//! concurrent writers and readers (`checker` runs and judges them), in steady state, with
//! fills delayed to hold the race open, and through faults (Redis stopped, paused,
//! rolled back to a snapshot; Postgres down; a cold cache under load; a Redis Cluster
//! losing a master). A test-only fault point widens the read-to-fill race, and two
//! test-only naive protocols (a plain delete after commit; list counters bumped before
//! the commit) must each make the checker fail.
//!
//! Short runs are part of the test suite. The full run (at least 100,000 reads and
//! 2,000 writes per scenario) is the same code with `LARDER_CONSISTENCY=full`, run as
//! `docs/consistency.md` shows (with both test URLs, or it covers the embedded backend
//! only).
mod checker;
mod hot;
mod stall;

use std::{
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use serde_json::json;

use crate::fixtures::OwnRedis;
use crate::harness::{Backend, TestApp, backends, spawn_app_with};
use checker::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_read_on_any_instance_misses_an_acknowledged_write() {
    for b in backends() {
        let apps = cluster(&b, &[]).await;
        slow_fills(&apps, Duration::from_millis(5));
        let p = plan();
        let report = run(&apps, &p, |_| async {}).await;
        say(
            &report,
            &format!(
                "steady state ({}, {} instances, fills delayed up to 5 ms)",
                b.name(),
                apps.len()
            ),
        );
        assert_clean(&report, &p);
    }
}

/// Runs the checker against a broken protocol (`break_it` on every instance) until a
/// round finds what `caught` counts, up to five rounds per backend: the race is random,
/// a round finds it almost always, and five never failed to.
async fn must_be_caught(
    what: &str,
    fill_delay: Duration,
    break_it: fn(&TestApp),
    caught: fn(&Report) -> usize,
) {
    for b in backends() {
        let mut found = Report::default();
        for round in 1..=5 {
            let apps = cluster(&b, &[]).await;
            slow_fills(&apps, fill_delay);
            for a in &apps {
                break_it(a);
            }
            found = run(&apps, &plan(), |_| async {}).await;
            say(
                &found,
                &format!("{what} ({}, round {round}, must be caught)", b.name()),
            );
            if caught(&found) > 0 {
                break;
            }
        }
        assert!(
            caught(&found) > 0,
            "the checker must catch {what}: {found:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_a_plain_delete_after_commit() {
    must_be_caught(
        "naive invalidation",
        Duration::from_millis(20),
        |a| a.catalog.hooks().set_naive_invalidation(true),
        |r| r.stale,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_list_counters_bumped_before_the_commit() {
    must_be_caught(
        "naive lists",
        Duration::from_millis(5),
        |a| a.catalog.hooks().set_naive_lists(true),
        |r| r.wrong_members,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hot_row_updated_from_ten_connections_keeps_every_list_page_right() {
    for b in backends() {
        let r = hot::hot_row(&b, 60, |_| {}).await;
        say_hot(&r, &format!("hot row ({})", b.name()));
        assert!(r.writes >= r.bursts * 8, "most writes acknowledged: {r:?}");
        assert!(r.wrong_pages.is_empty(), "{:#?}", r.wrong_pages);
        assert!(r.broken_chains.is_empty(), "{:#?}", r.broken_chains);
        if b.redis_url().is_some() {
            assert!(r.chained >= 100, "transitions judged: {r:?}");
        }
    }
}

fn say_hot(r: &hot::HotReport, what: &str) {
    let line = format!(
        "consistency: {what}: {} bursts, {} writes, {} wrong pages of {}, {} broken of {} chained transitions\n",
        r.bursts,
        r.writes,
        r.wrong_pages.len(),
        r.page_checks,
        r.broken_chains.len(),
        r.chained
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

/// Only the single-statement path (Postgres) has the naive mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_row_test_catches_an_update_that_reads_its_row_without_the_lock() {
    let Some(b) = crate::harness::redis_backend(
        "the_hot_row_test_catches_an_update_that_reads_its_row_without_the_lock",
    ) else {
        return;
    };
    let r = hot::hot_row(&b, 60, |a| a.catalog.hooks().set_naive_row_lock(true)).await;
    say_hot(
        &r,
        &format!("hot row, naive row lock ({}, must be caught)", b.name()),
    );
    assert!(
        !r.broken_chains.is_empty() || !r.wrong_pages.is_empty(),
        "the hot-row test must catch an update reading its row unlocked: {r:?}"
    );
}

/// The Postgres + Redis backend with a redis-server of the test's own, or `None`.
async fn own_redis_cluster(
    test: &str,
    extra: &[(&str, &str)],
) -> Option<(Vec<Arc<TestApp>>, OwnRedis)> {
    own_redis_cluster_in(test, extra, None).await
}

/// As `own_redis_cluster`, with the Redis keeping its snapshot in `dir` when given.
async fn own_redis_cluster_in(
    test: &str,
    extra: &[(&str, &str)],
    dir: Option<&std::path::Path>,
) -> Option<(Vec<Arc<TestApp>>, OwnRedis)> {
    let b = crate::harness::redis_backend(test)?;
    let port = OwnRedis::free_port();
    let redis = match dir {
        Some(dir) => OwnRedis::start_in(port, dir).await,
        None => OwnRedis::start(port).await,
    };
    let url = redis.url();
    let mut settings: Vec<(&str, &str)> = vec![("REDIS_URL", &url)];
    settings.extend_from_slice(extra);
    let apps = cluster(&b, &settings).await;
    Some((apps, redis))
}

async fn hit_rate(app: &TestApp) -> f64 {
    let r = app.gql("{ cacheStats { hits misses } }", json!({})).await;
    let s = &r.ok()["cacheStats"];
    let (h, m) = (s["hits"].as_f64().unwrap(), s["misses"].as_f64().unwrap());
    if h + m == 0.0 { 0.0 } else { h / (h + m) }
}

async fn reset_stats(apps: &[Arc<TestApp>]) {
    for a in apps {
        a.admin("mutation { resetCacheStats { hits } }", json!({}))
            .await
            .ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_and_restarted_mid_run_fails_no_read_and_serves_nothing_stale() {
    let Some((apps, mut redis)) =
        own_redis_cluster("redis_stopped_and_restarted_mid_run", &[]).await
    else {
        return;
    };
    slow_fills(&apps, Duration::from_millis(2));
    let probe = apps[1].clone();
    let recovered_in = Arc::new(Mutex::new(None::<Duration>));
    let recovered = recovered_in.clone();
    let restarted = Arc::new(tokio::sync::Mutex::new(None::<OwnRedis>));
    let restarted_slot = restarted.clone();
    let report = run(&apps, &until_stopped(), |stop| async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        reset_stats(std::slice::from_ref(&probe)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = hit_rate(&probe).await;
        redis.stop().await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        *restarted_slot.lock().await = Some(OwnRedis::start(redis.port).await);
        let back = Instant::now();
        reset_stats(std::slice::from_ref(&probe)).await;
        while back.elapsed() < Duration::from_secs(10) && !stop.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if hit_rate(&probe).await >= 0.8 * before {
                *recovered.lock().unwrap() = Some(back.elapsed());
                break;
            }
            reset_stats(std::slice::from_ref(&probe)).await;
        }
        stop.store(true, Relaxed);
    })
    .await;
    say(&report, "redis stopped 1.5 s and restarted");
    let recovered = *recovered_in.lock().unwrap();
    assert!(
        recovered.is_some(),
        "hit rate did not return to 80% of its level within 10 s: {report:?}"
    );
    assert_eq!(
        (report.stale, report.wrong_members, report.failed_reads),
        (0, 0, 0),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_rolled_back_to_an_older_snapshot_mid_run_serves_nothing_stale() {
    let dir =
        std::env::temp_dir().join(format!("larder-rollback-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let Some((apps, mut redis)) =
        own_redis_cluster_in("redis_rolled_back_mid_run", &[], Some(&dir)).await
    else {
        return;
    };
    slow_fills(&apps, Duration::from_millis(2));
    let (port, snapshot_dir) = (redis.port, dir.clone());
    let restarted = Arc::new(tokio::sync::Mutex::new(None::<OwnRedis>));
    let slot = restarted.clone();
    let report = run(&apps, &until_stopped(), |stop| async move {
        let t0 = Instant::now();
        tokio::time::sleep(Duration::from_millis(800)).await;
        let saved = std::process::Command::new("redis-cli")
            .args(["-p", &port.to_string(), "SAVE"])
            .output()
            .expect("redis-cli");
        assert!(String::from_utf8_lossy(&saved.stdout).contains("OK"));
        // Writes land after the snapshot; then Redis comes back without them.
        let saved_at = t0.elapsed();
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let killed_at = t0.elapsed();
        redis.stop().await;
        *slot.lock().await = Some(OwnRedis::start_in(port, &snapshot_dir).await);
        let _ = writeln!(
            std::io::stderr(),
            "consistency: rollback: saved {:.1} ms, killed {:.1} ms, back {:.1} ms",
            saved_at.as_secs_f64() * 1e3,
            killed_at.as_secs_f64() * 1e3,
            t0.elapsed().as_secs_f64() * 1e3
        );
        tokio::time::sleep(Duration::from_millis(2500)).await;
        stop.store(true, Relaxed);
    })
    .await;
    say(&report, "redis rolled back to a snapshot 1 s old");
    assert!(report.writes > 0, "{report:?}");
    assert_eq!((report.stale, report.wrong_members), (0, 0), "{report:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_mid_run_delays_no_read_past_its_budget_and_loses_no_invalidation() {
    let Some((apps, redis)) = own_redis_cluster("redis_paused_mid_run", &[]).await else {
        return;
    };
    let redis = Arc::new(redis);
    let r2 = redis.clone();
    let report = run(&apps, &until_stopped(), |stop| async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        r2.pause(true);
        tokio::time::sleep(Duration::from_secs(3)).await;
        r2.pause(false);
        tokio::time::sleep(Duration::from_secs(2)).await;
        stop.store(true, Relaxed);
    })
    .await;
    say(&report, "redis paused (SIGSTOP) 3 s");
    // A stalled Redis is waited out for the 500 ms read budget (slow is not down), then
    // the breaker sends reads to the database: budget plus database time, with room
    // for a loaded 2-core machine.
    assert!(report.slowest_read_ms < 1_500.0, "{report:?}");
    assert_eq!(report.failed_reads, 0, "{report:?}");
    assert!(
        report.worst_staleness_ms <= 1_000.0,
        "staleness goal 0, limit 1 s: {report:?}"
    );
    // Every invalidation recorded during the pause was delivered and its row deleted.
    let mut left = u64::MAX;
    for _ in 0..40 {
        left = apps[0].pending_outbox_rows().await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left, 0, "outbox not drained");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_starts_while_redis_is_down_and_caches_within_3_s_of_it_coming_up() {
    let Some(b) = crate::harness::redis_backend("the_server_starts_while_redis_is_down") else {
        return;
    };
    let port = OwnRedis::free_port();
    let url = format!("redis://127.0.0.1:{port}/");
    let app = spawn_app_with(&b, &[("REDIS_URL", &url)]).await;
    let id = app.create("Tea", "1.00", "C", 1).await;
    for _ in 0..5 {
        let r = app.product(&id).await;
        assert_eq!(
            (r.ok()["product"]["name"].as_str(), r.x_cache()),
            (Some("Tea"), "BYPASS")
        );
    }
    let _redis = OwnRedis::start(port).await;
    let up = Instant::now();
    loop {
        if app.product(&id).await.x_cache() == "HIT" {
            break;
        }
        assert!(
            up.elapsed() < Duration::from_secs(3),
            "no cache hit within 3 s of Redis starting"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Refuses new connections to the app's database and ends the open ones (`down`), or
/// allows them again: Postgres unreachable for this app, and only for it.
async fn database_reachable(app: &TestApp, b: &Backend, reachable: bool) {
    use sea_orm::{ConnectionTrait, Database};
    let Backend::PostgresRedis { pg, .. } = b else {
        unreachable!()
    };
    let db_name = app.settings["DATABASE_URL"]
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let admin = Database::connect(pg.as_str()).await.unwrap();
    admin
        .execute_unprepared(&format!(
            "ALTER DATABASE {db_name} ALLOW_CONNECTIONS {reachable}"
        ))
        .await
        .unwrap();
    if !reachable {
        admin
            .execute_unprepared(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db_name}' AND pid <> pg_backend_pid()"
            ))
            .await
            .unwrap();
    }
    let _ = admin.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_postgres_down_cached_reads_work_and_the_rest_fail_fast_and_cleanly() {
    let Some(b) = crate::harness::redis_backend("with_postgres_down") else {
        return;
    };
    let app = spawn_app_with(&b, &[]).await;
    let sibling = crate::harness::spawn_sibling(&app).await;
    let cached = app.create("Cached", "1.00", "C", 1).await;
    let uncached = app.create("Uncached", "1.00", "C", 1).await;
    for a in [&app, &sibling] {
        a.product(&cached).await.ok();
        assert_eq!(a.product(&cached).await.x_cache(), "HIT");
    }

    database_reachable(&app, &b, false).await;
    for _ in 0..3 {
        let r = app.product(&cached).await;
        assert_eq!(r.ok()["product"]["name"].as_str(), Some("Cached"));
    }
    // Ten seconds without Postgres: the trust leases run out (their renewals go through
    // Postgres), every read tries the database first, and once it fails the cache
    // answers, marked as not covered by the promise.
    let (down, mut uncovered) = (Instant::now(), 0);
    for i in 0..20 {
        let a = if i % 2 == 0 { &app } else { &sibling };
        let r = a.product(&cached).await;
        assert_eq!(
            r.ok()["product"]["name"].as_str(),
            Some("Cached"),
            "read {i}"
        );
        if r.cache()["covered"] == false {
            uncovered += 1;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(down.elapsed() >= Duration::from_secs(10));
    assert!(
        uncovered >= 16,
        "answers past the lease are marked uncovered: {uncovered}"
    );
    let ready = app.get_json("/ready").await;
    assert_eq!(ready["cache"]["lease"]["held"], false, "{ready}");
    let started = Instant::now();
    let r = app.product(&uncached).await;
    assert_eq!(r.code(), Some("DATABASE_UNAVAILABLE"), "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    let r = app.update(&cached, json!({ "name": "Changed" })).await;
    assert_eq!(r.code(), Some("DATABASE_UNAVAILABLE"), "{}", r.body);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    database_reachable(&app, &b, true).await;
    let mut recovered = false;
    for _ in 0..50 {
        let r = app.product(&uncached).await;
        if r.body["errors"].is_null() {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "reads did not recover after Postgres came back");
    // The failed mutation wrote nothing.
    let r = app.product(&cached).await;
    assert_eq!(
        (
            r.ok()["product"]["name"].as_str(),
            r.ok()["product"]["version"].as_i64()
        ),
        (Some("Cached"), Some(1))
    );
    assert_eq!(
        app.update(&cached, json!({ "name": "Changed" })).await.ok()["updateProduct"]["version"],
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_cache_under_load_keeps_database_concurrency_within_the_pool() {
    let Some(b) = crate::harness::redis_backend("a_cold_cache_under_load") else {
        return;
    };
    let apps = cluster(&b, &[("DB_MAX_CONNECTIONS", "3")]).await;
    let (ids, _) = hot_set(&apps[0], 40).await;
    let db_name = apps[0].settings["DATABASE_URL"]
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let Backend::PostgresRedis { pg, .. } = &b else {
        unreachable!()
    };
    let admin = sea_orm::Database::connect(pg.as_str()).await.unwrap();
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop, db_name) = (peak.clone(), stop.clone(), db_name.clone());
        tokio::spawn(async move {
            use sea_orm::{ConnectionTrait, Statement};
            while !stop.load(Relaxed) {
                let sql = format!(
                    "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE datname = '{db_name}'"
                );
                if let Ok(Some(row)) = admin
                    .query_one_raw(Statement::from_string(admin.get_database_backend(), sql))
                    .await
                {
                    peak.fetch_max(row.try_get::<i64>("", "n").unwrap_or(0) as u64, Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    apps[0]
        .admin("mutation { clearCache { cleared } }", json!({}))
        .await
        .ok();
    let started = Instant::now();
    let mut storm = Vec::new();
    for i in 0..300 {
        let app = apps[i % apps.len()].clone();
        let id = ids[i % ids.len()];
        storm.push(tokio::spawn(async move {
            let t = Instant::now();
            let r = app.product(&id.to_string()).await;
            (r.body, t.elapsed())
        }));
    }
    let (mut ok, mut refused, mut slowest) = (0, 0, Duration::ZERO);
    for t in storm {
        let (body, took) = t.await.unwrap();
        slowest = slowest.max(took);
        if body["errors"].is_null() {
            ok += 1;
        } else {
            // The read bound's explicit refusal, never a pool timeout.
            assert_eq!(
                body["errors"][0]["extensions"]["code"], "OVERLOADED",
                "{body}"
            );
            refused += 1;
        }
    }
    stop.store(true, Relaxed);
    sampler.await.unwrap();
    let peak = peak.load(Relaxed);
    let line = format!(
        "consistency cold cache under load: 300 requests in {:?}, {ok} answered, {refused} refused, slowest {slowest:?}, peak database connections {peak} (3 instances x (pool 3 + the trust lease's own))\n",
        started.elapsed()
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    assert!(peak <= 12, "database connections {peak} exceeded the pools");
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");
    assert!(ok > 0);
}

/// The steady-state scenario on a Redis Cluster of the test's own (3 instances).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_no_read_on_any_instance_misses_an_acknowledged_write() {
    let Some(b) = crate::harness::redis_backend("consistency on a cluster") else {
        return;
    };
    let redis = crate::fixtures::OwnCluster::start().await;
    let url = redis.url();
    let apps = cluster(&b, &[("REDIS_URL", &url)]).await;
    slow_fills(&apps, Duration::from_millis(5));
    let p = plan();
    let report = run(&apps, &p, |_| async {}).await;
    say(
        &report,
        "steady state (postgres + redis cluster, 3 instances)",
    );
    assert_clean(&report, &p);
}

/// A master killed with SIGKILL under concurrent reads and writes; its replica is
/// promoted after `cluster-node-timeout` (1.5 s). No read fails and none is stale; the
/// instances go back to the cache after the failover.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_master_killed_mid_run_fails_no_read_and_serves_nothing_stale() {
    let Some(b) = crate::harness::redis_backend("cluster master killed") else {
        return;
    };
    let redis = Arc::new(tokio::sync::Mutex::new(
        crate::fixtures::OwnCluster::start().await,
    ));
    let url = redis.lock().await.url();
    let apps = cluster(&b, &[("REDIS_URL", &url)]).await;
    slow_fills(&apps, Duration::from_millis(2));
    let probe = apps[1].clone();
    let recovered_in = Arc::new(Mutex::new(None::<Duration>));
    let recovered = recovered_in.clone();
    let cluster_ref = redis.clone();
    let report = run(&apps, &until_stopped(), |stop| async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        reset_stats(std::slice::from_ref(&probe)).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = hit_rate(&probe).await;
        let victim = cluster_ref.lock().await.masters()[0];
        cluster_ref.lock().await.kill(victim).await;
        let killed = Instant::now();
        cluster_ref
            .lock()
            .await
            .wait_ok(Duration::from_secs(15))
            .await;
        let failed_over = killed.elapsed();
        reset_stats(std::slice::from_ref(&probe)).await;
        while killed.elapsed() < Duration::from_secs(15) && !stop.load(Relaxed) {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if hit_rate(&probe).await >= 0.8 * before {
                *recovered.lock().unwrap() = Some(killed.elapsed());
                break;
            }
            reset_stats(std::slice::from_ref(&probe)).await;
        }
        let _ = std::io::stderr().lock().write_all(
            format!(
                "cluster master {victim} killed: failed over in {:.1} s, hit rate back to 80% of {before:.2} after {:?}\n",
                failed_over.as_secs_f64(),
                *recovered.lock().unwrap()
            )
            .as_bytes(),
        );
        stop.store(true, Relaxed);
    })
    .await;
    say(
        &report,
        "a cluster master killed (SIGKILL), replica promoted",
    );
    assert!(
        recovered_in.lock().unwrap().is_some(),
        "hit rate did not come back within 15 s of the kill: {report:?}"
    );
    assert_eq!(
        (report.stale, report.wrong_members, report.failed_reads),
        (0, 0, 0),
        "{report:?}"
    );
}
