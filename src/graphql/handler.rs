//! HTTP transport for GraphQL, written around the schema instead of using
//! async-graphql-axum's extractor, which executes mutations sent with GET, parses
//! `text/plain` and form bodies as JSON (CSRF-able "simple requests"), reads bodies
//! without a size limit, and always answers `application/graphql-response+json`.
//!
//! - `POST /graphql`: `application/json` bodies only (415 otherwise); the body limit is
//!   the router's `DefaultBodyLimit`, enforced while reading (413).
//! - `GET /graphql`: GraphiQL for browsers; with `?query=` executes queries only
//!   (mutations get 405 with `Allow: POST`).
//! - Responses negotiate `application/graphql-response+json` or `application/json`
//!   (406 when neither is acceptable), carry `extensions.cache` and `x-cache`.
use std::collections::HashMap;

use async_graphql::{
    ServerError, Value,
    parser::{parse_query, types::OperationType},
};
use axum::{
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use subtle::ConstantTimeEq;

use super::loaders::RequestContext;
use crate::app::AppState;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";
const JSON: &str = "application/json";

/// The media type of the answer, chosen from `Accept`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Media {
    GraphQLResponse,
    Json,
}

impl Media {
    fn content_type(self) -> &'static str {
        match self {
            Media::GraphQLResponse => "application/graphql-response+json; charset=utf-8",
            Media::Json => "application/json; charset=utf-8",
        }
    }
}

/// `Accept` negotiation: `application/graphql-response+json` when the client names it
/// with the highest weight; `application/json` for legacy clients, wildcards and no
/// Accept at all; none (406) when neither is acceptable.
fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Some(Media::Json);
    };
    let mut best: Option<(f32, Media)> = None;
    for part in accept.split(',') {
        let mut fields = part.split(';').map(str::trim);
        let media = fields.next().unwrap_or("").to_ascii_lowercase();
        let q = fields
            .find_map(|p| p.strip_prefix("q="))
            .and_then(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0);
        let candidate = match media.as_str() {
            GRAPHQL_RESPONSE_JSON => Some(Media::GraphQLResponse),
            // Wildcards get the legacy type: clients that name nothing are legacy clients.
            JSON | "application/*" | "*/*" => Some(Media::Json),
            _ => None,
        };
        if let Some(m) = candidate
            && q > 0.0
            && best.is_none_or(|(bq, _)| q > bq)
        {
            best = Some((q, m));
        }
    }
    best.map(|(_, m)| m)
}

/// A transport-level error (no GraphQL execution happened), still in GraphQL's shape
/// with an `extensions.code`.
fn error_response(status: StatusCode, media: Media, message: &str) -> Response {
    let code = match status {
        StatusCode::SERVICE_UNAVAILABLE => "TIMEOUT",
        StatusCode::METHOD_NOT_ALLOWED => "METHOD_NOT_ALLOWED",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UNSUPPORTED_MEDIA_TYPE",
        StatusCode::NOT_ACCEPTABLE => "NOT_ACCEPTABLE",
        _ => "BAD_REQUEST",
    };
    let body =
        serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.content_type()),
    );
    resp
}

pub async fn post(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(media) = negotiate(&headers) else {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            Media::Json,
            "Accept must allow application/graphql-response+json or application/json",
        );
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence != JSON {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            media,
            "Content-Type must be application/json",
        );
    }
    let request = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(serde_json::Value::Array(_)) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                media,
                "batched requests are not supported",
            );
        }
        Ok(v @ serde_json::Value::Object(_)) if !v.get("query").is_some_and(|q| q.is_string()) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                media,
                "the query parameter is missing or not a string",
            );
        }
        Ok(v @ serde_json::Value::Object(_)) => {
            match serde_json::from_value::<async_graphql::Request>(v) {
                Ok(r) => r,
                Err(e) => {
                    return error_response(
                        StatusCode::BAD_REQUEST,
                        media,
                        &format!("invalid GraphQL request: {e}"),
                    );
                }
            }
        }
        Ok(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                media,
                "the body must be a JSON object",
            );
        }
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                media,
                &format!("the body is not valid JSON: {e}"),
            );
        }
    };
    execute(&state, &headers, request, media).await
}

pub async fn get(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let params: HashMap<String, String> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if !params.contains_key("query") && wants_html {
        return Html(graphiql(params.get("token"))).into_response();
    }
    let Some(media) = negotiate(&headers) else {
        return error_response(
            StatusCode::NOT_ACCEPTABLE,
            Media::Json,
            "Accept must allow application/graphql-response+json or application/json",
        );
    };
    let Some(query) = params.get("query") else {
        return error_response(
            StatusCode::BAD_REQUEST,
            media,
            "missing the query parameter",
        );
    };
    let mut request = async_graphql::Request::new(query.clone());
    if let Some(name) = params.get("operationName").filter(|n| !n.is_empty()) {
        request = request.operation_name(name.clone());
    }
    for param in ["variables", "extensions"] {
        let value = match params.get(param).filter(|v| !v.is_empty()) {
            None => continue,
            Some(raw) => serde_json::from_str::<serde_json::Value>(raw),
        };
        match value {
            Ok(v @ serde_json::Value::Object(_)) if param == "variables" => {
                request.variables = async_graphql::Variables::from_json(v);
            }
            Ok(serde_json::Value::Object(_) | serde_json::Value::Null) => {}
            _ => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    media,
                    &format!("{param} must be a JSON object"),
                );
            }
        }
    }
    // A GET must never change anything: refuse mutations before executing.
    if let Ok(doc) = parse_query(&request.query) {
        let is_mutation = match &request.operation_name {
            Some(name) => doc.operations.iter().any(|(n, op)| {
                n.map(|n| n.as_str()) == Some(name.as_str())
                    && op.node.ty == OperationType::Mutation
            }),
            None => {
                doc.operations
                    .iter()
                    .next()
                    .is_some_and(|(_, op)| op.node.ty == OperationType::Mutation)
                    && doc.operations.iter().count() == 1
            }
        };
        if is_mutation {
            let mut resp = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                media,
                "mutations must be sent with POST",
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("POST"));
            return resp;
        }
    }
    execute(&state, &headers, request, media).await
}

/// Whether the request carries the admin bearer token (constant-time comparison).
fn is_admin(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())))
}

async fn execute(
    state: &AppState,
    headers: &HeaderMap,
    request: async_graphql::Request,
    media: Media,
) -> Response {
    let ctx = RequestContext::new(&state.catalog, is_admin(headers, &state.admin_token));
    let tally = ctx.tally.clone();
    let operation = request.operation_name.clone();
    // Dropping the future on timeout cancels the work (queries, loaders) at its next await.
    let execution = tokio::time::timeout(
        state.config.request_timeout,
        state
            .schema
            .execute(request.data(ctx).data(state.schema.clone())),
    );
    let Ok(mut response) = execution.await else {
        crate::metrics::graphql_operation(operation.as_deref(), false);
        let mut resp = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            media,
            "the request took too long and was cancelled",
        );
        resp.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return resp;
    };
    crate::metrics::graphql_operation(operation.as_deref(), response.errors.is_empty());
    response.extensions.insert(
        "cache".into(),
        Value::from_json(tally.to_json()).unwrap_or(Value::Null),
    );
    // A request error (parse, validation) has no data; graphql-response+json says 400.
    // A request error (parse or validation) fails before execution: no error has a path.
    // The spec says `data` is then absent, and graphql-response+json says 400.
    let request_error = response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty());
    let status = if request_error && media == Media::GraphQLResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    mask_request_errors(&mut response.errors);
    let body = match serde_json::to_value(&response) {
        Ok(mut json) => {
            if request_error && let Some(obj) = json.as_object_mut() {
                obj.remove("data");
            }
            json.to_string()
        }
        Err(_) => r#"{"errors":[{"message":"internal error"}]}"#.into(),
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(media.content_type()),
    );
    h.insert("x-cache", HeaderValue::from_static(tally.header()));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Errors without a code come from async-graphql itself: parse and validation errors
/// (no path), input coercion errors (with a path), and anything unexpected. The first
/// two get a code; the last is masked, since its text may name internals.
fn mask_request_errors(errors: &mut [ServerError]) {
    for e in errors {
        let has_code = e
            .extensions
            .as_ref()
            .is_some_and(|x| x.get("code").is_some());
        if has_code {
            continue;
        }
        let code = if e.path.is_empty() {
            "GRAPHQL_VALIDATION_FAILED"
        } else if e.message.starts_with("Failed to parse") || e.message.starts_with("Invalid value")
        {
            "BAD_USER_INPUT"
        } else {
            tracing::error!(error = %e.message, "unexpected resolver error");
            e.message =
                "internal error; the server log has the details under this request's id".into();
            "INTERNAL_SERVER_ERROR"
        };
        e.extensions
            .get_or_insert_with(Default::default)
            .set("code", code);
    }
}

/// GraphiQL, with the admin token preset when the page was opened with `?token=`
/// (only token-shaped values are accepted, so nothing else is echoed into the page).
fn graphiql(token: Option<&String>) -> String {
    let bearer = token
        .filter(|t| {
            !t.is_empty()
                && t.len() <= 256
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))
        })
        .map(|t| format!("Bearer {t}"));
    let mut page = async_graphql::http::GraphiQLSource::build()
        .endpoint("/graphql")
        .title("larder GraphiQL");
    if let Some(b) = &bearer {
        page = page.header("Authorization", b);
    }
    page.finish()
}
