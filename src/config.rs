//! `Config::from_env()`: every setting larder reads, from environment variables (and a
//! `.env` file if present), parsed once in `main` and passed down. `env.example` lists
//! each variable with its default; keep the two in step.
use std::{fmt, net::SocketAddr, time::Duration};

/// Which cache sits in front of the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheBackendKind {
    /// Redis or Valkey through fred (`REDIS_URL`); shared by every instance.
    Redis,
    /// An in-process moka cache; right for a single instance only.
    Memory,
    /// No cache: every read goes to the database (for comparisons).
    None,
}

impl CacheBackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Memory => "memory",
            Self::None => "none",
        }
    }
}

/// Time-to-live settings for each kind of cache entry.
#[derive(Clone, Debug)]
pub struct CacheTtls {
    /// A product entry (and its tombstones).
    pub product: Duration,
    /// A category entry.
    pub category: Duration,
    /// A list page (ids and count only).
    pub list: Duration,
    /// The "this id does not exist" marker.
    pub absent: Duration,
    /// +-percent of random jitter on every TTL, so entries filled together expire apart.
    pub jitter_percent: u32,
}

/// Everything larder can be told from outside.
#[derive(Clone)]
pub struct Config {
    /// Address the HTTP server binds (`BIND_ADDR`).
    pub bind_addr: SocketAddr,
    /// sea-orm connection URL; a SQLite file unless a Postgres URL is given.
    pub database_url: String,
    /// Upper bound of the database connection pool.
    pub db_max_connections: u32,
    /// Longest wait to open or borrow a database connection.
    pub db_timeout: Duration,
    /// Redis/Valkey URL; unset means no Redis.
    pub redis_url: Option<String>,
    /// The backend chosen from `CACHE_BACKEND` and the URLs (see `resolve_backend`).
    pub cache_backend: CacheBackendKind,
    /// Prefix of every cache key, so several apps can share one Redis.
    pub cache_prefix: String,
    /// Per-entity TTLs.
    pub cache_ttls: CacheTtls,
    /// How long one Redis command may take before it counts as a miss.
    pub cache_timeout: Duration,
    /// How long a cache read may wait on a connected Redis before its request reads the
    /// database instead (slow is not down).
    pub cache_read_budget: Duration,
    /// Database reads at once (below the pool size, leaving room for writes).
    pub db_read_concurrency: usize,
    /// Database reads that may wait for one of those slots; beyond: `OVERLOADED`.
    pub db_read_queue: usize,
    /// Requests served at once; beyond, 503 `OVERLOADED` with `Retry-After`.
    pub max_in_flight: usize,
    /// Replicas a write's tombstone must reach (`WAIT`) before its mutation reports it
    /// delivered; 0 = off.
    pub cache_wait_replicas: u32,
    /// How long one `WAIT` may block.
    pub cache_wait_timeout: Duration,
    /// Hash-tag groups the keys spread over on a Redis Cluster (`cache::keys`); part of
    /// the key layout, so every instance on one cluster must use the same value.
    pub cache_groups: usize,
    /// Insert the demo catalog on first start with an empty database.
    pub seed_demo: bool,
    /// Bearer token every mutation needs; generated at start when unset.
    pub admin_token: Option<String>,
    /// `compact` (default) or `json` log lines.
    pub log_json: bool,
    /// Largest accepted request body.
    pub body_limit_bytes: usize,
    /// How long one GraphQL request may run before it is cancelled.
    pub request_timeout: Duration,
    /// Whether introspection is served (GraphiQL and schema tooling need it).
    pub introspection: bool,
    /// Bytes the in-process response cache may hold; 0 turns it off.
    pub response_cache_bytes: u64,
    /// Whether persisted queries (APQ) are accepted (`PERSISTED_QUERIES`).
    pub persisted_queries: bool,
    /// The TTL and bounds of registered persisted query documents.
    pub persisted_limits: crate::cache::documents::Limits,
    /// WebSocket subscriptions: connections, per-connection and unfiltered limits,
    /// timeouts (`SUBSCRIPTION_*`).
    pub subscriptions: SubscriptionLimits,
    /// Deepest selection a query may have.
    pub max_depth: usize,
    /// Highest complexity a query may have (every field 1, list fields times `first`).
    pub max_complexity: usize,
    /// Origins allowed to call the API from a browser; empty = CORS off; `*` = any.
    pub cors_allow_origins: Vec<String>,
    /// SQL statements one request may cause (`QUERY_MAX_SQL_STATEMENTS`); beyond, its
    /// reads fail with `QUERY_TOO_EXPENSIVE`.
    pub max_sql_per_request: usize,
    /// New cache keys per second this instance may create for what reads asked (list
    /// pages, "no such id" markers): keys whose number is not bounded by the catalog.
    pub cache_fill_budget: u32,
    /// HTTP connections served at once; at the cap, the longest-idle one is closed to
    /// admit a new one (`MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// How long a client may take to send a request's headers, and how long a
    /// keep-alive connection may sit idle (`HTTP_HEADER_TIMEOUT_MS`).
    pub header_timeout: Duration,
    /// Persisted query registrations one client address may make per minute.
    pub persisted_registrations_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` names the client (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<crate::net::Cidr>,
    /// Operation names that become `/metrics` labels besides the dashboard's own
    /// (`METRICS_OPERATION_NAMES`); every other name counts as `other`.
    pub metrics_operation_names: Vec<String>,
}

/// The bounds of WebSocket subscriptions (see the README's "Subscriptions").
#[derive(Clone, Debug)]
pub struct SubscriptionLimits {
    /// WebSocket connections this instance serves at once; beyond, 503 on the upgrade.
    pub max_connections: usize,
    /// Subscriptions one connection may hold at once.
    pub max_per_connection: usize,
    /// `productChanged` subscriptions without an id on this instance (each costs work
    /// for every change of every product).
    pub max_unfiltered: usize,
    /// Of those, how many one connection may hold.
    pub max_unfiltered_per_connection: usize,
    /// How long a connection may take to send `connection_init`.
    pub init_timeout: Duration,
    /// How often the server pings; a connection silent for two of these is closed.
    pub keepalive: Duration,
    /// How long sending one message may wait on a client that does not read.
    pub send_timeout: Duration,
}

/// A setting that could not be parsed; names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://larder.db?mode=rwc";

impl Config {
    /// Reads the process environment (after loading `.env`, if there is one).
    pub fn from_env() -> Result<Self, ConfigError> {
        let _ = dotenvy::dotenv();
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Builds a config from any key lookup; tests pass a map instead of the environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let database_url = get("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        let redis_url = get("REDIS_URL");
        let cache_backend =
            resolve_backend(get("CACHE_BACKEND").as_deref(), &database_url, &redis_url)?;
        let db_max_connections: u32 = parse(&get, "DB_MAX_CONNECTIONS", 10)?;
        Ok(Self {
            bind_addr: parse(&get, "BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 8000)))?,
            db_max_connections,
            db_timeout: Duration::from_millis(parse(&get, "DB_TIMEOUT_MS", 750)?),
            cache_prefix: get("CACHE_PREFIX").unwrap_or_else(|| "larder:".into()),
            cache_ttls: CacheTtls {
                product: Duration::from_secs(parse(&get, "CACHE_TTL_PRODUCT_SECS", 600)?),
                category: Duration::from_secs(parse(&get, "CACHE_TTL_CATEGORY_SECS", 600)?),
                list: Duration::from_secs(parse(&get, "CACHE_TTL_LIST_SECS", 300)?),
                absent: Duration::from_secs(parse(&get, "CACHE_TTL_ABSENT_SECS", 60)?),
                jitter_percent: parse(&get, "CACHE_TTL_JITTER_PERCENT", 10u32)?.min(50),
            },
            cache_timeout: Duration::from_millis(parse(&get, "CACHE_TIMEOUT_MS", 100)?),
            cache_read_budget: Duration::from_millis(parse(&get, "CACHE_READ_BUDGET_MS", 500)?),
            db_read_concurrency: match parse(&get, "DB_READ_CONCURRENCY", 0usize)? {
                0 => (db_max_connections as usize).saturating_sub(2).max(1),
                n => n,
            },
            db_read_queue: parse(&get, "DB_READ_QUEUE", 1024usize)?,
            max_in_flight: parse(&get, "MAX_IN_FLIGHT", 10_000usize)?,
            cache_wait_replicas: parse(&get, "CACHE_WAIT_REPLICAS", 0u32)?,
            cache_wait_timeout: Duration::from_millis(parse(&get, "CACHE_WAIT_TIMEOUT_MS", 100)?),
            cache_groups: parse(&get, "CACHE_GROUPS", 16usize)?
                .clamp(1, crate::cache::keys::MAX_GROUPS),
            seed_demo: parse(&get, "SEED_DEMO", true)?,
            admin_token: get("ADMIN_TOKEN"),
            log_json: match get("LOG_FORMAT").as_deref() {
                None | Some("compact") => false,
                Some("json") => true,
                Some(other) => {
                    return Err(ConfigError {
                        name: "LOG_FORMAT",
                        reason: format!("expected compact or json, got {other:?}"),
                    });
                }
            },
            body_limit_bytes: parse(&get, "BODY_LIMIT_BYTES", 64 * 1024)?,
            request_timeout: Duration::from_millis(parse(&get, "REQUEST_TIMEOUT_MS", 5_000)?),
            introspection: parse(&get, "INTROSPECTION", true)?,
            response_cache_bytes: parse(&get, "RESPONSE_CACHE_MAX_BYTES", 64 * 1024 * 1024)?,
            persisted_queries: parse(&get, "PERSISTED_QUERIES", true)?,
            persisted_limits: crate::cache::documents::Limits {
                ttl: match parse(&get, "PERSISTED_QUERY_TTL_SECS", 86_400u64)? {
                    t @ 1..=31_536_000 => Duration::from_secs(t),
                    t => {
                        return Err(ConfigError {
                            name: "PERSISTED_QUERY_TTL_SECS",
                            reason: format!("{t} is outside 1..=31536000 (a year)"),
                        });
                    }
                },
                max_count: parse(&get, "PERSISTED_QUERY_MAX_COUNT", 10_000)?,
                max_bytes: parse(&get, "PERSISTED_QUERY_MAX_BYTES", 16 * 1024 * 1024)?,
            },
            subscriptions: SubscriptionLimits {
                max_connections: parse(&get, "SUBSCRIPTION_MAX_CONNECTIONS", 1_000)?,
                max_per_connection: parse(&get, "SUBSCRIPTION_MAX_PER_CONNECTION", 20)?,
                max_unfiltered: parse(&get, "SUBSCRIPTION_MAX_UNFILTERED", 500)?,
                max_unfiltered_per_connection: parse(
                    &get,
                    "SUBSCRIPTION_MAX_UNFILTERED_PER_CONNECTION",
                    2,
                )?,
                init_timeout: Duration::from_millis(parse(
                    &get,
                    "SUBSCRIPTION_INIT_TIMEOUT_MS",
                    3_000,
                )?),
                keepalive: Duration::from_millis(
                    parse(&get, "SUBSCRIPTION_KEEPALIVE_MS", 15_000u64)?.max(100),
                ),
                send_timeout: Duration::from_millis(parse(
                    &get,
                    "SUBSCRIPTION_SEND_TIMEOUT_MS",
                    5_000,
                )?),
            },
            max_depth: match parse(&get, "QUERY_MAX_DEPTH", 15)? {
                d @ 1..=32 => d,
                d => {
                    return Err(ConfigError {
                        name: "QUERY_MAX_DEPTH",
                        reason: format!(
                            "{d} is outside 1..=32 (32 is the parser's recursion limit)"
                        ),
                    });
                }
            },
            max_complexity: parse(&get, "QUERY_MAX_COMPLEXITY", 5_000)?,
            cors_allow_origins: list(get("CORS_ALLOW_ORIGINS")),
            max_sql_per_request: match parse(&get, "QUERY_MAX_SQL_STATEMENTS", 50usize)? {
                n @ 1..=10_000 => n,
                n => {
                    return Err(ConfigError {
                        name: "QUERY_MAX_SQL_STATEMENTS",
                        reason: format!("{n} is outside 1..=10000"),
                    });
                }
            },
            cache_fill_budget: parse(&get, "CACHE_FILL_BUDGET_PER_SEC", 50u32)?,
            max_connections: match parse(&get, "MAX_CONNECTIONS", 10_000usize)? {
                0 => {
                    return Err(ConfigError {
                        name: "MAX_CONNECTIONS",
                        reason: "0 would admit no connection".into(),
                    });
                }
                n => n,
            },
            header_timeout: Duration::from_millis(
                parse(&get, "HTTP_HEADER_TIMEOUT_MS", 10_000u64)?.max(100),
            ),
            persisted_registrations_per_minute: parse(
                &get,
                "PERSISTED_QUERY_REGISTRATIONS_PER_MINUTE",
                60u32,
            )?,
            trusted_proxies: list(get("TRUSTED_PROXIES"))
                .iter()
                .map(|c| {
                    c.parse().map_err(|e: String| ConfigError {
                        name: "TRUSTED_PROXIES",
                        reason: e,
                    })
                })
                .collect::<Result<_, _>>()?,
            metrics_operation_names: list(get("METRICS_OPERATION_NAMES")),
            database_url,
            redis_url,
            cache_backend,
        })
    }

    /// True when the catalog lives in SQLite (the embedded default).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}

/// `auto` (default): Redis when `REDIS_URL` is set; the in-process cache on the embedded
/// SQLite default; otherwise none, because several instances on one Postgres, each with
/// a private cache, would serve each other's stale data.
fn resolve_backend(
    asked: Option<&str>,
    database_url: &str,
    redis_url: &Option<String>,
) -> Result<CacheBackendKind, ConfigError> {
    let err = |reason: String| ConfigError {
        name: "CACHE_BACKEND",
        reason,
    };
    match asked.unwrap_or("auto") {
        "auto" if redis_url.is_some() => Ok(CacheBackendKind::Redis),
        "auto" if database_url.starts_with("sqlite:") => Ok(CacheBackendKind::Memory),
        "auto" | "none" => Ok(CacheBackendKind::None),
        "memory" => Ok(CacheBackendKind::Memory),
        "redis" if redis_url.is_some() => Ok(CacheBackendKind::Redis),
        "redis" => Err(err("redis needs REDIS_URL".into())),
        other => Err(err(format!(
            "expected auto, redis, memory or none, got {other:?}"
        ))),
    }
}

/// A comma-separated list, items trimmed, empty ones dropped.
fn list(raw: Option<String>) -> Vec<String> {
    raw.map(|v| {
        v.split(',')
            .map(|o| o.trim().to_string())
            .filter(|o| !o.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

fn parse<T: std::str::FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T::Err: fmt::Display,
{
    match get(name) {
        None => Ok(default),
        Some(raw) => raw.trim().parse().map_err(|e: T::Err| ConfigError {
            name,
            reason: e.to_string(),
        }),
    }
}

/// Hides passwords in URLs and the admin token, so a logged config leaks nothing.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("bind_addr", &self.bind_addr)
            .field("database_url", &redact_url(&self.database_url))
            .field("db_max_connections", &self.db_max_connections)
            .field("db_timeout", &self.db_timeout)
            .field("redis_url", &self.redis_url.as_deref().map(redact_url))
            .field("cache_backend", &self.cache_backend)
            .field("cache_prefix", &self.cache_prefix)
            .field("cache_ttls", &self.cache_ttls)
            .field("cache_timeout", &self.cache_timeout)
            .field("cache_read_budget", &self.cache_read_budget)
            .field("db_read_concurrency", &self.db_read_concurrency)
            .field("db_read_queue", &self.db_read_queue)
            .field("max_in_flight", &self.max_in_flight)
            .field("cache_wait_replicas", &self.cache_wait_replicas)
            .field("cache_wait_timeout", &self.cache_wait_timeout)
            .field("cache_groups", &self.cache_groups)
            .field("seed_demo", &self.seed_demo)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("log_json", &self.log_json)
            .field("body_limit_bytes", &self.body_limit_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("introspection", &self.introspection)
            .field("response_cache_bytes", &self.response_cache_bytes)
            .field("persisted_queries", &self.persisted_queries)
            .field("persisted_limits", &self.persisted_limits)
            .field("subscriptions", &self.subscriptions)
            .field("max_depth", &self.max_depth)
            .field("max_complexity", &self.max_complexity)
            .field("cors_allow_origins", &self.cors_allow_origins)
            .field("max_sql_per_request", &self.max_sql_per_request)
            .field("cache_fill_budget", &self.cache_fill_budget)
            .field("max_connections", &self.max_connections)
            .field("header_timeout", &self.header_timeout)
            .field(
                "persisted_registrations_per_minute",
                &self.persisted_registrations_per_minute,
            )
            .field("trusted_proxies", &self.trusted_proxies)
            .field("metrics_operation_names", &self.metrics_operation_names)
            .finish()
    }
}

/// Query parameters whose values are secrets (`?password=`, as libpq and sqlx read
/// them, and the like).
const SECRET_PARAMS: [&str; 6] = ["password", "pass", "pwd", "secret", "token", "sslpassword"];

/// `scheme://user:secret@host/db?password=x` -> `scheme://user:***@host/db?password=***`.
pub fn redact_url(url: &str) -> String {
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let mut out = match (head.find("://"), head.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &head[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &head[..s + 3], user, &head[at..])
        }
        _ => head.to_string(),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if SECRET_PARAMS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=***")
                }
                _ => p.to_string(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_the_embedded_sqlite_catalog_with_the_memory_cache() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(c.cache_backend, CacheBackendKind::Memory);
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:8000");
        assert_eq!(c.cache_ttls.product.as_secs(), 600);
        assert_eq!(c.cache_ttls.list.as_secs(), 300);
    }

    #[test]
    fn postgres_without_redis_runs_uncached_unless_memory_is_asked_for() {
        let pg = ("DATABASE_URL", "postgres://u:p@localhost/db");
        assert_eq!(config(&[pg]).unwrap().cache_backend, CacheBackendKind::None);
        let mem = config(&[pg, ("CACHE_BACKEND", "memory")]).unwrap();
        assert_eq!(mem.cache_backend, CacheBackendKind::Memory);
        let redis = config(&[pg, ("REDIS_URL", "redis://127.0.0.1/")]).unwrap();
        assert_eq!(redis.cache_backend, CacheBackendKind::Redis);
    }

    #[test]
    fn bad_values_name_the_variable() {
        let e = config(&[("CACHE_TIMEOUT_MS", "soon")]).unwrap_err();
        assert_eq!(e.name, "CACHE_TIMEOUT_MS");
        assert_eq!(
            config(&[("CACHE_BACKEND", "redis")]).unwrap_err().name,
            "CACHE_BACKEND"
        );
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let c = config(&[
            ("DATABASE_URL", "postgres://app:hunter2@db/larder"),
            ("ADMIN_TOKEN", "sekrit"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("sekrit"),
            "{shown}"
        );
        assert!(shown.contains("postgres://app:***@db/larder"));
    }

    #[test]
    fn urls_are_redacted_in_their_credentials_and_secret_parameters() {
        assert_eq!(
            redact_url("postgres://db/larder?user=app&password=hunter2&sslmode=require"),
            "postgres://db/larder?user=app&password=***&sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://app:pw@db/x?PASSWORD=a&pass=b"),
            "postgres://app:***@db/x?PASSWORD=***&pass=***"
        );
        assert_eq!(
            redact_url("sqlite://larder.db?mode=rwc"),
            "sqlite://larder.db?mode=rwc"
        );
    }

    #[test]
    fn new_bounds_are_read_and_checked() {
        let c = config(&[
            ("QUERY_MAX_SQL_STATEMENTS", "20"),
            ("TRUSTED_PROXIES", "10.0.0.0/8, ::1"),
            ("CORS_ALLOW_ORIGINS", "*"),
        ])
        .unwrap();
        assert_eq!(c.max_sql_per_request, 20);
        assert_eq!(c.trusted_proxies.len(), 2);
        assert_eq!(c.cors_allow_origins, ["*"]);
        for (name, bad) in [
            ("QUERY_MAX_SQL_STATEMENTS", "0"),
            ("MAX_CONNECTIONS", "0"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("TRUSTED_PROXIES", "not-an-address"),
        ] {
            assert_eq!(config(&[(name, bad)]).unwrap_err().name, name, "{bad}");
        }
    }
}
