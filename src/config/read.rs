//! Reading the settings: `Config::from_env` and `from_lookup` (tests pass a map), with
//! one parser for every variable (`parse`), the backend choice (`resolve_backend`), and
//! comma-separated lists.
use std::{fmt, net::SocketAddr, time::Duration};

use super::{
    CacheBackendKind, CacheTtls, Config, ConfigError, DEFAULT_DATABASE_URL, PersistedQueryLimits,
    SubscriptionLimits,
};

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
            cache_groups: parse(&get, "CACHE_GROUPS", 16usize)?.clamp(1, super::MAX_CACHE_GROUPS),
            cache_lease: match parse(&get, "CACHE_LEASE_MS", 1_000u64)? {
                ms @ 200..=10_000 => Duration::from_millis(ms),
                ms => {
                    return Err(ConfigError {
                        name: "CACHE_LEASE_MS",
                        reason: format!("{ms} is outside 200..=10000"),
                    });
                }
            },
            cache_layout: cache_layout(&get)?,
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
            persisted_limits: PersistedQueryLimits {
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
}

/// The cache layout this instance speaks: this build's, or in the test suite the one a
/// test names (`LARDER_TEST_CACHE_LAYOUT`), to run an instance "of another version".
#[cfg(feature = "test-hooks")]
fn cache_layout(get: &impl Fn(&str) -> Option<String>) -> Result<i32, ConfigError> {
    match get("LARDER_TEST_CACHE_LAYOUT") {
        None => Ok(super::CACHE_LAYOUT),
        Some(v) => v.parse().map_err(|_| ConfigError {
            name: "LARDER_TEST_CACHE_LAYOUT",
            reason: format!("expected a number, got {v:?}"),
        }),
    }
}

#[cfg(not(feature = "test-hooks"))]
fn cache_layout(_: &impl Fn(&str) -> Option<String>) -> Result<i32, ConfigError> {
    Ok(super::CACHE_LAYOUT)
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
