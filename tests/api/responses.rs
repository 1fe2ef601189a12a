//! The response cache: a repeated read is replayed without execution only while every
//! stamp it was built from holds, so no write that returned is ever missed, on any
//! instance. Each test first proves the answer is being replayed, then writes through
//! another instance (or the same one on the embedded backend) and reads at once.
use serde_json::{Value, json};

use crate::fixtures::OwnRedis;
use crate::harness::{Backend, Gql, TestApp, backends, spawn_app, spawn_app_with, spawn_sibling};

const ITEM: &str = "query($id: ID!) { product(id: $id) { name price version category { name } } }";
const PAGE: &str = "query($c: ID) { products(first: 5, filter: { categoryId: $c }) { totalCount nodes { id name } } }";
const CATEGORIES: &str = "{ categories { name productCount } }";
const CATEGORY: &str = "query($id: ID!) { category(id: $id) { name productCount } }";

fn replayed(r: &Gql) -> bool {
    r.cache()["hits"]["response"] == 1
}

/// Reads `query` until it is replayed (the first read stores it); returns the replay.
async fn warm(reader: &TestApp, query: &str, variables: Value) -> Gql {
    reader.gql(query, variables.clone()).await.ok();
    let r = reader.gql(query, variables.clone()).await;
    assert!(
        replayed(&r),
        "second read of {query} {variables} replays: {}",
        r.body
    );
    assert_eq!((r.sql(), r.x_cache()), (0, "HIT"), "{}", r.body);
    r
}

/// A writer and a reader sharing one cache: two instances on Redis, or one embedded
/// instance (its cache is private to its process).
async fn pair(b: &Backend) -> (TestApp, Option<TestApp>) {
    let writer = spawn_app(b).await;
    let reader = match b.redis_url() {
        Some(_) => Some(spawn_sibling(&writer).await),
        None => None,
    };
    (writer, reader)
}

#[tokio::test]
async fn a_replayed_answer_is_never_served_after_a_write_that_changes_it() {
    for b in backends() {
        let (writer, sibling) = pair(&b).await;
        let reader = sibling.as_ref().unwrap_or(&writer);
        let tea = writer.create("Tea", "3.00", "Drinks", 4).await;
        let cat = reader.gql(ITEM, json!({ "id": tea })).await;
        let page_vars = |c: &Value| json!({ "c": c });
        let drinks = writer
            .gql("{ categories { id name } }", json!({}))
            .await
            .ok()["categories"][0]["id"]
            .clone();
        assert!(cat.ok()["product"]["name"] == "Tea");

        // An item: a price change.
        warm(reader, ITEM, json!({ "id": tea })).await;
        writer.update(&tea, json!({ "price": "3.50" })).await.ok();
        let r = reader.gql(ITEM, json!({ "id": tea })).await;
        assert_eq!(
            r.ok()["product"]["price"],
            "3.50",
            "{} on {}",
            r.body,
            b.name()
        );
        assert!(!replayed(&r));

        // A list page, the categories list and one category: a creation in the category.
        warm(reader, PAGE, page_vars(&drinks)).await;
        warm(reader, CATEGORIES, json!({})).await;
        warm(reader, CATEGORY, json!({ "id": drinks })).await;
        let coffee = writer.create("Coffee", "2.00", "Drinks", 1).await;
        let page = reader.gql(PAGE, page_vars(&drinks)).await;
        assert_eq!(page.ok()["products"]["totalCount"], 2, "{}", page.body);
        let cats = reader.gql(CATEGORIES, json!({})).await;
        assert_eq!(
            cats.ok()["categories"][0]["productCount"],
            2,
            "{}",
            cats.body
        );
        let one = reader.gql(CATEGORY, json!({ "id": drinks })).await;
        assert_eq!(one.ok()["category"]["productCount"], 2, "{}", one.body);

        // A deletion: the item reads null, the page loses it.
        warm(reader, ITEM, json!({ "id": coffee })).await;
        warm(reader, PAGE, page_vars(&drinks)).await;
        writer
            .admin(
                "mutation($id: ID!) { deleteProduct(id: $id) { id } }",
                json!({ "id": coffee }),
            )
            .await
            .ok();
        let gone = reader.gql(ITEM, json!({ "id": coffee })).await;
        assert_eq!(gone.ok()["product"], Value::Null, "{}", gone.body);
        let page = reader.gql(PAGE, page_vars(&drinks)).await;
        assert_eq!(page.ok()["products"]["totalCount"], 1, "{}", page.body);

        // An id that did not exist, then does: its "absent" stamp is replaced.
        let next = (coffee.parse::<i64>().unwrap() + 1).to_string();
        let missing = warm(reader, ITEM, json!({ "id": next })).await;
        assert_eq!(missing.data()["product"], Value::Null);
        let new_cat = warm(reader, CATEGORY, json!({ "id": "999" })).await;
        assert_eq!(new_cat.data()["category"], Value::Null);
        let milk = writer.create("Milk", "1.00", "Dairy", 2).await;
        assert_eq!(milk, next);
        let r = reader.gql(ITEM, json!({ "id": next })).await;
        assert_eq!(r.ok()["product"]["name"], "Milk", "{}", r.body);

        // A name change through the page: the page shows the new name at once.
        warm(reader, PAGE, page_vars(&drinks)).await;
        writer
            .update(&tea, json!({ "name": "Green Tea" }))
            .await
            .ok();
        let page = reader.gql(PAGE, page_vars(&drinks)).await;
        assert_eq!(
            page.ok()["products"]["nodes"][0]["name"],
            "Green Tea",
            "{}",
            page.body
        );
    }
}

#[tokio::test]
async fn clear_cache_retires_every_replay() {
    for b in backends() {
        let (writer, sibling) = pair(&b).await;
        let reader = sibling.as_ref().unwrap_or(&writer);
        let id = writer.create("Tea", "3.00", "Drinks", 4).await;
        warm(reader, ITEM, json!({ "id": id })).await;
        writer
            .admin("mutation { clearCache { cleared } }", json!({}))
            .await
            .ok();
        let r = reader.gql(ITEM, json!({ "id": id })).await;
        assert!(!replayed(&r), "{} on {}", r.body, b.name());
    }
}

#[tokio::test]
async fn errors_mutations_and_no_cache_fields_are_never_replayed() {
    let app = spawn_app(&Backend::Embedded).await;
    let id = app.create("Tea", "3.00", "Drinks", 4).await;
    for query in [
        "{ cacheStats { hits } }",
        "{ product(id: \"-1\") { id } }",
        "{ product(id: \"1\") { id } nope }",
    ] {
        app.gql(query, json!({})).await;
        let again = app.gql(query, json!({})).await;
        assert!(!replayed(&again), "{query}: {}", again.body);
    }
    let bump =
        "mutation($id: ID!) { updateProduct(id: $id, input: { stockQuantity: 9 }) { version } }";
    let first = app.admin(bump, json!({ "id": id })).await;
    let second = app.admin(bump, json!({ "id": id })).await;
    assert_eq!(first.ok()["updateProduct"]["version"], 2);
    assert_eq!(second.ok()["updateProduct"]["version"], 3);
    // Admin and anonymous callers have entries of their own.
    warm(&app, ITEM, json!({ "id": id })).await;
    let admin = app.admin(ITEM, json!({ "id": id })).await;
    assert!(!replayed(&admin));
}

#[tokio::test]
async fn get_replays_keep_their_http_cache_headers_and_post_replays_are_no_store() {
    let app = spawn_app(&Backend::Embedded).await;
    let id = app.create("Tea", "3.00", "Drinks", 4).await;
    app.get(ITEM, json!({ "id": id })).await.ok();
    let r = app.get(ITEM, json!({ "id": id })).await;
    assert!(replayed(&r), "{}", r.body);
    assert_eq!(r.headers["cache-control"], "public, max-age=10");
    let p = warm(&app, ITEM, json!({ "id": id })).await;
    assert_eq!(p.headers["cache-control"], "no-store");
    assert_eq!(r.data(), p.data());
}

#[tokio::test]
async fn the_response_cache_can_be_switched_off() {
    let app = spawn_app_with(&Backend::Embedded, &[("RESPONSE_CACHE_MAX_BYTES", "0")]).await;
    let id = app.create("Tea", "3.00", "Drinks", 4).await;
    app.gql(ITEM, json!({ "id": id })).await.ok();
    let r = app.gql(ITEM, json!({ "id": id })).await;
    assert!(!replayed(&r));
    // Executed: one round trip for the product, its category from process.
    assert_eq!((r.x_cache(), r.round_trips()), ("HIT", 1), "{}", r.body);
}

#[tokio::test]
async fn an_executed_page_with_its_categories_costs_two_round_trips() {
    for b in backends() {
        let app = spawn_app(&b).await;
        for i in 0..6 {
            app.create(&format!("P{i}"), "1.00", &format!("C{}", i % 3), 1)
                .await;
        }
        let page = "{ products(first: 6) { nodes { name category { name } } } }";
        app.gql(page, json!({})).await.ok();
        // Another text of the same page, so it executes: the page, then its items;
        // the categories are in process.
        let r = app.gql(&format!("{page} "), json!({})).await;
        assert_eq!(r.data()["products"]["nodes"].as_array().unwrap().len(), 6);
        assert_eq!(
            (r.round_trips(), r.sql()),
            (2, 0),
            "{} on {}",
            r.body,
            b.name()
        );
        assert_eq!(r.cache()["hits"]["category"], 3, "{}", r.body);
    }
}

#[tokio::test]
async fn a_redis_that_comes_back_retires_every_replay() {
    let Some(b) = crate::harness::redis_backend("a_redis_that_comes_back_retires_every_replay")
    else {
        return;
    };
    // Redis restarted from a snapshot holds exactly the stamps it held before, so only
    // the reconnect can tell this process that its replays were checked against a store
    // that may since have lost writes.
    let dir = std::env::temp_dir().join(format!("larder-rdb-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let port = OwnRedis::free_port();
    let mut redis = OwnRedis::start_in(port, &dir).await;
    let app = spawn_app_with(&b, &[("REDIS_URL", &redis.url())]).await;
    let id = app.create("Tea", "3.00", "Drinks", 4).await;
    warm(&app, ITEM, json!({ "id": id })).await;
    let saved = std::process::Command::new("redis-cli")
        .args(["-p", &port.to_string(), "SAVE"])
        .output()
        .expect("redis-cli");
    assert!(String::from_utf8_lossy(&saved.stdout).contains("OK"));
    redis.stop().await;
    redis = OwnRedis::start_in(port, &dir).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !app.catalog.cache().is_connected() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let r = app.gql(ITEM, json!({ "id": id })).await;
    assert_eq!(r.ok()["product"]["name"], "Tea");
    assert!(!replayed(&r), "replayed across a reconnect: {}", r.body);
    drop(redis);
    let _ = std::fs::remove_dir_all(&dir);
}
