//! The checker: records every operation of a run (its start and end on one monotonic
//! clock, the (id, version) pairs it saw or wrote), drives the run (writers on a hot
//! set: stock changes, and one writer moving prices across a list filter's boundary;
//! readers of items and lists spread over the instances), and judges it: for every read
//! R and acknowledged write W of the same id, if W ended before R started, R must see
//! W's version or a newer one; and every read of the price-filtered list must hold
//! exactly the products whose price was settled inside the filter when it began. Its
//! own tests show it flags exactly the reads it must.
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

use crate::harness::{Backend, TOKEN, TestApp, spawn_app_with, spawn_sibling};
/// One recorded operation: when it ran and the (id, version) pairs it saw or wrote.
#[derive(Clone, Debug)]
pub(super) struct Op {
    pub(super) start: Duration,
    pub(super) end: Duration,
    pub(super) seen: Vec<(i64, i64)>,
}

/// A price write: whether it put the product inside the price-filtered list.
#[derive(Clone, Debug)]
pub(super) struct Move {
    pub(super) start: Duration,
    pub(super) end: Duration,
    pub(super) id: i64,
    pub(super) version: i64,
    pub(super) inside: bool,
}

/// A read of the price-filtered list: the ids it held.
#[derive(Clone, Debug)]
pub(super) struct Members {
    pub(super) start: Duration,
    pub(super) end: Duration,
    pub(super) ids: Vec<i64>,
}

#[derive(Default)]
pub(super) struct Log {
    pub(super) reads: Mutex<Vec<Op>>,
    pub(super) writes: Mutex<Vec<Op>>,
    pub(super) moves: Mutex<Vec<Move>>,
    pub(super) members: Mutex<Vec<Members>>,
    pub(super) failed_reads: AtomicU64,
    pub(super) failed_writes: AtomicU64,
    /// Reads answered from the cache outside the promise (`covered: false`).
    pub(super) uncovered_reads: AtomicU64,
    /// Slowest read, in microseconds.
    pub(super) slowest_read_us: AtomicU64,
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Report {
    pub(super) reads: usize,
    pub(super) list_reads: usize,
    pub(super) writes: usize,
    pub(super) stale: usize,
    /// Reads of the price-filtered list that held a settled product wrongly (or lacked one).
    pub(super) wrong_members: usize,
    pub(super) membership_reads: usize,
    pub(super) worst_staleness_ms: f64,
    pub(super) failed_reads: u64,
    pub(super) failed_writes: u64,
    pub(super) uncovered_reads: u64,
    pub(super) slowest_read_ms: f64,
}

impl Report {
    fn line(&self, scenario: &str) -> String {
        format!(
            "consistency {scenario}: {} reads ({} list reads), {} writes, {} stale reads, {} of {} filtered-list reads with wrong members, worst staleness {:.1} ms, {} failed reads, {} failed writes, {} uncovered reads, slowest read {:.1} ms\n",
            self.reads,
            self.list_reads,
            self.writes,
            self.stale,
            self.wrong_members,
            self.membership_reads,
            self.worst_staleness_ms,
            self.failed_reads,
            self.failed_writes,
            self.uncovered_reads,
            self.slowest_read_ms
        )
    }
}

/// For every read and every acknowledged write of the same id that ended before the
/// read started, the read's version must be at least the write's.
pub(super) fn check(reads: &[Op], writes: &[Op]) -> (usize, f64) {
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
            if let Some((end, v)) = list[..before].iter().find(|(_, v)| *v > seen) {
                read_is_stale = true;
                worst = worst.max(r.start - *end);
                if std::env::var("LARDER_CHECKER_DEBUG").is_ok() {
                    eprintln!(
                        "stale: product {id} read v{seen} at {:?}..{:?}; v{v} acknowledged at {:?}",
                        r.start, r.end, end
                    );
                }
            }
        }
        stale += usize::from(read_is_stale);
    }
    (stale, worst.as_secs_f64() * 1000.0)
}

/// For every read of the price-filtered list, and every hot product whose price writes
/// all ended before the read began or started after it ended: the product is listed
/// exactly when its latest earlier price write put it inside (created outside).
pub(super) fn check_members(members: &[Members], moves: &[Move], hot: &[i64]) -> usize {
    wrong_members(members, moves, hot).len()
}

/// The wrong reads, each as "read <start>..<end> ms: product <id> listed <bool>, its
/// last price write (ended <t> ms) put it inside <bool>", for the report.
pub(super) fn wrong_members(members: &[Members], moves: &[Move], hot: &[i64]) -> Vec<String> {
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
pub(super) struct Plan {
    pub(super) reads: usize,
    pub(super) writes: usize,
    pub(super) readers: usize,
    pub(super) writers: usize,
    pub(super) hot: usize,
    pub(super) max_time: Duration,
    /// The one instance every write goes through (`None`: spread over all).
    pub(super) write_via: Option<usize>,
    /// An instance no read goes through (`None`: reads spread over all).
    pub(super) read_around: Option<usize>,
}

pub(super) fn plan() -> Plan {
    if std::env::var("LARDER_CONSISTENCY").as_deref() == Ok("full") {
        Plan {
            reads: 100_000,
            writes: 2_000,
            readers: 24,
            writers: 4,
            hot: 20,
            max_time: Duration::from_secs(600),
            write_via: None,
            read_around: None,
        }
    } else {
        Plan {
            reads: 3_000,
            writes: 300,
            readers: 12,
            writers: 3,
            hot: 20,
            max_time: Duration::from_secs(60),
            write_via: None,
            read_around: None,
        }
    }
}

/// A fault scenario's plan: traffic until the scenario says stop.
pub(super) fn until_stopped() -> Plan {
    Plan {
        reads: usize::MAX / 2,
        writes: usize::MAX / 2,
        ..plan()
    }
}

/// The cluster under test: `n` instances on one database and cache (one instance on the
/// embedded backend, whose cache is private to its process).
pub(super) async fn cluster(b: &Backend, extra: &[(&str, &str)]) -> Vec<Arc<TestApp>> {
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
pub(super) async fn hot_set(app: &TestApp, n: usize) -> (Vec<i64>, String) {
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

pub(super) async fn post(app: &TestApp, admin: bool, body: &Value) -> Option<Value> {
    let mut req = app.client.post(format!("{}/graphql", app.base)).json(body);
    if admin {
        req = req.bearer_auth(TOKEN);
    }
    let v: Value = req.send().await.ok()?.json().await.ok()?;
    if !v["errors"].is_null() && std::env::var("LARDER_CHECKER_DEBUG").is_ok() {
        eprintln!("failed: {}", v["errors"]);
    }
    v["errors"].is_null().then_some(v)
}

/// Runs readers and writers until the plan's counts are reached; `during` runs alongside
/// (fault injection) and gets the shared stop flag.
pub(super) async fn run<F, Fut>(apps: &[Arc<TestApp>], plan: &Plan, during: F) -> Report
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
        let via = plan.write_via;
        tasks.push(tokio::spawn(async move {
            let mut n = w;
            // The first writer moves prices across the filtered list's boundary (5.00).
            let moves_prices = w == 0;
            while !stop.load(Relaxed) && take(&left) {
                n += 7;
                let app = &apps[via.unwrap_or(n % apps.len())];
                let id = ids[(n * 13) % ids.len()];
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
        let around = plan.read_around;
        tasks.push(tokio::spawn(async move {
            let mut n = r * 31;
            while !stop.load(Relaxed) && take(&left) {
                n += 1;
                let mut i = n % apps.len();
                if around == Some(i) {
                    i = (i + 1) % apps.len();
                }
                let app = &apps[i];
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
                if v["extensions"]["cache"]["covered"] == false {
                    log.uncovered_reads.fetch_add(1, Relaxed);
                }
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
        uncovered_reads: log.uncovered_reads.load(Relaxed),
        slowest_read_ms: log.slowest_read_us.load(Relaxed) as f64 / 1000.0,
    }
}

/// Takes one operation from a budget; false once it is spent.
pub(super) fn take(budget: &AtomicU64) -> bool {
    budget
        .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// Prints a report line past libtest's capture, so every run shows its figures.
pub(super) fn say(report: &Report, scenario: &str) {
    let _ = std::io::stderr()
        .lock()
        .write_all(report.line(scenario).as_bytes());
}

pub(super) fn slow_fills(apps: &[Arc<TestApp>], max: Duration) {
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
pub(super) fn assert_clean(report: &Report, p: &Plan) {
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
