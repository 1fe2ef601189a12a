//! The HTTP transport: GET and POST, media types, GraphiQL, health and readiness.
use serde_json::json;

use crate::harness::{Backend, spawn_app};

#[tokio::test]
async fn get_executes_queries_and_refuses_mutations() {
    let app = spawn_app(&Backend::Embedded).await;
    let id = app.create("Tea", "1.00", "Drinks", 1).await;
    let r = app
        .get(
            "query($id: ID!) { product(id: $id) { name } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(r.ok()["product"]["name"], "Tea");
    let r = app
        .get(r#"mutation { deleteProduct(id: "1") { id } }"#, json!({}))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.headers.get("allow").unwrap(), "POST");
    assert_eq!(app.product(&id).await.ok()["product"]["name"], "Tea");
}

#[tokio::test]
async fn browsers_get_the_embedded_graphiql_which_echoes_nothing() {
    let app = spawn_app(&Backend::Embedded).await;
    let page = |query: &'static str| {
        let client = app.client.clone();
        let url = format!("{}/graphql{query}", app.base);
        async move {
            let r = client
                .get(url)
                .header("accept", "text/html")
                .send()
                .await
                .unwrap();
            let csp = r.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .to_string();
            (csp, r.text().await.unwrap())
        }
    };
    let (csp, html) = page("?token=abc123").await;
    assert!(html.contains("/vendor/graphiql/graphiql.min.js"), "{html}");
    assert!(html.contains("/graphiql-boot.js"), "{html}");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    // The page's own script reads the token from the address: the server echoes nothing.
    assert!(!html.contains("abc123") && !html.contains("Bearer"));
    let (_, hostile) = page("?token=%3Cscript%3Ealert(1)%3C/script%3E").await;
    assert!(!hostile.contains("alert(1)"));
    let js = app
        .client
        .get(format!("{}/vendor/graphiql/graphiql.min.js", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(js.status(), 200);
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
}

#[tokio::test]
async fn post_accepts_only_json_bodies() {
    let app = spawn_app(&Backend::Embedded).await;
    let url = format!("{}/graphql", app.base);
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let r = app
            .client
            .post(&url)
            .header("content-type", ct)
            .body(r#"{"query":"{ categories { id } }"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{ct}");
    }
    let r = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("[{\"query\":\"{ categories { id } }\"}]")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .post(&url)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app
        .client
        .post(&url)
        .header("accept", "text/csv")
        .json(&json!({ "query": "{ categories { id } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 406);
}

#[tokio::test]
async fn media_type_follows_accept_and_request_errors_are_400_only_for_graphql_response_json() {
    let app = spawn_app(&Backend::Embedded).await;
    let url = format!("{}/graphql", app.base);
    let bad = json!({ "query": "{ nope }" });
    let r = app
        .client
        .post(&url)
        .header("accept", "application/graphql-response+json")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/graphql-response+json")
    );
    let r = app
        .client
        .post(&url)
        .header("accept", "application/json")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "GRAPHQL_VALIDATION_FAILED"
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let app = spawn_app(&Backend::Embedded).await;
    let padding = " ".repeat(70 * 1024);
    let body = format!(r#"{{"query":"{{ categories {{ id }} }}{padding}"}}"#);
    let r = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
}

#[tokio::test]
async fn health_and_ready_report_the_database_and_the_cache() {
    let app = spawn_app(&Backend::Embedded).await;
    let r = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r: serde_json::Value = app.get_json("/ready").await;
    assert_eq!(
        r,
        json!({
            "status": "ready",
            "database": "ok",
            "cache": { "backend": "memory", "connected": true, "trusted": true, "reason": null },
        })
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = spawn_app(&Backend::Embedded).await;
    let r = app
        .client
        .post(format!("{}/graphql", app.base))
        .header("x-request-id", "abc-123")
        .json(&json!({ "query": "{ categories { id } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "abc-123");
    let r = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    assert!(!r.headers()["x-request-id"].is_empty());
}

#[tokio::test]
async fn response_fields_keep_the_order_of_the_selection() {
    let app = spawn_app(&Backend::Embedded).await;
    let id = app.create("Tea", "1.00", "Drinks", 1).await;
    let text = app
        .client
        .post(format!("{}/graphql", app.base))
        .json(&json!({
            "query": "query($id: ID!) { product(id: $id) { version name id category { slug name } } }",
            "variables": { "id": id },
        }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let at = |needle: &str| {
        text.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {text}"))
    };
    assert!(
        at("\"version\"") < at("\"name\"") && at("\"name\"") < at("\"id\""),
        "{text}"
    );
    assert!(at("\"slug\"") < at("\"name\":\"Drinks\""), "{text}");
    assert!(at("\"data\"") < at("\"extensions\""), "{text}");
}
