//! Automatic persisted queries (Apollo's APQ): every protocol case by POST and by GET,
//! across two instances on Redis, the GET-mutation case, the limits on the resolved
//! document, and the bounds of the store.
use serde_json::{Value, json};

use crate::harness::{
    Backend, Gql, TOKEN, TestApp, each_backend, redis_backend, spawn_app, spawn_app_with,
    spawn_sibling,
};

const PRODUCT: &str = "query P($id: ID!) { product(id: $id) { id name } }";

/// The SHA-256 of a document as APQ clients compute it (64 lowercase hex digits).
pub fn sha256(doc: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("{:x}", Sha256::digest(doc.as_bytes()))
}

fn extension(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

impl TestApp {
    /// POST `body` as is (JSON), asking for `application/graphql-response+json`.
    pub(crate) async fn post_raw(&self, body: Value) -> Gql {
        self.send(
            self.client
                .post(format!("{}/graphql", self.base))
                .header("accept", "application/graphql-response+json")
                .json(&body),
        )
        .await
    }

    /// A hash-only request by POST.
    pub(crate) async fn post_hash(&self, hash: &str, variables: Value) -> Gql {
        self.post_raw(json!({ "extensions": extension(hash), "variables": variables }))
            .await
    }

    /// The document with its hash, by POST (registers it).
    pub(crate) async fn post_registering(&self, doc: &str, variables: Value) -> Gql {
        self.post_raw(
            json!({ "query": doc, "extensions": extension(&sha256(doc)), "variables": variables }),
        )
        .await
    }

    /// A hash-only request by GET, as Apollo Client's `useGETForHashedQueries` sends it.
    pub(crate) async fn get_hash(&self, hash: &str, variables: Value) -> Gql {
        let (ext, vars) = (extension(hash).to_string(), variables.to_string());
        self.send(
            self.client
                .get(format!("{}/graphql", self.base))
                .header("accept", "application/graphql-response+json")
                .query(&[("extensions", ext.as_str()), ("variables", vars.as_str())]),
        )
        .await
    }
}

#[track_caller]
fn refused(r: &Gql, status: u16, code: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.code(), Some(code), "{}", r.body);
    assert!(r.body.get("data").is_none(), "{}", r.body);
}

#[tokio::test]
async fn an_unknown_hash_is_not_found_then_registered_with_its_document_by_post_and_get() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let id = app.create("Oolong", "4.00", "Tea", 3).await;
        let vars = json!({ "id": id });
        let hash = sha256(PRODUCT);
        let r = app.post_hash(&hash, vars.clone()).await;
        refused(&r, 404, "PERSISTED_QUERY_NOT_FOUND");
        assert_eq!(r.body["errors"][0]["message"], "PersistedQueryNotFound");
        refused(
            &app.get_hash(&hash, vars.clone()).await,
            404,
            "PERSISTED_QUERY_NOT_FOUND",
        );

        let r = app.post_registering(PRODUCT, vars.clone()).await;
        assert_eq!(r.ok()["product"]["name"], "Oolong", "{}", b.name());
        assert!(
            r.body["extensions"].get("persistedQuery").is_none(),
            "{}",
            r.body
        );

        let r = app.post_hash(&hash, vars.clone()).await;
        assert_eq!(r.ok()["product"]["name"], "Oolong");
        assert_eq!(r.headers["cache-control"], "no-store");
        let r = app.get_hash(&hash, vars.clone()).await;
        assert_eq!(r.ok()["product"]["name"], "Oolong");
        assert_eq!(
            r.headers["cache-control"], "public, max-age=10",
            "GET keeps its rules"
        );
        // Upper-case hex names the same document; a repeated GET replays.
        let r = app.get_hash(&hash.to_uppercase(), vars.clone()).await;
        assert_eq!(r.ok()["product"]["name"], "Oolong");
        let r = app.get_hash(&hash, vars).await;
        assert_eq!(r.cache()["source"], "cache", "{}", r.body);
        assert_eq!(r.x_cache(), "HIT");
    })
    .await;
}

#[tokio::test]
async fn a_document_registered_on_one_instance_is_answered_by_another() {
    let Some(b) = redis_backend("a_document_registered_on_one_instance_is_answered_by_another")
    else {
        return;
    };
    let a = spawn_app(&b).await;
    let other = spawn_sibling(&a).await;
    let id = a.create("Sencha", "5.00", "Tea", 3).await;
    let vars = json!({ "id": id });
    let hash = sha256(PRODUCT);
    refused(
        &other.post_hash(&hash, vars.clone()).await,
        404,
        "PERSISTED_QUERY_NOT_FOUND",
    );
    a.post_registering(PRODUCT, vars.clone()).await.ok();
    assert_eq!(
        other.get_hash(&hash, vars.clone()).await.ok()["product"]["name"],
        "Sencha"
    );
    assert_eq!(
        other.post_hash(&hash, vars).await.ok()["product"]["name"],
        "Sencha"
    );
    // One key in Redis, with the TTL of a registration (24 h by default).
    let redis = a.catalog.cache().redis_client().expect("redis");
    let key = format!("{{{}}}q:{hash}", a.settings["CACHE_PREFIX"]);
    let ttl: i64 = fred::prelude::KeysInterface::pttl(&redis, &key)
        .await
        .unwrap();
    assert!((86_000_000..=86_400_000).contains(&ttl), "{key}: {ttl} ms");
}

#[tokio::test]
async fn a_hash_that_is_not_the_documents_sha256_is_refused_and_registers_nothing() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let wrong = sha256("{ __typename }");
        let body = json!({ "query": "{ categories { id } }", "extensions": extension(&wrong) });
        let r = app.post_raw(body.clone()).await;
        refused(&r, 400, "PERSISTED_QUERY_HASH_MISMATCH");
        let msg = r.body["errors"][0]["message"].as_str().unwrap();
        assert!(msg.contains(&sha256("{ categories { id } }")), "{msg}");
        let r = app
            .send(
                app.client
                    .get(format!("{}/graphql", app.base))
                    .header("accept", "application/json")
                    .query(&[
                        ("query", "{ categories { id } }"),
                        ("extensions", &extension(&wrong).to_string()),
                    ]),
            )
            .await;
        // Legacy application/json: 200, as for document errors (what Apollo Server sends).
        refused(&r, 200, "PERSISTED_QUERY_HASH_MISMATCH");
        refused(
            &app.post_hash(&wrong, json!({})).await,
            404,
            "PERSISTED_QUERY_NOT_FOUND",
        );
    })
    .await;
}

#[tokio::test]
async fn other_versions_and_malformed_extensions_are_bad_requests() {
    let app = spawn_app(&Backend::Embedded).await;
    let hash = sha256("{ __typename }");
    let cases = [
        (
            json!({ "version": 2, "sha256Hash": hash }),
            "version 2 is not supported",
        ),
        (json!({ "sha256Hash": hash }), "version is missing"),
        (
            json!({ "version": 1, "sha256Hash": "abc" }),
            "64 hexadecimal digits",
        ),
        (json!({ "version": 1 }), "64 hexadecimal digits"),
        (json!("yes"), "must be an object"),
    ];
    for (ext, says) in cases {
        let extensions = json!({ "persistedQuery": ext });
        for r in [
            app.post_raw(json!({ "query": "{ __typename }", "extensions": extensions }))
                .await,
            app.post_raw(json!({ "extensions": extensions })).await,
            app.send(
                app.client
                    .get(format!("{}/graphql", app.base))
                    .header("accept", "application/json")
                    .query(&[("extensions", extensions.to_string())]),
            )
            .await,
        ]
        .into_iter()
        .zip([400, 400, 200])
        {
            // 200 for the legacy application/json of the GET, as for document errors.
            let (r, status) = r;
            refused(&r, status, "BAD_REQUEST");
            let msg = r.body["errors"][0]["message"].as_str().unwrap();
            assert!(msg.contains(says), "{ext}: {msg}");
        }
    }
    // Without a document or a persisted query there is still nothing to run.
    refused(
        &app.post_raw(json!({ "extensions": {} })).await,
        400,
        "BAD_REQUEST",
    );
    refused(
        &app.post_raw(json!({ "query": null })).await,
        400,
        "BAD_REQUEST",
    );
}

#[tokio::test]
async fn a_hash_only_get_of_a_registered_mutation_is_405_and_changes_nothing() {
    each_backend(|b| async move {
        let app = spawn_app(&b).await;
        let doc = "mutation M($i: CreateProductInput!) { createProduct(input: $i) { id } }";
        let vars = json!({ "i": { "name": "Matcha", "price": "9.00", "category": "Tea", "stockQuantity": 1 } });
        let body = json!({ "query": doc, "variables": vars, "extensions": extension(&sha256(doc)) });
        let r = app
            .send(
                app.client
                    .post(format!("{}/graphql", app.base))
                    .bearer_auth(TOKEN)
                    .json(&body),
            )
            .await;
        r.ok();
        let r = app
            .send(
                app.client
                    .get(format!("{}/graphql", app.base))
                    .bearer_auth(TOKEN)
                    .header("accept", "application/json")
                    .query(&[
                        ("extensions", extension(&sha256(doc)).to_string()),
                        ("variables", vars.to_string()),
                    ]),
            )
            .await;
        refused(&r, 405, "METHOD_NOT_ALLOWED");
        assert_eq!(r.headers["allow"], "POST");
        let total = app.gql("{ products { totalCount } }", json!({})).await;
        assert_eq!(total.ok()["products"]["totalCount"], 1, "one product, from the POST");
        // By POST the registered mutation runs from its hash alone.
        let r = app
            .send(
                app.client
                    .post(format!("{}/graphql", app.base))
                    .bearer_auth(TOKEN)
                    .json(&json!({ "variables": vars, "extensions": extension(&sha256(doc)) })),
            )
            .await;
        assert!(r.ok()["createProduct"]["id"].is_string());
        // A GET that brings a mutation with its hash is refused before it registers.
        let other = "mutation N { clearCache { cleared } }";
        let r = app
            .send(
                app.client
                    .get(format!("{}/graphql", app.base))
                    .header("accept", "application/graphql-response+json")
                    .query(&[
                        ("query", other),
                        ("extensions", &extension(&sha256(other)).to_string()),
                    ]),
            )
            .await;
        refused(&r, 405, "METHOD_NOT_ALLOWED");
        refused(&app.post_hash(&sha256(other), json!({})).await, 404, "PERSISTED_QUERY_NOT_FOUND");
    })
    .await;
}

#[tokio::test]
async fn a_document_registers_only_once_it_passed_every_check() {
    each_backend(|b| async move {
        let app = spawn_app_with(&b, &[("QUERY_MAX_DEPTH", "3")]).await;
        let deep = "{ products { nodes { category { id } } } }";
        let nested = format!(
            "{{ products {}{} }}",
            "{ nodes ".repeat(200),
            "}".repeat(200)
        );
        for doc in [deep, nested.as_str(), "{ nope }", "{ unclosed"] {
            let r = app.post_registering(doc, json!({})).await;
            assert_eq!(r.code(), Some("GRAPHQL_VALIDATION_FAILED"), "{}", r.body);
            let r = app.post_hash(&sha256(doc), json!({})).await;
            refused(&r, 404, "PERSISTED_QUERY_NOT_FOUND");
        }
    })
    .await;
}

#[tokio::test]
async fn every_limit_applies_to_the_resolved_document() {
    let Some(b) = redis_backend("every_limit_applies_to_the_resolved_document") else {
        return;
    };
    // Registered on an instance with the default depth limit, asked on one with 3.
    let a = spawn_app(&b).await;
    let mut settings = a.settings.clone();
    settings.insert("QUERY_MAX_DEPTH".into(), "3".into());
    let strict = crate::harness::start(&b, settings).await;
    let deep = "{ products { nodes { category { id } } } }";
    a.post_registering(deep, json!({})).await.ok();
    for r in [
        strict.post_hash(&sha256(deep), json!({})).await,
        strict.get_hash(&sha256(deep), json!({})).await,
    ] {
        assert_eq!(r.status, 400, "{}", r.body);
        assert_eq!(r.code(), Some("GRAPHQL_VALIDATION_FAILED"), "{}", r.body);
    }
    a.post_hash(&sha256(deep), json!({})).await.ok();
}

#[tokio::test]
async fn registrations_past_the_bounds_are_refused_reported_and_counted_and_evict_nothing() {
    each_backend(|b| async move {
        let app = spawn_app_with(
            &b,
            &[
                ("PERSISTED_QUERY_MAX_COUNT", "2"),
                ("PERSISTED_QUERY_MAX_BYTES", "40"),
            ],
        )
        .await;
        let id = app.create("Assam", "3.00", "Tea", 3).await;
        app.product(&id).await.ok();
        let big = format!("{{ {}: __typename }}", "d".repeat(40));
        // (document, registered): 17 bytes; over the bytes; 34 bytes; over the count.
        let docs = [
            ("{ a: __typename }", true),
            (big.as_str(), false),
            ("{ b: __typename }", true),
            ("{ c: __typename }", false),
        ];
        for (doc, registered) in docs {
            // The request runs either way (its client sent the document); a refusal is
            // reported next to the data.
            let r = app.post_registering(doc, json!({})).await;
            r.ok();
            let ext = &r.body["extensions"]["persistedQuery"];
            if registered {
                assert!(ext.is_null(), "{doc}: {}", r.body);
            } else {
                assert_eq!(ext["registered"], false, "{doc}: {}", r.body);
                assert_eq!(ext["code"], "PERSISTED_QUERY_LIMIT_REACHED", "{}", r.body);
            }
        }
        // Registered ones answer from their hash on any instance; refused ones nowhere
        // but here (with Redis, this instance keeps a local copy of what it was sent).
        let other = match b {
            Backend::Embedded => None,
            _ => Some(spawn_sibling(&app).await),
        };
        let asked = other.as_ref().unwrap_or(&app);
        for (doc, registered) in docs {
            let r = asked.post_hash(&sha256(doc), json!({})).await;
            if registered {
                r.ok();
            } else {
                refused(&r, 404, "PERSISTED_QUERY_NOT_FOUND");
            }
        }
        if let Some(redis) = app.catalog.cache().redis_client() {
            for (doc, registered) in docs {
                let key = format!("{{{}}}q:{}", app.settings["CACHE_PREFIX"], sha256(doc));
                let n: i64 = fred::prelude::KeysInterface::exists(&redis, &key)
                    .await
                    .unwrap();
                assert_eq!(n == 1, registered, "{key}");
            }
        }
        // Cached data stayed where it was.
        let r = app.product(&id).await;
        assert_eq!(r.x_cache(), "HIT", "{}", r.body);
        let metrics = app
            .client
            .get(format!("{}/metrics", app.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with(r#"persisted_queries_total{outcome="refused_full"}"#)),
            "refusals are counted"
        );
    })
    .await;
}

#[tokio::test]
async fn a_registration_is_never_skipped_by_a_replayed_answer() {
    each_backend(|b| async move {
        let app = spawn_app_with(&b, &[("PERSISTED_QUERY_TTL_SECS", "1")]).await;
        let doc = "{ categories { id } }";
        let hash = sha256(doc);
        app.post_registering(doc, json!({})).await.ok();
        app.post_registering(doc, json!({})).await.ok();
        tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
        // Expired: the client is asked for the document and sends the very same body
        // again, whose answer the response cache holds; it must register all the same.
        refused(
            &app.post_hash(&hash, json!({})).await,
            404,
            "PERSISTED_QUERY_NOT_FOUND",
        );
        app.post_registering(doc, json!({})).await.ok();
        app.post_hash(&hash, json!({})).await.ok();
    })
    .await;
}

#[tokio::test]
async fn an_expired_document_frees_its_place_in_the_bounds() {
    each_backend(|b| async move {
        let app = spawn_app_with(
            &b,
            &[
                ("PERSISTED_QUERY_TTL_SECS", "1"),
                ("PERSISTED_QUERY_MAX_COUNT", "1"),
            ],
        )
        .await;
        let (first, second) = ("{ a: __typename }", "{ b: __typename }");
        let r = app.post_registering(first, json!({})).await;
        assert!(
            r.body["extensions"]["persistedQuery"].is_null(),
            "{}",
            r.body
        );
        let r = app.post_registering(second, json!({})).await;
        assert_eq!(r.body["extensions"]["persistedQuery"]["registered"], false);
        tokio::time::sleep(std::time::Duration::from_millis(1300)).await;
        let r = app.post_registering(second, json!({})).await;
        assert!(
            r.body["extensions"]["persistedQuery"].is_null(),
            "{}",
            r.body
        );
    })
    .await;
}

#[tokio::test]
async fn persisted_queries_turned_off_answer_not_supported() {
    let app = spawn_app_with(&Backend::Embedded, &[("PERSISTED_QUERIES", "false")]).await;
    let doc = "{ __typename }";
    let r = app.post_registering(doc, json!({})).await;
    refused(&r, 400, "PERSISTED_QUERY_NOT_SUPPORTED");
    assert_eq!(r.body["errors"][0]["message"], "PersistedQueryNotSupported");
    refused(
        &app.get_hash(&sha256(doc), json!({})).await,
        400,
        "PERSISTED_QUERY_NOT_SUPPORTED",
    );
    app.gql(doc, json!({})).await.ok();
}
