//! The harness: `spawn_app` starts a real larder on 127.0.0.1:<random>, with its own
//! database (a fresh Postgres database or SQLite file) and its own cache (a Redis key
//! prefix, or a private in-process cache); `TestApp` sends it GraphQL and reads its
//! answers. (Processes a test owns, Redis servers and clusters, are in `fixtures`.)
//!
//! Backends: always SQLite + in-process cache; also Postgres + Redis when
//! `LARDER_TEST_DATABASE_URL` and `LARDER_TEST_REDIS_URL` are set. The first use prints
//! one line naming the backends this run covers.
use std::{collections::HashMap, io::Write, sync::OnceLock};

use larder::{app::Application, catalog::Catalog, config::Config};
use serde_json::{Value, json};

pub const TOKEN: &str = "test-admin-token";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file + in-process cache.
    Embedded,
    /// Postgres (a fresh database per app) + Redis (a fresh key prefix per app).
    PostgresRedis { pg: String, redis: String },
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Embedded => "sqlite+memory",
            Backend::PostgresRedis { .. } => "postgres+redis",
        }
    }

    pub fn redis_url(&self) -> Option<&str> {
        match self {
            Backend::PostgresRedis { redis, .. } => Some(redis),
            Backend::Embedded => None,
        }
    }
}

/// Every backend this run covers.
pub fn backends() -> Vec<Backend> {
    static ALL: OnceLock<Vec<Backend>> = OnceLock::new();
    ALL.get_or_init(|| {
        let mut all = vec![Backend::Embedded];
        let pg = std::env::var("LARDER_TEST_DATABASE_URL")
            .ok()
            .filter(|v| !v.is_empty());
        let redis = std::env::var("LARDER_TEST_REDIS_URL")
            .ok()
            .filter(|v| !v.is_empty());
        match (pg, redis) {
            (Some(pg), Some(redis)) => all.push(Backend::PostgresRedis { pg, redis }),
            (None, None) => {}
            _ => panic!("set both LARDER_TEST_DATABASE_URL and LARDER_TEST_REDIS_URL, or neither"),
        }
        let names: Vec<&str> = all.iter().map(Backend::name).collect();
        // Written to stderr directly: libtest captures print!/eprint!, not io::stderr().
        let line = format!(
            "\nlarder tests: backends covered: {}{}\n",
            names.join(", "),
            if all.len() == 1 {
                " (set LARDER_TEST_DATABASE_URL and LARDER_TEST_REDIS_URL for postgres+redis)"
            } else {
                ""
            }
        );
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
        all
    })
    .clone()
}

/// The Postgres + Redis backend, or `None` (after saying so on stderr) when this run
/// has none: for tests about behaviour only a shared Redis has.
pub fn redis_backend(test: &str) -> Option<Backend> {
    let b = backends().into_iter().find(|b| b.redis_url().is_some());
    if b.is_none() {
        let line =
            format!("larder tests: {test}: needs LARDER_TEST_REDIS_URL; ran on no backend\n");
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
    b
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub catalog: Catalog,
    pub backend: Backend,
    /// Settings, to start another instance on the same database and cache.
    pub settings: HashMap<String, String>,
    server: tokio::task::JoinHandle<()>,
    /// The database this app created (siblings share it and own nothing).
    owned: Option<Owned>,
}

/// A test database, removed when its creator is dropped.
enum Owned {
    Postgres { admin_url: String, name: String },
    Sqlite(std::path::PathBuf),
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        match self.owned.take() {
            Some(Owned::Sqlite(path)) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Some(Owned::Postgres { admin_url, name }) => {
                // Drop is not async: a short-lived thread with its own runtime drops the
                // database, ending the connections the app still holds.
                let _ = std::thread::spawn(move || {
                    use sea_orm::{ConnectionTrait, Database};
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .ok()?;
                    rt.block_on(async {
                        let admin = Database::connect(admin_url.as_str()).await.ok()?;
                        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        let _ = admin.execute_unprepared(&sql).await;
                        admin.close().await.ok()
                    })
                })
                .join();
            }
            None => {}
        }
    }
}

/// A response: status, headers and JSON body.
pub struct Gql {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Gql {
    pub fn data(&self) -> &Value {
        &self.body["data"]
    }

    /// The `extensions.code` of the first error, if any.
    pub fn code(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["code"].as_str()
    }

    pub fn field(&self) -> Option<&str> {
        self.body["errors"][0]["extensions"]["field"].as_str()
    }

    pub fn cache(&self) -> &Value {
        &self.body["extensions"]["cache"]
    }

    pub fn x_cache(&self) -> &str {
        self.headers
            .get("x-cache")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    pub fn sql(&self) -> u64 {
        self.cache()["sqlStatements"].as_u64().unwrap_or(u64::MAX)
    }

    pub fn round_trips(&self) -> u64 {
        self.cache()["roundTrips"].as_u64().unwrap_or(u64::MAX)
    }

    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert!(
            self.body["errors"].is_null(),
            "unexpected errors: {}",
            self.body
        );
        &self.body["data"]
    }
}

pub fn unique() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}

/// A new app on its own database and cache namespace, without demo data.
pub async fn spawn_app(backend: &Backend) -> TestApp {
    spawn_app_with(backend, &[]).await
}

/// As `spawn_app`, with extra settings (e.g. `("SEED_DEMO", "true")`).
pub async fn spawn_app_with(backend: &Backend, extra: &[(&str, &str)]) -> TestApp {
    let id = unique();
    let mut settings: HashMap<String, String> = HashMap::new();
    let owned = match backend {
        Backend::Embedded => {
            let path = std::env::temp_dir().join(format!("larder-test-{id}.db"));
            settings.insert(
                "DATABASE_URL".into(),
                format!("sqlite://{}?mode=rwc", path.display()),
            );
            settings.insert("CACHE_BACKEND".into(), "memory".into());
            Owned::Sqlite(path)
        }
        Backend::PostgresRedis { pg, redis } => {
            settings.insert("DATABASE_URL".into(), create_pg_database(pg, &id).await);
            settings.insert("REDIS_URL".into(), redis.clone());
            settings.insert("CACHE_BACKEND".into(), "redis".into());
            Owned::Postgres {
                admin_url: pg.clone(),
                name: format!("larder_test_{id}"),
            }
        }
    };
    settings.insert("CACHE_PREFIX".into(), format!("larder-test-{id}:"));
    settings.insert("SEED_DEMO".into(), "false".into());
    for (k, v) in extra {
        settings.insert(k.to_string(), v.to_string());
    }
    let mut app = start(backend, settings).await;
    app.owned = Some(owned);
    app
}

/// Another instance on the same database and cache as `other`.
pub async fn spawn_sibling(other: &TestApp) -> TestApp {
    start(&other.backend, other.settings.clone()).await
}

pub async fn start(backend: &Backend, mut settings: HashMap<String, String>) -> TestApp {
    settings.insert("BIND_ADDR".into(), "127.0.0.1:0".into());
    settings.insert("ADMIN_TOKEN".into(), TOKEN.into());
    settings
        .entry("RUST_LOG".into())
        .or_insert_with(|| "warn".into());
    // Every test client is 127.0.0.1: the per-address registration limit is tested
    // where it is set (`hostile`), not in every test that registers documents.
    settings
        .entry("PERSISTED_QUERY_REGISTRATIONS_PER_MINUTE".into())
        .or_insert_with(|| "100000".into());
    let lookup = settings.clone();
    let config = Config::from_lookup(|k| lookup.get(k).cloned()).expect("test config");
    // Server logs go through the test writer, so libtest captures them per test, and
    // into memory for the request-id tests (`logs`).
    crate::logs::init(&settings["RUST_LOG"]);
    let app = Application::build(config).await.expect("app starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let catalog = app.catalog().clone();
    // Redis connects in the background; give it a moment so tests start warm-capable.
    // (Tests of a Redis that is down simply find it still disconnected after this.)
    for _ in 0..60 {
        if !catalog.cache().is_enabled() || catalog.cache().is_connected() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let server = tokio::spawn(async move {
        let _ = app.run_until(std::future::pending()).await;
    });
    TestApp {
        base,
        client: reqwest::Client::new(),
        catalog,
        backend: backend.clone(),
        settings,
        server,
        owned: None,
    }
}

/// Creates `larder_test_<id>` next to the database in `base_url`; returns its URL.
async fn create_pg_database(base_url: &str, id: &str) -> String {
    use sea_orm::{ConnectionTrait, Database};
    let admin = Database::connect(base_url)
        .await
        .expect("connect to LARDER_TEST_DATABASE_URL");
    let name = format!("larder_test_{id}");
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create test database");
    let _ = admin.close().await;
    let (head, _) = base_url.rsplit_once('/').expect("database URL with a path");
    format!("{head}/{name}")
}

impl TestApp {
    /// Breaks the database under the server: the next uncached product read fails
    /// inside SQL (the table is renamed away).
    pub async fn break_products_table(&self) {
        use sea_orm::ConnectionTrait;
        self.catalog
            .db()
            .execute_unprepared("ALTER TABLE products RENAME TO products_gone")
            .await
            .expect("rename the products table");
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Gql {
        let resp = req.send().await.expect("request reaches the server");
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|_| panic!("response is not JSON ({status}): {text}"));
        Gql {
            status,
            headers,
            body,
        }
    }

    /// Outbox rows not yet delivered to the cache (once this instance's queued
    /// delivered markers are written).
    pub async fn pending_outbox_rows(&self) -> u64 {
        use sea_orm::{ConnectionTrait, Statement};
        self.catalog.flush_marks().await;
        let db = self.catalog.db();
        let row = db
            .query_one_raw(Statement::from_string(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM cache_outbox WHERE delivered_seq IS NULL",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap() as u64
    }

    pub async fn gql(&self, query: &str, variables: Value) -> Gql {
        self.send(
            self.client
                .post(format!("{}/graphql", self.base))
                .json(&json!({ "query": query, "variables": variables })),
        )
        .await
    }

    /// POST with the admin token.
    pub async fn admin(&self, query: &str, variables: Value) -> Gql {
        self.send(
            self.client
                .post(format!("{}/graphql", self.base))
                .bearer_auth(TOKEN)
                .json(&json!({ "query": query, "variables": variables })),
        )
        .await
    }

    /// GET with `query` (and `variables`) as URL parameters.
    pub async fn get(&self, query: &str, variables: Value) -> Gql {
        let vars = variables.to_string();
        self.send(
            self.client
                .get(format!("{}/graphql", self.base))
                .header("accept", "application/json")
                .query(&[("query", query), ("variables", vars.as_str())]),
        )
        .await
    }

    /// `/metrics` as Prometheus text.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("request reaches the server")
            .text()
            .await
            .expect("text body")
    }

    /// GET a JSON endpoint such as `/ready`.
    pub async fn get_json(&self, path: &str) -> Value {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request reaches the server");
        resp.json().await.expect("JSON body")
    }

    /// Creates a product; returns its id.
    pub async fn create(&self, name: &str, price: &str, category: &str, stock: i32) -> String {
        let r = self
            .admin(
                "mutation($i: CreateProductInput!) { createProduct(input: $i) { id } }",
                json!({ "i": { "name": name, "price": price, "category": category, "stockQuantity": stock } }),
            )
            .await;
        r.ok()["createProduct"]["id"]
            .as_str()
            .expect("created id")
            .to_string()
    }

    pub async fn update(&self, id: &str, input: Value) -> Gql {
        self.admin(
            "mutation($id: ID!, $i: UpdateProductInput!) { updateProduct(id: $id, input: $i) { id name price version stockQuantity category { id name } } }",
            json!({ "id": id, "i": input }),
        )
        .await
    }

    pub async fn product(&self, id: &str) -> Gql {
        self.gql(
            "query($id: ID!) { product(id: $id) { id name price version stockQuantity category { id name } } }",
            json!({ "id": id }),
        )
        .await
    }

    /// Names of a `products(...)` page, in order.
    pub async fn names(&self, args: &str) -> Vec<String> {
        let r = self
            .gql(
                &format!("{{ products({args}) {{ nodes {{ name }} }} }}"),
                json!({}),
            )
            .await;
        r.ok()["products"]["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .map(|n| n["name"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

/// POSTs `body` to `url` and returns the JSON answer (for requests sent from spawned tasks).
pub async fn post_value(client: reqwest::Client, url: String, body: Value) -> Value {
    client
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("request reaches the server")
        .json()
        .await
        .expect("JSON body")
}

/// Runs `f` once per backend.
pub async fn each_backend<F, Fut>(f: F)
where
    F: Fn(Backend) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for b in backends() {
        f(b).await;
    }
}
