//! The GraphQL-over-HTTP transport, written around the schema instead of using
//! async-graphql-axum's extractor, which executes mutations sent with GET, parses
//! `text/plain` and form bodies as JSON (CSRF-able "simple requests"), reads bodies
//! without a size limit, and always answers `application/graphql-response+json`.
//!
//! It sits above `graphql` (which it runs) and below `app` (which routes to it); its
//! handlers get `Endpoint` (`state`), never the whole application.
//!
//! A request's way through: `post` or `get` (negotiate; 406, 415, 413) -> `responses`
//! (a repeated query whose stamps all hold is answered here, unparsed) -> read the
//! request (400) -> `persisted` (a hash becomes its document; 404 for an unknown one;
//! such a request tries `responses` only now) -> 405 for a GET mutation -> `execute` (document guards, loaders, timeout; store the answer
//! when it may be replayed) -> `respond` (status, media type, masking,
//! `extensions.cache`, `x-cache`, `Cache-Control`).
//!
//! Layout:
//! - `state`: `Endpoint`, what the handlers share.
//! - `negotiate`: `Accept` and `Content-Type`.
//! - `post`, `get`: the two ways a request arrives.
//! - `execute`: guards and execution (long documents on a lane of their own).
//! - `respond`: answers and transport errors (`Rejection`), codes from `error::ErrorCode`.
//! - `responses`: the response cache (replay of repeated reads without execution).
//! - `persisted`: automatic persisted queries (Apollo's APQ).
//! - `playground`: the embedded GraphiQL page.
//! - `ws`: the WebSocket upgrade of `GET /graphql` (subscriptions), with every guard.
//! - `client`: who is asking (the client address behind trusted proxies), per-address
//!   limits.
mod client;
mod execute;
mod get;
mod negotiate;
mod persisted;
mod playground;
mod post;
mod respond;
mod responses;
mod state;
mod ws;

pub use get::get;
pub use post::post;
pub use state::{Endpoint, Settings};
pub use ws::get_or_upgrade;

#[cfg(test)]
mod tests {
    use axum::{
        body::Bytes,
        extract::{RawQuery, State},
        http::HeaderMap,
    };

    use crate::{catalog::Catalog, config::Config};

    /// Every request allocates its handler's future, and a replayed read moves it whole:
    /// a rarely taken branch left unboxed (the persisted-query lookup was 21 KB, the
    /// WebSocket upgrade 4 KB) makes every cached read carry its size.
    #[tokio::test]
    async fn handler_futures_stay_small() {
        let path = std::env::temp_dir().join(format!("larder-sizes-{}.db", std::process::id()));
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let config = Config::from_lookup(|k| match k {
            "DATABASE_URL" => Some(url.clone()),
            "CACHE_BACKEND" => Some("memory".into()),
            "BIND_ADDR" => Some("127.0.0.1:0".into()),
            "SEED_DEMO" => Some("false".into()),
            _ => None,
        })
        .expect("config");
        let db = crate::db::connect(&url, 2, std::time::Duration::from_secs(1))
            .await
            .expect("a database");
        let cache = crate::cache::Cache::from_config(&config).expect("a cache");
        let catalog = Catalog::new(db, std::sync::Arc::new(cache));
        let state = super::Endpoint::new(&config, catalog, "token".into());
        let get = super::get(State(state.clone()), None, HeaderMap::new(), RawQuery(None));
        let post = super::post(
            State(state.clone()),
            None,
            HeaderMap::new(),
            Ok(Bytes::new()),
        );
        let either = super::ws::get_or_upgrade(State(state), axum::extract::Request::default());
        let sizes = [
            std::mem::size_of_val(&get),
            std::mem::size_of_val(&post),
            std::mem::size_of_val(&either),
        ];
        drop((get, post, either));
        let _ = std::fs::remove_file(&path);
        assert!(sizes.iter().all(|&s| s <= 8 * 1024), "{sizes:?}");
    }
}
