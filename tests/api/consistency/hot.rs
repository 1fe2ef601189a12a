//! One hot row: a single product updated from ten connections at once, its stock
//! flipping between 0 and 5 and its price crossing the 5.00 filter bound, while readers
//! on every instance keep its list pages (`inStock`, `minPrice: "5"`, in its category
//! and across all products) cached. After each burst, once every write has been
//! acknowledged, every page on every instance must list the product exactly when its
//! row says so. An update that computes its list counters from a row it did not lock
//! (the test-only naive mode) sees a transition that did not happen (the row before a
//! concurrent update, not after it), misses a flip, and leaves a wrong page cached.
//!
//! A wrong page needs a reader to rebuild it in the millisecond between two commits, so
//! the pages alone catch the naive mode only now and then. With a shared cache the
//! test also judges the transitions themselves: each outbox row records the listed
//! fields before and after its write, and consecutive versions must chain (the "before"
//! of version v is the "after" of v - 1). Rows pruned meanwhile are skipped, never
//! guessed.
use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering::Relaxed},
};

use serde_json::{Value, json};

use super::checker::{cluster, post};
use crate::harness::{Backend, TestApp};

/// Concurrent writers of the hot row.
const WRITERS: usize = 10;
/// Readers keeping the pages cached, across the instances.
const READERS: usize = 8;
/// Updates each writer sends per burst: one, so that every burst is ten updates
/// queued on one row lock, and the last of them decides what the pages must show.
const PER_WRITER: usize = 1;

/// What a run found.
#[derive(Debug, Default)]
pub(super) struct HotReport {
    pub(super) bursts: usize,
    pub(super) writes: usize,
    pub(super) page_checks: usize,
    pub(super) wrong_pages: Vec<String>,
    /// Consecutive transitions compared, and those that did not chain.
    pub(super) chained: usize,
    pub(super) broken_chains: Vec<String>,
}

/// The hot row's outbox transitions (version, before, after) above `since`.
async fn transitions(app: &TestApp, id: &str, since: i64) -> Vec<(i64, Value, Value)> {
    use sea_orm::{ConnectionTrait, Statement};
    let db = app.catalog.db();
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT version, change FROM cache_outbox \
                 WHERE product_id = {id} AND version > {since} AND change IS NOT NULL \
                 ORDER BY version"
            ),
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| {
            let version: i64 = r.try_get("", "version").unwrap();
            let change: String = r.try_get("", "change").unwrap();
            let v: Value = serde_json::from_str(&change).unwrap();
            (version, v[0].clone(), v[1].clone())
        })
        .collect()
}

/// The pages that list the hot row depending on its stock or its price.
fn pages(category: &str) -> Vec<(String, &'static str)> {
    let shape = "{ nodes { id } }";
    vec![
        (
            format!(
                r#"{{ products(first: 100, filter: {{ categoryId: "{category}", inStock: true }}) {shape} }}"#
            ),
            "stock",
        ),
        (
            format!(r#"{{ products(first: 100, filter: {{ inStock: true }}) {shape} }}"#),
            "stock",
        ),
        (
            format!(
                r#"{{ products(first: 100, filter: {{ categoryId: "{category}", minPrice: "5" }}) {shape} }}"#
            ),
            "price",
        ),
        (
            format!(r#"{{ products(first: 100, filter: {{ minPrice: "5" }}) {shape} }}"#),
            "price",
        ),
    ]
}

fn listed(v: &Value, id: &str) -> bool {
    v["data"]["products"]["nodes"]
        .as_array()
        .is_some_and(|nodes| nodes.iter().any(|n| n["id"] == id))
}

/// `bursts` bursts of `WRITERS` x `PER_WRITER` concurrent updates of one product, with
/// `break_it` applied to every instance first.
pub(super) async fn hot_row(b: &Backend, bursts: usize, break_it: fn(&TestApp)) -> HotReport {
    let apps = cluster(b, &[]).await;
    for a in &apps {
        break_it(a);
    }
    let id = apps[0].create("Hot row", "1.00", "Hot row", 5).await;
    apps[0].create("Neighbour", "9.00", "Hot row", 5).await;
    let r = apps[0]
        .gql(
            &format!(r#"{{ product(id: "{id}") {{ category {{ id }} }} }}"#),
            json!({}),
        )
        .await;
    let category = r.ok()["product"]["category"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let pages = pages(&category);
    let mut report = HotReport::default();
    let mut checked = 0;
    for burst in 0..bursts {
        let done = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for r in 0..READERS {
            let (apps, pages, done) = (apps.clone(), pages.clone(), done.clone());
            readers.push(tokio::spawn(async move {
                let mut n = r;
                while !done.load(Relaxed) {
                    n += 1;
                    let body = json!({ "query": pages[n % pages.len()].0 });
                    post(&apps[n % apps.len()], false, &body).await;
                }
            }));
        }
        let mut writers = Vec::new();
        for w in 0..WRITERS {
            let (apps, id) = (apps.clone(), id.clone());
            writers.push(tokio::spawn(async move {
                let mut acknowledged = 0;
                for k in 0..PER_WRITER {
                    // Stock between 0 and 5, price between 1.00 and 9.00, one or both
                    // at a time: ten updates queued on one row lock flip them in an
                    // order no writer knows.
                    let n = burst * 131 + w * 17 + k * 7;
                    let stock = if (n / 3) % 2 == 0 { 0 } else { 5 };
                    let price = if (n / 5) % 2 == 0 { "1.00" } else { "9.00" };
                    let input = match n % 3 {
                        0 => format!("stockQuantity: {stock}"),
                        1 => format!(r#"price: "{price}""#),
                        _ => format!(r#"stockQuantity: {stock}, price: "{price}""#),
                    };
                    let body = json!({ "query": format!(r#"mutation {{ updateProduct(id: "{id}", input: {{ {input} }}) {{ version }} }}"#) });
                    if post(&apps[n % apps.len()], true, &body).await.is_some() {
                        acknowledged += 1;
                    }
                }
                acknowledged
            }));
        }
        for w in writers {
            report.writes += w.await.unwrap();
        }
        done.store(true, Relaxed);
        for r in readers {
            r.await.unwrap();
        }
        // Every write acknowledged: the row as it is now, and every page must agree.
        let row = apps[0]
            .gql(
                &format!(r#"{{ product(id: "{id}") {{ stockQuantity price version }} }}"#),
                json!({}),
            )
            .await;
        let row = row.ok()["product"].clone();
        let in_stock = row["stockQuantity"].as_i64().unwrap() > 0;
        let pricey = row["price"].as_str().unwrap().parse::<f64>().unwrap() >= 5.0;
        for (i, app) in apps.iter().enumerate() {
            for (query, field) in &pages {
                let want = if *field == "stock" { in_stock } else { pricey };
                let Some(v) = post(app, false, &json!({ "query": query })).await else {
                    continue;
                };
                report.page_checks += 1;
                if listed(&v, &id) != want {
                    report.wrong_pages.push(format!(
                        "burst {burst}, instance {i}: row {row} listed {} by {query}",
                        !want
                    ));
                }
            }
        }
        if b.redis_url().is_some() {
            let seen = transitions(&apps[0], &id, checked).await;
            for pair in seen.windows(2) {
                let ((v1, _, after), (v2, before, _)) = (&pair[0], &pair[1]);
                if *v2 != v1 + 1 {
                    continue;
                }
                report.chained += 1;
                if before != after {
                    report.broken_chains.push(format!(
                        "burst {burst}: v{v1} left {after}, v{v2} started from {before}"
                    ));
                }
            }
            checked = seen.last().map_or(checked, |(v, _, _)| *v - 1);
        }
        report.bursts += 1;
    }
    report
}
