//! `Config::from_env()`: every setting larder reads, from environment variables (and a
//! `.env` file if present), parsed once in `main` and passed down. `env.example` lists
//! each variable with its default; keep the two in step.
//!
//! Layout: the types here; `read` (parsing the variables), `redact` (the `Debug` that
//! hides secrets, and `redact_url`), `cidr` (address ranges for `TRUSTED_PROXIES`).
mod cidr;
mod read;
mod redact;

use std::{net::SocketAddr, time::Duration};

pub use cidr::{Cidr, canonical};
pub use redact::redact_url;

/// The cache layout this build speaks: the key names, entry formats and invalidation
/// rules of every instance sharing a Redis must be one layout, recorded in Postgres
/// (`catalog::lease`). Layout 2 is every release since list counters per (scope, field).
pub const CACHE_LAYOUT: i32 = 2;

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
    /// How long a trust lease lasts (`CACHE_LEASE_MS`): an instance answers from a
    /// shared cache only while it holds one, renewed every half of this through
    /// Postgres; a mutation whose invalidation Redis did not take waits this long (and a
    /// little) before it answers.
    pub cache_lease: Duration,
    /// The cache layout this instance speaks (`CACHE_LAYOUT`; tests may name another).
    pub cache_layout: i32,
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
    pub persisted_limits: PersistedQueryLimits,
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
    pub trusted_proxies: Vec<Cidr>,
    /// Operation names that become `/metrics` labels besides the dashboard's own
    /// (`METRICS_OPERATION_NAMES`); every other name counts as `other`.
    pub metrics_operation_names: Vec<String>,
}

/// The bounds of WebSocket subscriptions (see `docs/api.md`, "Subscriptions").
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

/// The bounds of the persisted query document store (`PERSISTED_QUERY_*`).
#[derive(Clone, Copy, Debug)]
pub struct PersistedQueryLimits {
    /// How long a document stays registered, from its registration.
    pub ttl: Duration,
    /// Most documents registered at once.
    pub max_count: u64,
    /// Most bytes of documents registered at once.
    pub max_bytes: u64,
}

/// The most hash-tag groups a cache key layout may have (`CACHE_GROUPS`).
pub const MAX_CACHE_GROUPS: usize = 32;

/// A setting that could not be parsed; names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid value for {name}: {reason}")]
pub struct ConfigError {
    pub name: &'static str,
    pub reason: String,
}

pub const DEFAULT_DATABASE_URL: &str = "sqlite://larder.db?mode=rwc";

impl Config {
    /// True when the catalog lives in SQLite (the embedded default).
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }
}
