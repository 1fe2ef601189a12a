//! Secrets stay out of logs: `Config`'s `Debug` hides the admin token and the passwords
//! of URLs, and `redact_url` does the latter for any URL that is logged.
use std::fmt;

use super::Config;

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
            .field("cache_lease", &self.cache_lease)
            .field("cache_layout", &self.cache_layout)
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

    fn config(pairs: &[(&str, &str)]) -> Config {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned()).expect("config")
    }

    #[test]
    fn debug_output_redacts_secrets() {
        let c = config(&[
            ("DATABASE_URL", "postgres://app:hunter2@db/larder"),
            ("ADMIN_TOKEN", "sekrit"),
        ]);
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
}
