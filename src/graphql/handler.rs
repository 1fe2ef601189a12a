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

use async_graphql::{ServerError, Value, parser::types::OperationType};
use axum::{
    body::Bytes,
    extract::{RawQuery, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use subtle::ConstantTimeEq;

use super::{guard, loaders::RequestContext};
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
        StatusCode::PAYLOAD_TOO_LARGE => "PAYLOAD_TOO_LARGE",
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

pub async fn post(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
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
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let message = match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => {
                    "the request body is larger than the server accepts".to_string()
                }
                _ => rejection.body_text(),
            };
            return error_response(rejection.status(), media, &message);
        }
    };
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
    execute(&state, &headers, request, media, false).await
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
    let operation_name = request.operation_name.clone();
    let nesting_ok = guard::check_nesting(&request.query, guard::MAX_NESTING).is_ok();
    if let Some(doc) = nesting_ok.then(|| request.parsed_query().ok()).flatten() {
        let is_mutation = match &operation_name {
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
    execute(&state, &headers, request, media, true).await
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
    mut request: async_graphql::Request,
    media: Media,
    is_get: bool,
) -> Response {
    // Parsed once here (after a linear nesting scan that keeps the recursive parser's
    // stack bounded); async-graphql reuses the parsed document.
    let checked = guard::check_nesting(&request.query, guard::MAX_NESTING).and_then(|()| {
        match request.parsed_query() {
            Ok(doc) => guard::check_expansion(doc, guard::MAX_EXPANDED_FIELDS),
            Err(_) => Ok(()), // async-graphql reports the parse error itself
        }
    });
    if let Err(message) = checked {
        let status = if media == Media::GraphQLResponse {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": "GRAPHQL_VALIDATION_FAILED" } }] });
        let mut resp = (status, body.to_string()).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(media.content_type()),
        );
        return resp;
    }
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
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    mask_errors(&mut response.errors, request_id);
    // HTTP caching only for GET queries that succeeded and touched only hinted types;
    // POST, mutations (POST only) and errors are never stored.
    let cache_control = match response.cache_control.value() {
        Some(v) if is_get && response.errors.is_empty() && v.starts_with("max-age") => {
            HeaderValue::from_str(&format!("public, {v}"))
                .unwrap_or(HeaderValue::from_static("no-store"))
        }
        _ => HeaderValue::from_static("no-store"),
    };
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
    h.insert(header::CACHE_CONTROL, cache_control);
    h.insert(
        header::VARY,
        HeaderValue::from_static("accept, authorization"),
    );
    resp
}

/// Internal errors get the request id, which tags the server's log lines about them.
/// Errors without a code come from async-graphql itself: parse and validation errors
/// (no path), input coercion errors (with a path), and anything unexpected. The first
/// two get a code; the last is masked, since its text may name internals.
fn mask_errors(errors: &mut [ServerError], request_id: &str) {
    for e in errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        let code = match ext.get("code") {
            Some(Value::String(code)) => code.clone(),
            _ if e.path.is_empty() => "GRAPHQL_VALIDATION_FAILED".into(),
            // async-graphql's own input errors: argument and variable coercion.
            _ if [
                "Failed to parse",
                "Invalid value",
                "Variable ",
                "Expected input type",
            ]
            .iter()
            .any(|p| e.message.starts_with(p)) =>
            {
                "BAD_USER_INPUT".into()
            }
            _ => {
                tracing::error!(error = %e.message, "unexpected resolver error");
                e.message =
                    "internal error; the server log has the details under this request's id".into();
                "INTERNAL_SERVER_ERROR".into()
            }
        };
        if code == "INTERNAL_SERVER_ERROR" {
            ext.set("requestId", request_id);
        }
        ext.set("code", code);
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
