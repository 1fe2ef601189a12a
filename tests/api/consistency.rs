//! The consistency checker: several instances on one database and one cache, writers
//! updating a small hot set (stock, and one writer moving prices across a list filter's
//! boundary), readers of items and lists spread over the instances, every operation
//! timed on one monotonic clock. Checker: for every read R and acknowledged write W of
//! the same id, if W ended before R started, R must see W's version or a newer one; and
//! every read of the price-filtered list must hold exactly the products whose price was
//! settled inside the filter when the read began (no price write of theirs overlapping
//! the read). A test-only fault point widens the read-to-fill race, and two test-only
//! naive protocols (a plain delete after commit; list counters bumped before the
//! commit) must each make the checker fail.
//!
//! Short runs are part of the test suite. The full run (at least 100,000 reads and
//! 2,000 writes per scenario) is the same code with `LARDER_CONSISTENCY=full`:
//! `LARDER_CONSISTENCY=full cargo test --release --test api consistency -- --nocapture`.
use std::{
    collections::HashMap,
    io::Write,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use crate::helpers::{Backend, OwnRedis, TOKEN, TestApp, backends, spawn_app_with, spawn_sibling};

/// One recorded operation: when it ran and the (id, version) pairs it saw or wrote.
#[derive(Clone, Debug)]
struct Op {
    start: Duration,
    end: Duration,
    seen: Vec<(i64, i64)>,
}

/// A price write: whether it put the product inside the price-filtered list.
#[derive(Clone, Debug)]
struct Move {
    start: Duration,
    end: Duration,
    id: i64,
    version: i64,
    inside: bool,
}

/// A read of the price-filtered list: the ids it held.
#[derive(Clone, Debug)]
struct Members {
    start: Duration,
    end: Duration,
    ids: Vec<i64>,
}

#[derive(Default)]
struct Log {
    reads: Mutex<Vec<Op>>,
    writes: Mutex<Vec<Op>>,
    moves: Mutex<Vec<Move>>,
    members: Mutex<Vec<Members>>,
    failed_reads: AtomicU64,
    failed_writes: AtomicU64,
    /// Slowest read, in microseconds.
    slowest_read_us: AtomicU64,
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    reads: usize,
    list_reads: usize,
    writes: usize,
    stale: usize,
    /// Reads of the price-filtered list that held a settled product wrongly (or lacked one).
    wrong_members: usize,
    membership_reads: usize,
    worst_staleness_ms: f64,
    failed_reads: u64,
    failed_writes: u64,
    slowest_read_ms: f64,
}

impl Report {
    fn line(&self, scenario: &str) -> String {
        format!(
            "consistency {scenario}: {} reads ({} list reads), {} writes, {} stale reads, {} of {} filtered-list reads with wrong members, worst staleness {:.1} ms, {} failed reads, {} failed writes, slowest read {:.1} ms\n",
            self.reads,
            self.list_reads,
            self.writes,
            self.stale,
            self.wrong_members,
            self.membership_reads,
            self.worst_staleness_ms,
            self.failed_reads,
            self.failed_writes,
            self.slowest_read_ms
        )
    }
}

/// For every read and every acknowledged write of the same id that ended before the
/// read started, the read's version must be at least the write's.
fn check(reads: &[Op], writes: &[Op]) -> (usize, f64) {
    // Per id: (end, version) of each write, sorted by end, with a running max version.
    let mut by_id: HashMap<i64, Vec<(Duration, i64)>> = HashMap::new();
    for w in writes {
        for &(id, v) in &w.seen {
            by_id.entry(id).or_default().push((w.end, v));
        }
    }
    for list in by_id.values_mut() {
        list.sort();
    }
    let (mut stale, mut worst) = (0usize, Duration::ZERO);
    for r in reads {
        let mut read_is_stale = false;
        for &(id, seen) in &r.seen {
            let Some(list) = by_id.get(&id) else { continue };
            let before = list.partition_point(|(end, _)| *end < r.start);
            // The earliest-ending earlier write that the read should have seen.
            if let Some((end, _)) = list[..before].iter().find(|(_, v)| *v > seen) {
                read_is_stale = true;
                worst = worst.max(r.start - *end);
            }
        }
        stale += usize::from(read_is_stale);
    }
    (stale, worst.as_secs_f64() * 1000.0)
}

/// For every read of the price-filtered list, and every hot product whose price writes
/// all ended before the read began or started after it ended: the product is listed
/// exactly when its latest earlier price write put it inside (created outside).
fn check_members(members: &[Members], moves: &[Move], hot: &[i64]) -> usize {
    wrong_members(members, moves, hot).len()
}

/// The wrong reads, each as "read <start>..<end> ms: product <id> listed <bool>, its
/// last price write (ended <t> ms) put it inside <bool>", for the report.
fn wrong_members(members: &[Members], moves: &[Move], hot: &[i64]) -> Vec<String> {
    let mut by_id: HashMap<i64, Vec<&Move>> = HashMap::new();
    for m in moves {
        by_id.entry(m.id).or_default().push(m);
    }
    let mut out = Vec::new();
    for read in members {
        for id in hot {
            let moves = by_id.get(id).map(Vec::as_slice).unwrap_or_default();
            let settled = moves
                .iter()
                .all(|m| m.end < read.start || m.start > read.end);
            let last = moves
                .iter()
                .filter(|m| m.end < read.start)
                .max_by_key(|m| m.version);
            let inside = last.is_some_and(|m| m.inside);
            if settled && read.ids.contains(id) != inside {
                out.push(format!(
                    "read {:.1}..{:.1} ms: product {id} listed {}, last price write (v{}, ended {:.1} ms) put it inside {inside}",
                    read.start.as_secs_f64() * 1e3,
                    read.end.as_secs_f64() * 1e3,
                    !inside,
                    last.map_or(0, |m| m.version),
                    last.map_or(0.0, |m| m.end.as_secs_f64() * 1e3),
                ));
                break;
            }
        }
    }
    out
}

#[derive(Clone)]
struct Plan {
    reads: usize,
    writes: usize,
    readers: usize,
    writers: usize,
    hot: usize,
    max_time: Duration,
}

fn plan() -> Plan {
    if std::env::var("LARDER_CONSISTENCY").as_deref() == Ok("full") {
        Plan {
            reads: 100_000,
            writes: 2_000,
            readers: 24,
            writers: 4,
            hot: 20,
            max_time: Duration::from_secs(600),
        }
    } else {
        Plan {
            reads: 3_000,
            writes: 300,
            readers: 12,
            writers: 3,
            hot: 20,
            max_time: Duration::from_secs(60),
        }
    }
}

/// A fault scenario's plan: traffic until the scenario says stop.
fn until_stopped() -> Plan {
    Plan {
        reads: usize::MAX / 2,
        writes: usize::MAX / 2,
        ..plan()
    }
}

/// The cluster under test: `n` instances on one database and cache (one instance on the
/// embedded backend, whose cache is private to its process).
async fn cluster(b: &Backend, extra: &[(&str, &str)]) -> Vec<Arc<TestApp>> {
    let first = spawn_app_with(b, extra).await;
    let n = if b.redis_url().is_some() || extra.iter().any(|(k, _)| *k == "REDIS_URL") {
        3
    } else {
        1
    };
    let mut apps = vec![Arc::new(first)];
    for _ in 1..n {
        apps.push(Arc::new(spawn_sibling(&apps[0]).await));
    }
    apps
}

/// The hot set: `n` products in one category, so list reads return all of them.
async fn hot_set(app: &TestApp, n: usize) -> (Vec<i64>, String) {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            app.create(&format!("Hot {i:02}"), "1.00", "Hot", 1)
                .await
                .parse()
                .unwrap(),
        );
    }
    app.create("Cold", "1.00", "Cold", 1).await;
    let r = app.gql("{ categories { id name } }", json!({})).await;
    let cat = r.ok()["categories"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Hot")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    (ids, cat)
}

async fn post(app: &TestApp, admin: bool, body: &Value) -> Option<Value> {
    let mut req = app.client.post(format!("{}/graphql", app.base)).json(body);
    if admin {
        req = req.bearer_auth(TOKEN);
    }
    let v: Value = req.send().await.ok()?.json().await.ok()?;
    v["errors"].is_null().then_some(v)
}

/// Runs readers and writers until the plan's counts are reached; `during` runs alongside
/// (fault injection) and gets the shared stop flag.
async fn run<F, Fut>(apps: &[Arc<TestApp>], plan: &Plan, during: F) -> Report
where
    F: FnOnce(Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (ids, category) = hot_set(&apps[0], plan.hot).await;
    let log = Arc::new(Log::default());
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let reads_left = Arc::new(AtomicU64::new(plan.reads as u64));
    let writes_left = Arc::new(AtomicU64::new(plan.writes as u64));
    let mut tasks = Vec::new();
    for w in 0..plan.writers {
        let (apps, ids, log, stop, left) = (
            apps.to_vec(),
            ids.clone(),
            log.clone(),
            stop.clone(),
            writes_left.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = w;
            // The first writer moves prices across the filtered list's boundary (5.00).
            let moves_prices = w == 0;
            while !stop.load(Relaxed) && take(&left) {
                n += 7;
                let (app, id) = (&apps[n % apps.len()], ids[(n * 13) % ids.len()]);
                let inside = (n / 7) % 2 == 1;
                let input = if moves_prices {
                    format!(r#"price: "{}""#, if inside { "9.00" } else { "1.00" })
                } else {
                    format!("stockQuantity: {}", n % 50)
                };
                let body = json!({ "query": format!(r#"mutation {{ updateProduct(id: "{id}", input: {{ {input} }}) {{ version }} }}"#) });
                let start = t0.elapsed();
                match post(app, true, &body).await {
                    Some(v) => {
                        let version = v["data"]["updateProduct"]["version"].as_i64().unwrap();
                        let end = t0.elapsed();
                        log.writes.lock().unwrap().push(Op { start, end, seen: vec![(id, version)] });
                        if moves_prices {
                            log.moves.lock().unwrap().push(Move { start, end, id, version, inside });
                        }
                    }
                    None => {
                        log.failed_writes.fetch_add(1, Relaxed);
                    }
                }
            }
        }));
    }
    for r in 0..plan.readers {
        let (apps, ids, log, stop, left, category) = (
            apps.to_vec(),
            ids.clone(),
            log.clone(),
            stop.clone(),
            reads_left.clone(),
            category.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = r * 31;
            while !stop.load(Relaxed) && take(&left) {
                n += 1;
                let app = &apps[n % apps.len()];
                let list = n % 5 <= 1;
                let filtered = n % 5 == 1;
                let body = if filtered {
                    json!({ "query": format!(r#"{{ products(first: 50, filter: {{ categoryId: "{category}", minPrice: "5" }}) {{ nodes {{ id version }} }} }}"#) })
                } else if list {
                    json!({ "query": format!(r#"{{ products(first: 50, filter: {{ categoryId: "{category}" }}) {{ nodes {{ id version }} }} }}"#) })
                } else {
                    json!({ "query": format!(r#"{{ product(id: "{}") {{ id version }} }}"#, ids[(n * 7) % ids.len()]) })
                };
                let start = t0.elapsed();
                let answer = post(app, false, &body).await;
                let end = t0.elapsed();
                log.slowest_read_us.fetch_max((end - start).as_micros() as u64, Relaxed);
                let Some(v) = answer else {
                    log.failed_reads.fetch_add(1, Relaxed);
                    continue;
                };
                let nodes = if list { v["data"]["products"]["nodes"].clone() } else { json!([v["data"]["product"]]) };
                let seen: Vec<(i64, i64)> = nodes
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|p| !p.is_null())
                    .map(|p| (p["id"].as_str().unwrap().parse().unwrap(), p["version"].as_i64().unwrap()))
                    .collect();
                if filtered {
                    let ids = seen.iter().map(|(id, _)| *id).collect();
                    log.members.lock().unwrap().push(Members { start, end, ids });
                }
                log.reads.lock().unwrap().push(Op { start, end, seen });
            }
        }));
    }
    let watchdog = {
        let stop = stop.clone();
        let limit = plan.max_time;
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            stop.store(true, Relaxed);
        })
    };
    during(stop.clone()).await;
    for t in tasks {
        t.await.unwrap();
    }
    watchdog.abort();
    let reads = log.reads.lock().unwrap();
    let writes = log.writes.lock().unwrap();
    let (stale, worst) = check(&reads, &writes);
    let members = log.members.lock().unwrap();
    let wrong = wrong_members(&members, &log.moves.lock().unwrap(), &ids);
    for line in wrong.iter().take(5) {
        let _ = writeln!(std::io::stderr(), "consistency: wrong members: {line}");
    }
    let wrong_members = wrong.len();
    Report {
        reads: reads.len(),
        list_reads: reads.iter().filter(|r| r.seen.len() > 1).count(),
        writes: writes.len(),
        stale,
        wrong_members,
        membership_reads: members.len(),
        worst_staleness_ms: worst,
        failed_reads: log.failed_reads.load(Relaxed),
        failed_writes: log.failed_writes.load(Relaxed),
        slowest_read_ms: log.slowest_read_us.load(Relaxed) as f64 / 1000.0,
    }
}

/// Takes one operation from a budget; false once it is spent.
fn take(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// Prints a report line past libtest's capture, so every run shows its figures.
fn say(report: &Report, scenario: &str) {
    let _ = std::io::stderr()
        .lock()
        .write_all(report.line(scenario).as_bytes());
}

fn slow_fills(apps: &[Arc<TestApp>], max: Duration) {
    for a in apps {
        a.catalog.hooks().set_fill_delay(max);
    }
}

#[test]
fn the_checker_flags_exactly_the_reads_that_missed_an_earlier_write() {
    let ms = Duration::from_millis;
    let writes = vec![
        Op {
            start: ms(0),
            end: ms(10),
            seen: vec![(1, 2)],
        },
        Op {
            start: ms(20),
            end: ms(30),
            seen: vec![(1, 3)],
        },
    ];
    let reads = vec![
        Op {
            start: ms(5),
            end: ms(6),
            seen: vec![(1, 1)],
        }, // overlaps the first write: fine
        Op {
            start: ms(15),
            end: ms(16),
            seen: vec![(1, 2)],
        }, // fine
        Op {
            start: ms(40),
            end: ms(41),
            seen: vec![(1, 2)],
        }, // missed version 3: stale by 10 ms
        Op {
            start: ms(50),
            end: ms(51),
            seen: vec![(2, 1), (1, 1)],
        }, // list read, stale by 40 ms
    ];
    let (stale, worst) = check(&reads, &writes);
    assert_eq!((stale, worst), (2, 40.0));
}

#[test]
fn the_membership_check_judges_only_settled_products() {
    let ms = Duration::from_millis;
    let moves = vec![
        // Product 1 moved inside at 0-10 ms; product 2 moves inside at 30-40 ms.
        Move {
            start: ms(0),
            end: ms(10),
            id: 1,
            version: 2,
            inside: true,
        },
        Move {
            start: ms(30),
            end: ms(40),
            id: 2,
            version: 2,
            inside: true,
        },
    ];
    let read = |start, end, ids: &[i64]| Members {
        start: ms(start),
        end: ms(end),
        ids: ids.to_vec(),
    };
    let members = vec![
        read(5, 8, &[]),    // 1 unsettled, 2 outside: fine
        read(20, 25, &[1]), // right
        read(20, 25, &[]),  // 1 missing: wrong
        read(35, 38, &[1]), // 2 unsettled: fine either way
        read(35, 38, &[1, 2]),
        read(50, 55, &[1]),       // 2 missing: wrong
        read(50, 55, &[1, 2, 3]), // 3 is not hot: ignored
    ];
    assert_eq!(check_members(&members, &moves, &[1, 2]), 2);
}

/// A steady-state run did (nearly) all its work, with nothing stale and nothing failed.
fn assert_clean(report: &Report, p: &Plan) {
    assert!(
        report.reads >= p.reads * 9 / 10 && report.writes >= p.writes * 9 / 10,
        "{report:?}"
    );
    assert_eq!(
        (
            report.stale,
            report.wrong_members,
            report.failed_reads,
            report.failed_writes
        ),
        (0, 0, 0, 0),
        "{report:?}"
    );
}

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
    let b = crate::helpers::redis_backend(test)?;
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
    let Some(b) = crate::helpers::redis_backend("the_server_starts_while_redis_is_down") else {
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
    let Some(b) = crate::helpers::redis_backend("with_postgres_down") else {
        return;
    };
    let app = spawn_app_with(&b, &[]).await;
    let cached = app.create("Cached", "1.00", "C", 1).await;
    let uncached = app.create("Uncached", "1.00", "C", 1).await;
    app.product(&cached).await.ok();
    assert_eq!(app.product(&cached).await.x_cache(), "HIT");

    database_reachable(&app, &b, false).await;
    for _ in 0..3 {
        let r = app.product(&cached).await;
        assert_eq!(
            (r.ok()["product"]["name"].as_str(), r.x_cache()),
            (Some("Cached"), "HIT")
        );
    }
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
    let Some(b) = crate::helpers::redis_backend("a_cold_cache_under_load") else {
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
        "consistency cold cache under load: 300 requests in {:?}, {ok} answered, {refused} refused, slowest {slowest:?}, peak database connections {peak} (3 instances x pool 3)\n",
        started.elapsed()
    );
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
    assert!(peak <= 9, "database connections {peak} exceeded the pools");
    assert!(slowest < Duration::from_secs(3), "{slowest:?}");
    assert!(ok > 0);
}

/// The steady-state scenario on a Redis Cluster of the test's own (3 instances).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_redis_cluster_no_read_on_any_instance_misses_an_acknowledged_write() {
    let Some(b) = crate::helpers::redis_backend("consistency on a cluster") else {
        return;
    };
    let redis = crate::helpers::OwnCluster::start().await;
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
    let Some(b) = crate::helpers::redis_backend("cluster master killed") else {
        return;
    };
    let redis = Arc::new(tokio::sync::Mutex::new(
        crate::helpers::OwnCluster::start().await,
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
