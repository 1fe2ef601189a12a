//! The scenarios of the trust lease: every way an invalidation can fail to reach Redis
//! in time, each through three instances on a Redis of the test's own, with concurrent
//! readers and writers, judged by the checker (0 reads older than an acknowledged
//! write). Redis stalled past the writers' patience again and again (paused, or out of
//! every instance's reach and back one connection after another); only the writer's
//! connection to Redis cut (a proxy the test owns); Redis refusing writes at
//! `maxmemory`; instances of two cache layouts on one Redis. The first three also run
//! with the lease unchecked (the protocol before it), which must serve stale reads. A
//! writer killed between commit and delivery acknowledged nothing: there the figure is
//! the time from the kill to the last old read anywhere.
use std::{
    io::Write,
    sync::{Arc, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use serde_json::json;

use super::{checker::*, own_redis_cluster};
use crate::fixtures::{OwnRedis, Proxy, cli};
use crate::harness::{TOKEN, TestApp, redis_backend, spawn_app_with, start};

/// While Redis stalls, every read goes to Postgres, and on a two-core machine that runs
/// other tests too, a pooled connection can take longer than the default 750 ms to come
/// free, and many instances' pools can reach Postgres's `max_connections`. These
/// scenarios judge staleness, and a read that fails is counted as a failure, so the
/// pools are small and patient.
const PATIENT_POOL: [(&str, &str); 2] = [("DB_TIMEOUT_MS", "2500"), ("DB_MAX_CONNECTIONS", "6")];

fn with_patient_pool(redis_url: &str) -> Vec<(&str, &str)> {
    let mut settings = vec![("REDIS_URL", redis_url)];
    settings.extend(PATIENT_POOL);
    settings
}

/// Runs `scenario` with the lease checked (must be clean), then unchecked until a round
/// serves a stale read (up to five rounds; the window of the protocol without a lease
/// depends on when a replayer delivers, and a round found one in most runs here): the
/// lease is what keeps it clean.
async fn clean_and_caught<F, Fut>(what: &str, scenario: F)
where
    F: Fn(bool) -> Fut,
    Fut: Future<Output = Option<Report>>,
{
    let Some(report) = scenario(false).await else {
        return;
    };
    say(&report, what);
    assert!(report.writes >= 20, "{report:?}");
    assert_eq!(
        (
            report.stale,
            report.wrong_members,
            report.failed_reads,
            report.failed_writes,
            report.uncovered_reads
        ),
        (0, 0, 0, 0, 0),
        "{report:?}"
    );
    let mut caught = Report::default();
    for round in 1..=5 {
        caught = scenario(true).await.expect("ran once");
        say(
            &caught,
            &format!("{what}, lease unchecked (round {round}, must be caught)"),
        );
        if caught.stale + caught.wrong_members > 0 {
            return;
        }
    }
    panic!("without the lease, {what} must serve stale reads: {caught:?}");
}

fn unchecked(apps: &[Arc<TestApp>], naive: bool) {
    for a in apps {
        a.catalog.set_naive_lease(naive);
    }
}

/// Three instances, each reaching the test's own Redis through a proxy of its own.
async fn behind_proxies(test: &str) -> Option<(Vec<Arc<TestApp>>, OwnRedis, Vec<Arc<Proxy>>)> {
    let b = redis_backend(test)?;
    let redis = OwnRedis::start(OwnRedis::free_port()).await;
    let mut proxies = Vec::new();
    for _ in 0..3 {
        proxies.push(Arc::new(Proxy::start(redis.port).await));
    }
    let first = spawn_app_with(&b, &with_patient_pool(&proxies[0].url())).await;
    let mut apps = vec![Arc::new(first)];
    for p in &proxies[1..] {
        let mut settings = apps[0].settings.clone();
        settings.insert("REDIS_URL".into(), p.url());
        apps.push(Arc::new(start(&b, settings).await));
    }
    Some((apps, redis, proxies))
}

/// A stall past the writers' patience, eight times in one run, two ways: Redis paused
/// (`SIGSTOP`: a fork, a stalled VM), and Redis unreachable from every instance at once
/// and reachable again one connection after another, 300 ms apart in a random order (a
/// network blip, after which each TCP connection retransmits on its own backed-off
/// schedule; Linux's smallest retransmission timeout is 200 ms). In
/// the second, a writer's mark that was sent during the stall may reach Redis after
/// reads sent once its mutation had returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stalled_past_the_patience_again_and_again_serves_nothing_stale() {
    clean_and_caught(
        "redis stalled about 1.6 s eight times (paused; unreachable, back in a random order)",
        |naive| async move {
            let (apps, redis, proxies) = behind_proxies("redis_stalled_past_the_patience").await?;
            unchecked(&apps, naive);
            let report = run(&apps, &until_stopped(), |stop| async move {
                tokio::time::sleep(Duration::from_millis(800)).await;
                for cycle in 0..8 {
                    let paused = cycle % 2 == 0;
                    if paused {
                        redis.pause(true);
                    } else {
                        proxies.iter().for_each(|p| p.cut(true));
                    }
                    tokio::time::sleep(jittered(1600)).await;
                    if paused {
                        redis.pause(false);
                    } else {
                        let mut order: Vec<usize> = (0..proxies.len()).collect();
                        let shift = rand::random_range(0..order.len());
                        order.rotate_left(shift);
                        if rand::random::<bool>() {
                            order.reverse();
                        }
                        for i in order {
                            proxies[i].cut(false);
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                    }
                    tokio::time::sleep(jittered(1000)).await;
                }
                stop.store(true, Relaxed);
            })
            .await;
            Some(report)
        },
    )
    .await;
}

/// `ms` milliseconds, give or take a quarter at random: faults that come at a fixed
/// rhythm would meet the replayers' once-a-second rounds at the same phase every time.
fn jittered(ms: u64) -> Duration {
    Duration::from_millis(rand::random_range(ms * 3 / 4..=ms * 5 / 4))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_writers_connection_to_redis_cut_serves_nothing_stale() {
    clean_and_caught(
        "the writer's connection to redis cut about 1.6 s six times",
        |naive| async move {
            let b = redis_backend("only_the_writers_connection_to_redis_cut")?;
            let redis = OwnRedis::start(OwnRedis::free_port()).await;
            let proxy = Arc::new(Proxy::start(redis.port).await);
            // The writer reaches Redis through the proxy; the readers directly.
            let writer = spawn_app_with(&b, &with_patient_pool(&proxy.url())).await;
            let mut direct = writer.settings.clone();
            direct.insert("REDIS_URL".into(), redis.url());
            let apps = vec![
                Arc::new(writer),
                Arc::new(start(&b, direct.clone()).await),
                Arc::new(start(&b, direct).await),
            ];
            unchecked(&apps, naive);
            // Writes go through the cut-off instance and reads through the others:
            // a reader through it would spend the cut waiting out its read budget.
            let plan = Plan {
                write_via: Some(0),
                read_around: Some(0),
                writers: 4,
                ..until_stopped()
            };
            let p = proxy.clone();
            let report = run(&apps, &plan, |stop| async move {
                tokio::time::sleep(Duration::from_millis(800)).await;
                for _ in 0..6 {
                    p.cut(true);
                    tokio::time::sleep(jittered(1600)).await;
                    p.cut(false);
                    tokio::time::sleep(jittered(1000)).await;
                }
                stop.store(true, Relaxed);
            })
            .await;
            drop(redis);
            Some(report)
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_refusing_writes_at_maxmemory_serves_nothing_stale() {
    clean_and_caught(
        "redis at maxmemory (noeviction) 3 s twice",
        |naive| async move {
            let (apps, redis) =
                own_redis_cluster("redis_refusing_writes_at_maxmemory", &[]).await?;
            unchecked(&apps, naive);
            let port = redis.port;
            let report = run(&apps, &until_stopped(), |stop| async move {
                cli(port, &["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
                for _ in 0..2 {
                    tokio::time::sleep(Duration::from_millis(800)).await;
                    // Any write that needs memory is refused: `used_memory` > 1 byte.
                    cli(port, &["CONFIG", "SET", "maxmemory", "1"]);
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    cli(port, &["CONFIG", "SET", "maxmemory", "0"]);
                }
                tokio::time::sleep(Duration::from_millis(1500)).await;
                stop.store(true, Relaxed);
            })
            .await;
            drop(redis);
            Some(report)
        },
    )
    .await;
}

/// The cache layout one instance reports in `/ready`'s reason.
async fn reason(app: &TestApp) -> String {
    app.get_json("/ready").await["cache"]["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_of_another_layout_neither_reads_nor_writes_the_cache_and_nothing_is_stale() {
    let Some(b) = redis_backend("an_instance_of_another_layout") else {
        return;
    };
    let redis = OwnRedis::start(OwnRedis::free_port()).await;
    // An instance of an older layout first: it records its layout (1) and uses the cache.
    let old = spawn_app_with(
        &b,
        &[
            ("REDIS_URL", &redis.url()),
            ("LARDER_TEST_CACHE_LAYOUT", "1"),
        ],
    )
    .await;
    let id = old.create("Old layout", "1.00", "L", 1).await;
    old.product(&id).await.ok();
    assert_eq!(
        old.product(&id).await.x_cache(),
        "HIT",
        "layout 1 alone uses the cache"
    );
    // Then two of this build's layout (2): the first takes the record over, and both
    // trust the cache once every lease of layout 1 has expired.
    let mut current = old.settings.clone();
    current.remove("LARDER_TEST_CACHE_LAYOUT");
    let new1 = Arc::new(start(&b, current.clone()).await);
    let new2 = Arc::new(start(&b, current).await);
    let old = Arc::new(old);
    let settled = Instant::now();
    while !(new1.catalog.cache().is_trusted() && new2.catalog.cache().is_trusted()) {
        assert!(
            settled.elapsed() < Duration::from_secs(5),
            "{}",
            reason(&new1).await
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The old instance has renewed since (every half lease) and stepped off.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let why = reason(&old).await;
    assert!(
        why.contains("layout 2") && why.contains("speaks 1"),
        "{why}"
    );
    let r = old.product(&id).await;
    assert_eq!((r.x_cache(), r.round_trips()), ("BYPASS", 0), "{}", r.body);

    // Every command Redis runs from here on, to see whose keys they name.
    let monitor_out = std::env::temp_dir().join(format!("larder-monitor-{}", redis.port));
    let mut monitor = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "MONITOR"])
        .stdout(std::fs::File::create(&monitor_out).unwrap())
        .spawn()
        .expect("redis-cli");
    tokio::time::sleep(Duration::from_millis(200)).await;
    old.admin("mutation { resetCacheStats { hits } }", json!({}))
        .await
        .ok();
    // The old instance last: `hot_set` creates through the first, and a write through an
    // instance of another layout waits a lease before it answers.
    let apps = vec![new1.clone(), new2.clone(), old.clone()];
    let report = run(&apps, &plan(), |_| async {}).await;
    say(&report, "instances of layouts 2, 2 and 1 on one redis");
    let _ = monitor.kill();
    let _ = monitor.wait();
    let seen = std::fs::read_to_string(&monitor_out).unwrap_or_default();
    let _ = std::fs::remove_file(&monitor_out);
    let prefix = &old.settings["CACHE_PREFIX"];
    let old_keys = seen
        .lines()
        .filter(|l| l.contains(&format!("{prefix}L1:")))
        .count();
    let new_keys = seen
        .lines()
        .filter(|l| l.contains(&format!("{{{prefix}}}p:")))
        .count();
    assert_eq!(old_keys, 0, "the layout-1 instance touched its keys");
    assert!(
        new_keys > 100,
        "the layout-2 instances used the cache: {new_keys}"
    );
    let stats = old
        .gql(
            "{ cacheStats { hits entities { fills invalidations } } }",
            json!({}),
        )
        .await;
    let stats = &stats.ok()["cacheStats"];
    let sum = |field: &str| -> i64 {
        stats["entities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e[field].as_i64().unwrap())
            .sum()
    };
    assert_eq!(
        (stats["hits"].as_i64(), sum("fills"), sum("invalidations")),
        (Some(0), 0, 0),
        "the layout-1 instance read or wrote the cache: {stats}"
    );
    assert_clean(&report, &plan());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_killed_between_commit_and_delivery_is_covered_within_a_lease_and_a_half() {
    let Some(b) = redis_backend("a_writer_killed_between_commit_and_delivery") else {
        return;
    };
    let redis = OwnRedis::start(OwnRedis::free_port()).await;
    let proxy = Proxy::start(redis.port).await;
    let reader = spawn_app_with(&b, &[("REDIS_URL", &redis.url())]).await;
    let id = reader.create("Before", "1.00", "K", 1).await;
    reader.product(&id).await.ok();
    assert_eq!(reader.product(&id).await.x_cache(), "HIT");

    // The writer: a larder process of its own, reaching Redis only through the proxy.
    let port = OwnRedis::free_port();
    let mut writer = std::process::Command::new(env!("CARGO_BIN_EXE_larder"))
        .env_clear()
        .envs([
            ("DATABASE_URL", reader.settings["DATABASE_URL"].as_str()),
            ("REDIS_URL", proxy.url().as_str()),
            ("CACHE_BACKEND", "redis"),
            ("CACHE_PREFIX", reader.settings["CACHE_PREFIX"].as_str()),
            ("BIND_ADDR", &format!("127.0.0.1:{port}")),
            ("ADMIN_TOKEN", TOKEN),
            ("SEED_DEMO", "false"),
            ("RUST_LOG", "error"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the larder binary runs");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let up = Instant::now();
    while client.get(format!("{base}/ready")).send().await.is_err() {
        assert!(
            up.elapsed() < Duration::from_secs(20),
            "the writer did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.cut(true);
    let body = json!({ "query": format!(r#"mutation {{ updateProduct(id: "{id}", input: {{ name: "After" }}) {{ version }} }}"#) });
    let url = format!("{base}/graphql");
    let send = client.post(url).bearer_auth(TOKEN).json(&body).send();
    let answered = tokio::spawn(send);
    // Killed once its commit is visible, while it is still trying to reach Redis.
    let committed = Instant::now();
    loop {
        use sea_orm::{ConnectionTrait, Statement};
        let db = reader.catalog.db();
        let sql = format!("SELECT version FROM products WHERE id = {id}");
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        if row.try_get::<i32>("", "version").unwrap() == 2 {
            break;
        }
        assert!(committed.elapsed() < Duration::from_secs(5), "no commit");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    writer.kill().expect("SIGKILL the writer");
    let killed = Instant::now();
    let _ = writer.wait();
    assert!(answered.await.unwrap().is_err(), "a killed writer answered");

    let mut last_old = None;
    while killed.elapsed() < Duration::from_secs(3) {
        let r = reader.product(&id).await;
        match r.ok()["product"]["version"].as_i64() {
            Some(1) => last_old = Some(killed.elapsed()),
            Some(2) => {}
            other => panic!("version {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let lease = Duration::from_secs(1);
    let line = format!(
        "consistency: writer killed between commit and delivery: last old read {} after the kill (bound: lease period {} ms + 1 s)\n",
        last_old.map_or("none".to_string(), |d| format!(
            "{:.0} ms",
            d.as_secs_f64() * 1e3
        )),
        (lease / 2).as_millis(),
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    assert!(
        last_old.is_none_or(|d| d < lease / 2 + Duration::from_secs(1)),
        "{line}"
    );
}
