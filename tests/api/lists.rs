//! Precise list invalidation, proven against real servers: each kind of write retires
//! exactly the cached pages it can change (the table in `catalog::lists`), through a
//! second instance; a page built before a write is never served after it; concurrent
//! misses of one page load it once; and a read after a write that bumps no counter never
//! joins a flight that read the old row.
use std::{collections::BTreeSet, time::Duration};

use futures::future::join_all;
use larder::cache::Kind;
use serde_json::{Value, json};

use crate::fixtures::pause_first_fill;
use crate::harness::{TestApp, each_backend, post_value, spawn_app, spawn_sibling, start};

/// The pages under test, by label.
fn pages(c1: &str, c2: &str) -> Vec<(&'static str, String)> {
    let page = |filter: String, order: &str| {
        format!(
            "{{ products(first: 20, filter: {{ {filter} }}{order}) {{ totalCount nodes {{ id }} pageInfo {{ hasNextPage }} }} }}"
        )
    };
    let by = |f: &str| format!(", orderBy: {{ field: {f} }}");
    vec![
        ("c1", page(format!(r#"categoryId: "{c1}""#), "")),
        ("c2", page(format!(r#"categoryId: "{c2}""#), "")),
        ("all", page(String::new(), "")),
        (
            "c1 inStock",
            page(format!(r#"categoryId: "{c1}", inStock: true"#), ""),
        ),
        ("all inStock", page("inStock: true".into(), "")),
        (
            "c1 minPrice",
            page(format!(r#"categoryId: "{c1}", minPrice: "5""#), ""),
        ),
        (
            "c2 minPrice",
            page(format!(r#"categoryId: "{c2}", minPrice: "5""#), ""),
        ),
        ("all by price", page(String::new(), &by("PRICE"))),
        (
            "c1 search",
            page(format!(r#"categoryId: "{c1}", search: "mug""#), ""),
        ),
        ("all by name", page(String::new(), &by("NAME"))),
        ("all by created", page(String::new(), &by("CREATED_AT"))),
        (
            "categories",
            "{ categories { id name productCount } }".into(),
        ),
    ]
}

/// Reads every page through `app`; returns the labels that missed the list cache, and
/// the answers.
async fn read_pages(
    app: &TestApp,
    pages: &[(&'static str, String)],
) -> (BTreeSet<&'static str>, Vec<Value>) {
    let mut missed = BTreeSet::new();
    let mut answers = Vec::new();
    for (label, q) in pages {
        let r = app.gql(q, json!({})).await;
        answers.push(r.ok().clone());
        if r.cache()["misses"]["list"].as_u64() != Some(0) {
            missed.insert(*label);
        }
    }
    (missed, answers)
}

async fn category_of(app: &TestApp, id: &str) -> String {
    let r = app
        .gql(
            "query($id: ID!) { product(id: $id) { category { id } } }",
            json!({ "id": id }),
        )
        .await;
    r.ok()["product"]["category"]["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn uncached_twin(app: &TestApp) -> TestApp {
    let mut settings = app.settings.clone();
    settings.insert("CACHE_BACKEND".into(), "none".into());
    start(&app.backend, settings).await
}

#[tokio::test]
async fn each_write_retires_exactly_the_pages_its_table_row_names() {
    each_backend(|b| async move {
        let writer = spawn_app(&b).await;
        // Through a second instance where the cache is shared; the embedded cache is
        // private to its process, so there the writer reads too.
        let sibling = match b.redis_url() {
            Some(_) => Some(spawn_sibling(&writer).await),
            None => None,
        };
        let reader = sibling.as_ref().unwrap_or(&writer);
        let truth = uncached_twin(&writer).await;
        let mug = writer.create("Red Mug", "6.00", "Kitchen", 5).await;
        let plate = writer.create("Plate", "3.00", "Kitchen", 2).await;
        let hose = writer.create("Hose", "9.00", "Garden", 1).await;
        writer.create("Spade", "4.00", "Garden", 3).await;
        let (c1, c2) = (
            category_of(&writer, &mug).await,
            category_of(&writer, &hose).await,
        );
        let pages = pages(&c1, &c2);
        let all_c1 = ["c1", "c1 inStock", "c1 minPrice", "c1 search"];
        let all_c2 = ["c2", "c2 minPrice"];
        let all_all = [
            "all",
            "all inStock",
            "all by price",
            "all by name",
            "all by created",
        ];
        let delete = format!(r#"mutation {{ deleteProduct(id: "{plate}") {{ id }} }}"#);
        let steps: Vec<(&str, Value, Vec<&str>)> = vec![
            (
                "a stock change that keeps inStock",
                json!({ "stockQuantity": 4 }),
                vec![],
            ),
            (
                "a stock change that flips inStock",
                json!({ "stockQuantity": 0 }),
                vec!["c1 inStock", "all inStock"],
            ),
            (
                "a price change",
                json!({ "price": "7.00" }),
                vec!["c1 minPrice", "all by price"],
            ),
            (
                "a name change",
                json!({ "name": "Red Mug XL" }),
                vec!["c1 search", "all by name"],
            ),
            (
                "a description change",
                json!({ "description": "Glazed." }),
                vec![],
            ),
            (
                "a category move",
                json!({ "category": "Garden" }),
                [&all_c1[..], &all_c2[..], &["categories"]].concat(),
            ),
            (
                "a create",
                Value::Null,
                [&all_c2[..], &all_all[..], &["categories"]].concat(),
            ),
            (
                "a delete",
                Value::Null,
                [&all_c1[..], &all_all[..], &["categories"]].concat(),
            ),
        ];
        for (step, input, retired) in steps {
            // Warm: the second read of every page is a hit.
            read_pages(reader, &pages).await;
            let (missed, _) = read_pages(reader, &pages).await;
            assert!(missed.is_empty(), "{step}: warm pages missed: {missed:?}");
            match step {
                "a create" => {
                    writer.create("Trowel", "2.00", "Garden", 1).await;
                }
                "a delete" => {
                    writer.admin(&delete, json!({})).await.ok();
                }
                _ => {
                    writer.update(&mug, input).await.ok();
                }
            }
            let (missed, answers) = read_pages(reader, &pages).await;
            let retired: BTreeSet<&str> = retired.into_iter().collect();
            assert_eq!(missed, retired, "{step}: the pages that missed");
            let (_, expected) = read_pages(&truth, &pages).await;
            for ((label, _), (got, want)) in pages.iter().zip(answers.iter().zip(&expected)) {
                assert_eq!(got, want, "{step}: page {label} right after the write");
            }
        }
    })
    .await;
}

fn ids_of(page: &Value) -> Vec<String> {
    page["data"]["products"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_page_built_before_a_write_is_never_served_after_it() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let other = match b.redis_url() {
            Some(_) => Some(spawn_sibling(&app).await),
            None => None,
        };
        let a = app.create("Alpha", "1.00", "Race", 1).await;
        let z = app.create("Zulu", "1.00", "Race", 1).await;
        let cat = category_of(&app, &a).await;
        let query = json!({ "query": format!(
            r#"{{ products(first: 10, filter: {{ categoryId: "{cat}", inStock: true }}) {{ totalCount nodes {{ id }} }} }}"#
        ) });
        let (reached, release) = pause_first_fill(&app, Kind::List);
        // A reader runs the page's SQL (both in stock) and stops before storing it.
        let url = format!("{}/graphql", app.base);
        let slow = tokio::spawn(post_value(app.client.clone(), url.clone(), query.clone()));
        tokio::time::timeout(Duration::from_secs(10), reached.notified())
            .await
            .expect("the reader reached its fill");
        // The write commits and retires the page while the reader holds the old one.
        app.update(&z, json!({ "stockQuantity": 0 })).await.ok();
        // A read after the mutation returned: not the old page, not the held flight.
        let during = post_value(app.client.clone(), url.clone(), query.clone()).await;
        assert_eq!(ids_of(&during), [a.as_str()], "{during}");
        release.notify_one();
        let old = slow.await.unwrap();
        assert_eq!(ids_of(&old), [a.clone(), z.clone()], "the reader began before the write");
        // The old page was stored under the old counter values: never a hit again.
        for reader in std::iter::once(&app).chain(other.as_ref()) {
            for _ in 0..2 {
                let r = reader.gql(query["query"].as_str().unwrap(), json!({})).await;
                assert_eq!(ids_of(&r.body), [a.as_str()], "{}", r.body);
                assert_eq!(r.ok()["products"]["totalCount"], 1);
            }
        }
        app.catalog.hooks().set_before_fill(None);
    })
    .await;
}

#[tokio::test]
async fn a_read_after_a_write_that_bumps_no_counter_never_joins_a_flight_that_read_the_old_row() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Quiet", "1.00", "Q", 5).await;
        let (reached, release) = pause_first_fill(&app, Kind::Product);
        let url = format!("{}/graphql", app.base);
        let query =
            json!({ "query": format!(r#"{{ product(id: "{id}") {{ version description }} }}"#) });
        let slow = tokio::spawn(post_value(app.client.clone(), url.clone(), query.clone()));
        tokio::time::timeout(Duration::from_secs(10), reached.notified())
            .await
            .expect("the reader reached its fill");
        // Neither list counter changes: only the item's tombstone tells the two apart.
        let w = app
            .update(&id, json!({ "description": "Now described." }))
            .await;
        assert_eq!(w.ok()["updateProduct"]["version"], 2);
        let after = post_value(app.client.clone(), url.clone(), query.clone()).await;
        assert_eq!(after["data"]["product"]["version"], 2, "{after}");
        release.notify_one();
        assert_eq!(slow.await.unwrap()["data"]["product"]["version"], 1);
        app.catalog.hooks().set_before_fill(None);
    })
    .await;
}

#[tokio::test]
async fn concurrent_misses_of_one_page_run_its_sql_once() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        for i in 0..5 {
            app.create(&format!("P{i}"), "1.00", "Flight", 1).await;
        }
        let before = app.catalog.sql_total();
        let query =
            json!({ "query": "{ products(first: 3, filter: { inStock: true }) { totalCount } }" });
        let url = format!("{}/graphql", app.base);
        let answers =
            join_all((0..100).map(|_| post_value(app.client.clone(), url.clone(), query.clone())))
                .await;
        for r in &answers {
            assert_eq!(r["data"]["products"]["totalCount"], 5, "{r}");
        }
        // One flight per kind: the page's ids and its count, then its three products
        // (the connection loads its nodes even when only `totalCount` is asked).
        let per: Vec<u64> = answers
            .iter()
            .map(|r| {
                r["extensions"]["cache"]["sqlStatements"]
                    .as_u64()
                    .unwrap_or(99)
            })
            .filter(|n| *n > 0)
            .collect();
        assert_eq!(app.catalog.sql_total() - before, 3, "{}: {per:?}", b.name());
    })
    .await;
}

#[tokio::test]
async fn an_outbox_row_recorded_before_rows_named_their_counters_replays_as_a_clear() {
    let Some(b) = crate::harness::redis_backend(
        "an_outbox_row_recorded_before_rows_named_their_counters_replays_as_a_clear",
    ) else {
        return;
    };
    use sea_orm::ConnectionTrait;
    let app = spawn_app(&b).await;
    let id = app.create("Old", "1.00", "Legacy", 1).await;
    let page = "{ products(first: 5) { totalCount } }";
    app.gql(page, json!({})).await.ok();
    let warm = app.gql(page, json!({})).await;
    assert_eq!(warm.cache()["misses"]["list"], 0, "{}", warm.body);
    // A row as an older larder recorded it: no list counters.
    app.catalog
        .db()
        .execute_unprepared(&format!(
            "INSERT INTO cache_outbox (product_id, version, gone, created_at) VALUES ({id}, 2, false, now() - interval '1 minute')"
        ))
        .await
        .unwrap();
    assert!(
        !app.catalog.replay_once().await.unwrap(),
        "one row, drained"
    );
    let after = app.gql(page, json!({})).await;
    assert_eq!(after.cache()["misses"]["list"], 1, "{}", after.body);
}

#[tokio::test]
async fn a_replayed_single_statement_write_bumps_the_counters_its_change_names() {
    let Some(b) = crate::harness::redis_backend(
        "a_replayed_single_statement_write_bumps_the_counters_its_change_names",
    ) else {
        return;
    };
    use sea_orm::ConnectionTrait;
    let app = spawn_app(&b).await;
    let id = app.create("Lamp", "3.00", "Lighting", 4).await;
    app.update(&id, json!({ "price": "7.00" })).await.ok();
    let by_price = "{ products(first: 5, orderBy: { field: PRICE }) { totalCount } }";
    let plain = "{ products(first: 5) { totalCount } }";
    for page in [by_price, plain] {
        app.gql(page, json!({})).await.ok();
        let warm = app.gql(page, json!({})).await;
        assert_eq!(warm.cache()["misses"]["list"], 0, "{}", warm.body);
    }
    // The update's outbox row again as if its delivery had not been recorded: the
    // replay derives its counters from the row's `change` (price 3.00 -> 7.00).
    app.catalog
        .db()
        .execute_unprepared(&format!(
            "UPDATE cache_outbox SET delivered_seq = NULL, delivered_hist = NULL, \
             created_at = now() - interval '1 minute' \
             WHERE id = (SELECT max(id) FROM cache_outbox WHERE product_id = {id})"
        ))
        .await
        .unwrap();
    assert!(
        !app.catalog.replay_once().await.unwrap(),
        "one row, drained"
    );
    let after = app.gql(by_price, json!({})).await;
    assert_eq!(
        after.cache()["misses"]["list"],
        1,
        "a price page: {}",
        after.body
    );
    let after = app.gql(plain, json!({})).await;
    assert_eq!(
        after.cache()["misses"]["list"],
        0,
        "no price: {}",
        after.body
    );
}
