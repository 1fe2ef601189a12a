//! The GraphQL-over-HTTP transport, written around the schema instead of using
//! async-graphql-axum's extractor, which executes mutations sent with GET, parses
//! `text/plain` and form bodies as JSON (CSRF-able "simple requests"), reads bodies
//! without a size limit, and always answers `application/graphql-response+json`.
//!
//! A request's way through: `post` or `get` (negotiate; 406, 415, 413) -> `responses`
//! (a repeated query whose stamps all hold is answered here, unparsed) -> read the
//! request (400) -> `persisted` (a hash becomes its document; 404 for an unknown one;
//! such a request tries `responses` only now) -> 405 for a GET mutation -> `execute` (document guards, loaders, timeout; store the answer
//! when it may be replayed) -> `respond` (status, media type, masking,
//! `extensions.cache`, `x-cache`, `Cache-Control`).
//!
//! Layout:
//! - `negotiate`: `Accept` and `Content-Type`.
//! - `post`, `get`: the two ways a request arrives.
//! - `execute`: guards and execution.
//! - `respond`: answers and transport errors (`Rejection`), codes from `error::ErrorCode`.
//! - `responses`: the response cache (replay of repeated reads without execution).
//! - `persisted`: automatic persisted queries (Apollo's APQ).
//! - `playground`: the embedded GraphiQL page.
//! - `ws`: the WebSocket upgrade of `GET /graphql` (subscriptions), with every guard.
pub mod execute;
pub mod get;
pub mod negotiate;
pub mod persisted;
pub mod playground;
pub mod post;
pub mod respond;
pub mod responses;
pub mod ws;

pub use get::get;
pub use post::post;
