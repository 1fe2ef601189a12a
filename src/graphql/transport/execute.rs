//! Running one request: the document guards that must run before async-graphql sees
//! it, the admin check, per-request loaders, and the request timeout.
use axum::{
    http::{HeaderMap, header},
    response::Response,
};
use subtle::ConstantTimeEq;

use super::{negotiate::Media, respond, respond::Rejection};
use crate::{
    app::AppState,
    error::ErrorCode,
    graphql::{guard, loaders::RequestContext},
};

/// How the request arrived; GET answers may be cached by HTTP caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

pub async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    mut request: async_graphql::Request,
    media: Media,
    method: Method,
) -> Response {
    if let Err(message) = check_document(&mut request) {
        return Rejection::document(message, media).into_response(media);
    }
    let ctx = RequestContext::new(&state.catalog, is_admin(headers, &state.admin_token));
    let tally = ctx.tally.clone();
    let operation = request.operation_name.clone();
    // Dropping the future on timeout cancels the work (queries, loaders) at its next
    // await; writes run in tasks of their own and finish (see `catalog::write`).
    let execution = tokio::time::timeout(
        state.config.request_timeout,
        state
            .schema
            .execute(request.data(ctx).data(state.schema.clone())),
    );
    let Ok(response) = execution.await else {
        crate::metrics::graphql_operation(operation.as_deref(), false);
        return Rejection::new(
            ErrorCode::Timeout,
            "the request took too long and was cancelled",
        )
        .into_response(media);
    };
    crate::metrics::graphql_operation(operation.as_deref(), response.errors.is_empty());
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    respond::executed(response, media, method == Method::Get, &tally, request_id)
}

/// The guards async-graphql's own checks cannot replace: a linear nesting scan before
/// the recursive parser, then the fragment-expansion bound on the parsed document
/// (which async-graphql reuses). A parse error is left to async-graphql to report.
fn check_document(request: &mut async_graphql::Request) -> Result<(), String> {
    guard::check_nesting(&request.query, guard::MAX_NESTING)?;
    match request.parsed_query() {
        Ok(doc) => guard::check_expansion(doc, guard::MAX_EXPANDED_FIELDS),
        Err(_) => Ok(()),
    }
}

/// Whether the request carries the admin bearer token (constant-time comparison).
fn is_admin(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())))
}
