//! What the GraphQL handlers share: built once at start-up, cloned (one `Arc`) into every
//! request. The schemas, the catalog, the response cache, the WebSocket hub, the
//! per-client limits, and the few settings the transport reads.
use std::{sync::Arc, time::Duration};

use tokio::sync::Semaphore;

use super::{client::PerAddress, responses::ResponseCache, ws::Hub};
use crate::{
    catalog::Catalog,
    config::{Cidr, Config},
    graphql::{self, AppSchema, QueryLimits},
};

/// The state of `POST /graphql` and `GET /graphql` (with its WebSocket upgrade).
#[derive(Clone)]
pub struct Endpoint(Arc<Shared>);

/// The fields of `Endpoint` (reached through `Deref`).
pub struct Shared {
    /// The use-cases (database pool and cache inside).
    pub catalog: Catalog,
    /// The GraphQL schema HTTP requests run on.
    pub schema: AppSchema,
    /// The schema WebSocket connections run on (`graphql::build_live_schema`).
    pub live_schema: AppSchema,
    /// The bearer token mutations need (from `ADMIN_TOKEN`, or generated at start).
    pub admin_token: String,
    /// Whole answers of repeated reads, replayed while their stamps hold.
    pub responses: ResponseCache,
    /// WebSocket connections and subscriptions of this instance.
    pub live: Hub,
    /// Persisted query registrations per client address.
    pub registrations: PerAddress,
    /// Long documents run one at a time, on a thread of their own (`execute::heavy`).
    pub heavy: Arc<Semaphore>,
    pub settings: Settings,
}

/// The settings the transport reads.
pub struct Settings {
    /// How long one request may run (`REQUEST_TIMEOUT_MS`).
    pub request_timeout: Duration,
    /// Whether the schema is served (GraphiQL needs it).
    pub introspection: bool,
    /// Whether persisted queries (APQ) are accepted.
    pub persisted_queries: bool,
    /// Proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<Cidr>,
    /// Browser origins allowed besides this server's own (for WebSocket upgrades).
    pub cors_allow_origins: Vec<String>,
    /// Largest body, and largest WebSocket message.
    pub body_limit_bytes: usize,
}

impl Endpoint {
    pub fn new(config: &Config, catalog: Catalog, admin_token: String) -> Self {
        let limits = QueryLimits {
            introspection: config.introspection,
            max_depth: config.max_depth,
            max_complexity: config.max_complexity,
        };
        Self(Arc::new(Shared {
            catalog,
            schema: graphql::build_schema(&limits),
            live_schema: graphql::build_live_schema(&limits),
            admin_token,
            responses: ResponseCache::new(config.response_cache_bytes),
            live: Hub::new(config.subscriptions.clone()),
            registrations: PerAddress::new(config.persisted_registrations_per_minute),
            heavy: Arc::new(Semaphore::new(1)),
            settings: Settings {
                request_timeout: config.request_timeout,
                introspection: config.introspection,
                persisted_queries: config.persisted_queries,
                trusted_proxies: config.trusted_proxies.clone(),
                cors_allow_origins: config.cors_allow_origins.clone(),
                body_limit_bytes: config.body_limit_bytes,
            },
        }))
    }
}

impl std::ops::Deref for Endpoint {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
