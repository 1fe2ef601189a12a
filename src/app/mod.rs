//! Building and running the server: start-up (connect, migrate, seed, bind), the state
//! each part of the router gets, and graceful shutdown.
//!
//! Layout: `routes` (the router, its middleware stack, and the probes: `/health`,
//! `/ready`, `/metrics`), `serve` (the accept loop: header timeout, connection cap,
//! client addresses), `overload` (shedding beyond `MAX_IN_FLIGHT`).
mod overload;
mod routes;
mod serve;

use std::{future::Future, sync::Arc, time::Duration};

use axum::Router;
use tokio::net::TcpListener;

use crate::{
    cache::{Cache, CacheError},
    catalog::{Catalog, ReadBound},
    config::Config,
    db, seed,
    transport::Endpoint,
};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    #[error("cache: {0}")]
    Cache(#[from] CacheError),
    #[error("binding {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("seeding: {0:?}")]
    Seed(crate::error::AppError),
}

/// A server that is built (connected, migrated, bound) and ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    /// What the GraphQL handlers share.
    endpoint: Endpoint,
    config: Config,
}

impl Application {
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        crate::metrics::handle();
        crate::metrics::know_operations(
            crate::web::dashboard_operations()
                .into_iter()
                .chain(config.metrics_operation_names.iter().cloned()),
        );
        let db = db::connect(
            &config.database_url,
            config.db_max_connections,
            config.db_timeout,
        )
        .await?;
        let cache = Cache::from_config(&config)?;
        // A bounded wait, so the demo seed and the first requests find the cache
        // connected instead of reading around it (Redis may also be down: go on then).
        cache.wait_connected(Duration::from_secs(2)).await;
        let reads = ReadBound::new(
            config.db_read_concurrency,
            config.db_read_queue,
            config.db_timeout,
        )
        .per_request(config.max_sql_per_request);
        let catalog = Catalog::with_limits(db, Arc::new(cache), reads, config.persisted_limits);
        if config.cache_backend == crate::config::CacheBackendKind::Redis {
            catalog.use_lease_connection(
                db::connect_one(&config.database_url, config.db_timeout).await?,
            );
        }
        catalog.start_background_work().await;
        if config.seed_demo {
            seed::demo_if_empty(&catalog)
                .await
                .map_err(StartupError::Seed)?;
        }
        let admin_token = match &config.admin_token {
            Some(t) => t.clone(),
            None => generate_token(),
        };
        let listener = serve::listen(config.bind_addr).map_err(|source| StartupError::Bind {
            addr: config.bind_addr,
            source,
        })?;
        let endpoint = Endpoint::new(&config, catalog.clone(), admin_token);
        let router = routes::router(&config, endpoint.clone(), routes::Probes::new(catalog));
        Ok(Self {
            listener,
            router,
            endpoint,
            config,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// What the GraphQL handlers share (tests reach the catalog and token through it).
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The use-cases this server runs on.
    pub fn catalog(&self) -> &Catalog {
        &self.endpoint.catalog
    }

    /// The bearer token mutations need (from `ADMIN_TOKEN`, or generated at start).
    pub fn admin_token(&self) -> &str {
        &self.endpoint.admin_token
    }

    /// Serves until SIGTERM or Ctrl-C; in-flight requests finish first.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(serve::shutdown_signal()).await
    }

    /// Serves until `stop` resolves, then drains in-flight requests.
    pub async fn run_until(
        self,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = self.listener.local_addr()?;
        let c = &self.config;
        tracing::info!(
            %addr,
            database = %crate::config::redact_url(&c.database_url),
            cache = self.catalog().cache_status().backend,
            "larder listening"
        );
        if c.admin_token.is_none() {
            // Printed once to the terminal, never into the log (logs travel to places a
            // secret should not); links carry it in the fragment, which no browser sends
            // to a server or in a `Referer`.
            tracing::warn!(
                "ADMIN_TOKEN is not set: generated a token for this run and printed it to stderr (not logged)"
            );
            let token = self.admin_token();
            eprintln!(
                "larder: ADMIN_TOKEN is not set; this run's admin token is {token}\n        dashboard: http://{addr}/#token={token}\n        GraphiQL:  http://{addr}/graphql#token={token}"
            );
        }
        // Stopping tells WebSocket connections too (1001): a graceful shutdown waits for
        // HTTP requests, not for upgraded connections.
        let endpoint = self.endpoint.clone();
        let stop = async move {
            stop.await;
            endpoint.live.begin_shutdown();
        };
        let limits = serve::Limits {
            max_connections: c.max_connections,
            header_timeout: c.header_timeout,
        };
        let served = serve::serve(self.listener, self.router, limits, stop).await;
        self.endpoint.live.closed(Duration::from_secs(1)).await;
        served
    }
}

fn generate_token() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}
