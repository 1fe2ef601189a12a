//! The catalog API: every query and mutation, validation, NOT_FOUND, pagination edges,
//! authorization, and deterministic demo data. Each test runs on every backend.
use serde_json::{Value, json};

use crate::harness::{Backend, each_backend, spawn_app, spawn_app_with};

#[tokio::test]
async fn product_returns_the_row_and_null_for_a_missing_id() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Green Tea", "4.50", "Beverages", 12).await;
        let r = app.product(&id).await;
        let p = &r.ok()["product"];
        assert_eq!(p["name"], "Green Tea");
        assert_eq!(p["price"], "4.50");
        assert_eq!(p["version"], 1);
        assert_eq!(p["category"]["name"], "Beverages");
        assert_eq!(app.product("999999").await.ok()["product"], Value::Null);
        assert_eq!(app.product("abc").await.code(), Some("BAD_USER_INPUT"));
    })
    .await;
}

#[tokio::test]
async fn products_by_ids_keeps_the_order_asked_and_nulls_for_missing_ids() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let a = app.create("A", "1", "X", 1).await;
        let c = app.create("C", "3", "X", 1).await;
        let r = app
            .gql(
                "query($ids: [ID!]!) { productsByIds(ids: $ids) { id } }",
                json!({ "ids": [c, "424242", a] }),
            )
            .await;
        assert_eq!(
            r.ok()["productsByIds"],
            json!([{ "id": c }, null, { "id": a }])
        );
        let too_many: Vec<String> = (1..=101).map(|i| i.to_string()).collect();
        let r = app
            .gql(
                "query($ids: [ID!]!) { productsByIds(ids: $ids) { id } }",
                json!({ "ids": too_many }),
            )
            .await;
        assert_eq!(r.code(), Some("BAD_USER_INPUT"));
    })
    .await;
}

async fn fixture(app: &crate::harness::TestApp) {
    for (name, price, cat, stock) in [
        ("Apple Juice", "2.99", "Beverages", 10),
        ("Banana Bread", "5.49", "Bakery", 0),
        ("Cherry Cola", "1.99", "Beverages", 3),
        ("Dark Roast Coffee", "12.00", "Beverages", 0),
        ("Earl Grey Tea", "6.75", "Beverages", 20),
        ("French Baguette", "3.10", "Bakery", 7),
        ("Garden Hose", "24.99", "Garden", 2),
    ] {
        app.create(name, price, cat, stock).await;
    }
}

#[tokio::test]
async fn products_filter_by_category_price_search_and_stock() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        fixture(&app).await;
        let r = app.gql("{ categories { id name productCount } }", json!({})).await;
        let cats = r.ok()["categories"].as_array().unwrap().clone();
        let names: Vec<&str> = cats.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["Bakery", "Beverages", "Garden"]);
        assert_eq!(cats[1]["productCount"], 4);
        let bev = cats[1]["id"].as_str().unwrap();

        assert_eq!(app.names(&format!(r#"filter: {{ categoryId: "{bev}" }}"#)).await.len(), 4);
        assert_eq!(
            app.names(r#"filter: { minPrice: "2.99", maxPrice: "6.75" }, orderBy: { field: PRICE }"#).await,
            ["Apple Juice", "French Baguette", "Banana Bread", "Earl Grey Tea"]
        );
        assert_eq!(app.names(r#"filter: { search: "  TEA " }"#).await, ["Earl Grey Tea"]);
        assert_eq!(app.names(r#"filter: { search: "%" }"#).await, Vec::<String>::new());
        assert_eq!(app.names(r#"filter: { inStock: false }, orderBy: { field: NAME }"#).await, ["Banana Bread", "Dark Roast Coffee"]);
        assert_eq!(
            app.names(&format!(r#"filter: {{ categoryId: "{bev}", inStock: true, maxPrice: 3 }}, orderBy: {{ field: NAME, direction: DESC }}"#)).await,
            ["Cherry Cola", "Apple Juice"]
        );
        let r = app.gql(r#"{ products(filter: { minPrice: 5, maxPrice: 1 }) { totalCount } }"#, json!({})).await;
        assert_eq!((r.code(), r.field()), (Some("BAD_USER_INPUT"), Some("minPrice")));
        let r = app.gql(r#"{ products(filter: { search: "tea" }) { totalCount } }"#, json!({})).await;
        assert_eq!(r.ok()["products"]["totalCount"], 1);
    })
    .await;
}

/// Walks every page of `order` with page size `size`; returns all names.
async fn walk(
    app: &crate::harness::TestApp,
    order: &str,
    size: u32,
    total: u64,
) -> Vec<(String, String)> {
    let mut after: Option<String> = None;
    let mut names = Vec::new();
    for _ in 0..50 {
        let r = app
            .gql(
                "query($o: ProductOrder, $n: Int!, $a: String) { products(orderBy: $o, first: $n, after: $a) { totalCount edges { cursor node { id name } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }",
                json!({ "o": serde_json::from_str::<Value>(order).unwrap(), "n": size, "a": after }),
            )
            .await;
        let page = &r.ok()["products"];
        assert_eq!(page["totalCount"], total);
        assert_eq!(page["pageInfo"]["hasPreviousPage"], after.is_some());
        let edges = page["edges"].as_array().unwrap();
        names.extend(edges.iter().map(|e| {
            (
                e["node"]["id"].as_str().unwrap().to_string(),
                e["node"]["name"].as_str().unwrap().to_string(),
            )
        }));
        if let Some(last) = edges.last() {
            assert_eq!(page["pageInfo"]["endCursor"], last["cursor"]);
        }
        if page["pageInfo"]["hasNextPage"] == false {
            return names;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(String::from);
    }
    panic!("pagination did not end");
}

#[tokio::test]
async fn cursor_pagination_visits_every_product_once_in_every_order() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        fixture(&app).await;
        // A second product with the same name and price tests the id tie-break.
        app.create("Apple Juice", "2.99", "Beverages", 1).await;
        for order in [
            r#"{"field":"ID"}"#,
            r#"{"field":"NAME"}"#,
            r#"{"field":"PRICE","direction":"DESC"}"#,
            r#"{"field":"CREATED_AT","direction":"DESC"}"#,
        ] {
            let all = walk(&app, order, 100, 8).await;
            for size in [1, 2, 3, 8] {
                assert_eq!(
                    walk(&app, order, size, 8).await,
                    all,
                    "order {order}, page size {size}"
                );
            }
            let mut ids: Vec<&String> = all.iter().map(|(id, _)| id).collect();
            ids.sort();
            ids.dedup();
            assert_eq!(ids.len(), 8, "{all:?}");
        }
        let by_price = walk(&app, r#"{"field":"PRICE"}"#, 3, 8).await;
        let names: Vec<&str> = by_price.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(names[..3], ["Cherry Cola", "Apple Juice", "Apple Juice"]);
        assert_eq!(names.last(), Some(&"Garden Hose"));
    })
    .await;
}

#[tokio::test]
async fn pagination_edges_are_clear_errors_or_empty_pages() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        fixture(&app).await;
        let r = app.gql("{ products(first: 0) { totalCount edges { cursor } pageInfo { hasNextPage endCursor } } }", json!({})).await;
        assert_eq!(r.ok()["products"], json!({ "totalCount": 7, "edges": [], "pageInfo": { "hasNextPage": true, "endCursor": null } }));
        for first in [-1, 101] {
            let r = app.gql(&format!("{{ products(first: {first}) {{ totalCount }} }}"), json!({})).await;
            assert_eq!((r.code(), r.field()), (Some("BAD_USER_INPUT"), Some("first")), "{first}");
        }
        let r = app.gql(r#"{ products(after: "not-a-cursor") { totalCount } }"#, json!({})).await;
        assert_eq!((r.code(), r.field()), (Some("BAD_USER_INPUT"), Some("after")));
        // A cursor of one order does not resume another.
        let r = app.gql(r#"{ products(first: 1, orderBy: { field: NAME }) { pageInfo { endCursor } } }"#, json!({})).await;
        let cursor = r.ok()["products"]["pageInfo"]["endCursor"].as_str().unwrap().to_string();
        let r = app.gql("query($a: String) { products(after: $a, orderBy: { field: PRICE }) { totalCount } }", json!({ "a": cursor })).await;
        assert_eq!(r.code(), Some("BAD_USER_INPUT"));
        // Past the end: an empty page.
        let r = app.gql(r#"{ products(first: 7) { pageInfo { endCursor } } }"#, json!({})).await;
        let end = r.ok()["products"]["pageInfo"]["endCursor"].as_str().unwrap().to_string();
        let r = app.gql("query($a: String) { products(after: $a) { edges { cursor } pageInfo { hasNextPage } } }", json!({ "a": end })).await;
        assert_eq!(r.ok()["products"], json!({ "edges": [], "pageInfo": { "hasNextPage": false } }));
    })
    .await;
}

#[tokio::test]
async fn categories_show_counts_and_their_products() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        fixture(&app).await;
        let r = app
            .gql("{ categories { name slug productCount products(first: 2, orderBy: { field: NAME }) { totalCount nodes { name category { name } } pageInfo { hasNextPage } } } }", json!({}))
            .await;
        let bakery = &r.ok()["categories"][0];
        assert_eq!(bakery["slug"], "bakery");
        assert_eq!(bakery["productCount"], 2);
        assert_eq!(bakery["products"]["nodes"], json!([{ "name": "Banana Bread", "category": { "name": "Bakery" } }, { "name": "French Baguette", "category": { "name": "Bakery" } }]));
        assert_eq!(r.ok()["categories"][1]["products"]["pageInfo"]["hasNextPage"], true);
        let id = r.ok()["categories"][2]["name"].clone();
        assert_eq!(id, "Garden");
        let r = app.gql(r#"{ category(id: "424242") { name } }"#, json!({})).await;
        assert_eq!(r.ok()["category"], Value::Null);
    })
    .await;
}

#[tokio::test]
async fn a_page_of_products_loads_their_categories_in_one_batch() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        for i in 0..60 {
            app.create(&format!("P{i:02}"), "1.00", &format!("Cat {}", i % 12), 1)
                .await;
        }
        let r = app
            .gql(
                "{ products(first: 50) { nodes { name category { name } } } }",
                json!({}),
            )
            .await;
        assert_eq!(r.ok()["products"]["nodes"].as_array().unwrap().len(), 50);
        // page ids + count, then one statement for 50 products and one for 12 categories.
        assert_eq!(r.sql(), 4, "{}", r.cache());
    })
    .await;
}

#[tokio::test]
async fn create_product_creates_a_new_category_once_and_reuses_it_by_slug() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        app.create("One", "1", "Home & Garden", 1).await;
        app.create("Two", "1", "home garden", 1).await;
        let r = app
            .gql("{ categories { name slug productCount } }", json!({}))
            .await;
        assert_eq!(
            r.ok()["categories"],
            json!([{ "name": "Home & Garden", "slug": "home-garden", "productCount": 2 }])
        );
    })
    .await;
}

#[tokio::test]
async fn update_product_changes_only_the_given_fields_and_bumps_the_version() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Mug", "8.00", "Home", 5).await;
        let r = app.update(&id, json!({ "price": "9.25" })).await;
        let p = &r.ok()["updateProduct"];
        assert_eq!(
            (
                p["name"].as_str(),
                p["price"].as_str(),
                p["version"].as_i64(),
                p["stockQuantity"].as_i64()
            ),
            (Some("Mug"), Some("9.25"), Some(2), Some(5))
        );
        let r = app
            .update(
                &id,
                json!({ "name": "  Big Mug ", "category": "Kitchen", "stockQuantity": 0 }),
            )
            .await;
        let p = &r.ok()["updateProduct"];
        assert_eq!(
            (
                p["name"].as_str(),
                p["version"].as_i64(),
                p["category"]["name"].as_str()
            ),
            (Some("Big Mug"), Some(3), Some("Kitchen"))
        );
        let r = app.update(&id, json!({})).await;
        assert_eq!(
            (r.code(), r.field()),
            (Some("BAD_USER_INPUT"), Some("input"))
        );
        let r = app.update("424242", json!({ "name": "x" })).await;
        assert_eq!(r.code(), Some("NOT_FOUND"));
        // The failed update created no category.
        let r = app.update("424242", json!({ "category": "Ghost" })).await;
        assert_eq!(r.code(), Some("NOT_FOUND"));
        let r = app.gql("{ categories { name } }", json!({})).await;
        assert!(!r.ok().to_string().contains("Ghost"), "{}", r.body);
    })
    .await;
}

#[tokio::test]
async fn delete_product_removes_it_and_a_second_delete_is_not_found() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Lamp", "30", "Home", 1).await;
        let del = format!(r#"mutation {{ deleteProduct(id: "{id}") {{ id name }} }}"#);
        assert_eq!(
            app.admin(&del, json!({})).await.ok()["deleteProduct"]["name"],
            "Lamp"
        );
        assert_eq!(app.product(&id).await.ok()["product"], Value::Null);
        assert_eq!(app.admin(&del, json!({})).await.code(), Some("NOT_FOUND"));
    })
    .await;
}

async fn product_count(app: &crate::harness::TestApp) -> u64 {
    app.gql("{ products { totalCount } }", json!({})).await.ok()["products"]["totalCount"]
        .as_u64()
        .unwrap()
}

#[tokio::test]
async fn invalid_input_is_bad_user_input_naming_the_field_and_writes_nothing() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Valid", "1.00", "Cat", 1).await;
        let long_name = "n".repeat(201);
        let long_text = "d".repeat(2001);
        let cases = [
            (json!({ "name": "   ", "price": "1", "category": "C" }), "name"),
            (json!({ "name": long_name, "price": "1", "category": "C" }), "name"),
            (json!({ "name": "x", "description": long_text, "price": "1", "category": "C" }), "description"),
            (json!({ "name": "x", "price": "-0.01", "category": "C" }), "price"),
            (json!({ "name": "x", "price": "1.001", "category": "C" }), "price"),
            (json!({ "name": "x", "price": "1", "category": "C", "stockQuantity": -1 }), "stockQuantity"),
            (json!({ "name": "x", "price": "1", "category": " " }), "category"),
        ];
        for (input, field) in cases {
            let r = app.admin("mutation($i: CreateProductInput!) { createProduct(input: $i) { id } }", json!({ "i": input })).await;
            assert_eq!((r.code(), r.field()), (Some("BAD_USER_INPUT"), Some(field)), "{}", r.body);
            assert_eq!(r.data(), &Value::Null);
        }
        let r = app.update(&id, json!({ "price": "12.345" })).await;
        assert_eq!((r.code(), r.field()), (Some("BAD_USER_INPUT"), Some("price")));
        // Wrong types are caught by GraphQL validation, still with a code.
        let r = app.admin("mutation { createProduct(input: { name: 1, price: \"1\", category: \"C\" }) { id } }", json!({})).await;
        assert!(r.code().is_some(), "{}", r.body);
        let r = app.admin("mutation { createProduct(input: { name: \"x\", price: \"abc\", category: \"C\" }) { id } }", json!({})).await;
        assert!(r.code().is_some(), "{}", r.body);
        assert_eq!(product_count(&app).await, 1);
        assert_eq!(app.product(&id).await.ok()["product"]["version"], 1);
        let r = app.gql("{ categories { name } }", json!({})).await;
        assert_eq!(r.ok()["categories"], json!([{ "name": "Cat" }]));
    })
    .await;
}

#[tokio::test]
async fn mutations_without_the_admin_token_are_unauthenticated_and_change_nothing() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Kept", "1.00", "Cat", 1).await;
        for m in [
            r#"mutation { createProduct(input: { name: "x", price: "1", category: "C" }) { id } }"#.to_string(),
            format!(r#"mutation {{ updateProduct(id: "{id}", input: {{ name: "changed" }}) {{ id }} }}"#),
            format!(r#"mutation {{ deleteProduct(id: "{id}") {{ id }} }}"#),
            "mutation { clearCache { cleared } }".to_string(),
            "mutation { resetCacheStats { hits } }".to_string(),
        ] {
            let r = app.gql(&m, json!({})).await;
            assert_eq!(r.code(), Some("UNAUTHENTICATED"), "{m}: {}", r.body);
        }
        let wrong = app
            .client
            .post(format!("{}/graphql", app.base))
            .bearer_auth("wrong-token")
            .json(&json!({ "query": format!(r#"mutation {{ deleteProduct(id: "{id}") {{ id }} }}"#) }))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        assert_eq!(wrong["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
        assert_eq!(app.product(&id).await.ok()["product"]["name"], "Kept");
        assert_eq!(product_count(&app).await, 1);
    })
    .await;
}

async fn all_demo_products(b: &Backend) -> Vec<Value> {
    let app = spawn_app_with(b, &[("SEED_DEMO", "true")]).await;
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let r = app
            .gql(
                "query($a: String) { products(first: 100, after: $a) { totalCount nodes { name price stockQuantity createdAt category { name } } pageInfo { hasNextPage endCursor } } }",
                json!({ "a": after }),
            )
            .await;
        let page = &r.ok()["products"];
        assert_eq!(page["totalCount"], 1000);
        out.extend(page["nodes"].as_array().unwrap().iter().cloned());
        if page["pageInfo"]["hasNextPage"] == false {
            return out;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(String::from);
    }
}

#[tokio::test]
async fn demo_seeding_is_deterministic_across_runs_and_backends() {
    let mut runs = Vec::new();
    for b in crate::harness::backends() {
        runs.push(all_demo_products(&b).await);
    }
    runs.push(all_demo_products(&Backend::Embedded).await);
    assert_eq!(runs[0].len(), 1000);
    for other in &runs[1..] {
        assert_eq!(&runs[0], other);
    }
    let cats: std::collections::BTreeSet<&str> = runs[0]
        .iter()
        .map(|p| p["category"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(cats.len(), 10);
}

#[tokio::test]
async fn concurrent_creates_with_new_categories_all_succeed() {
    each_backend(|b| async move {
        let app = std::sync::Arc::new(spawn_app(&b).await);
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let app = app.clone();
                tokio::spawn(async move {
                    app.admin(
                        "mutation($i: CreateProductInput!) { createProduct(input: $i) { id } }",
                        json!({ "i": { "name": format!("P{i}"), "price": "1", "category": format!("New {}", i % 7) } }),
                    )
                    .await
                })
            })
            .collect();
        for t in tasks {
            let r = t.await.unwrap();
            r.ok();
        }
        assert_eq!(product_count(&app).await, 20);
        let r = app.gql("{ categories { name productCount } }", json!({})).await;
        assert_eq!(r.ok()["categories"].as_array().unwrap().len(), 7);
    })
    .await;
}
