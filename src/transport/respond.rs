//! Building answers: transport errors (no execution happened) and executed GraphQL
//! responses, with their status, media type, `extensions.cache`, `x-cache`,
//! `Cache-Control`, and the masking of errors that must not reach a client as they are.
use std::collections::BTreeMap;

use async_graphql::{ServerError, Value};
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};

use super::negotiate::Media;
use crate::{catalog::RequestTally, error::ErrorCode};

/// An error that ends a request before (or instead of) execution, still in GraphQL's
/// response shape with an `extensions.code`.
#[derive(Debug)]
pub struct Rejection {
    pub code: ErrorCode,
    pub message: String,
    /// Overrides `code.status()` (document errors: 200 for legacy JSON clients).
    pub status: Option<StatusCode>,
}

impl Rejection {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            status: None,
        }
    }

    /// A document error (parse, validation, limits): 400 for
    /// `application/graphql-response+json`, 200 for legacy `application/json`.
    pub fn document(message: impl Into<String>, media: Media) -> Self {
        let status = match media {
            Media::GraphQLResponse => StatusCode::BAD_REQUEST,
            Media::Json => StatusCode::OK,
        };
        Self {
            status: Some(status),
            ..Self::new(ErrorCode::GraphqlValidationFailed, message)
        }
    }

    pub fn into_response(self, media: Media) -> Response {
        let body = serde_json::json!({
            "errors": [{ "message": self.message, "extensions": { "code": self.code.as_str() } }]
        });
        let mut resp =
            (self.status.unwrap_or(self.code.status()), body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(media.content_type()),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.code == ErrorCode::MethodNotAllowed {
            h.insert(header::ALLOW, HeaderValue::from_static("POST"));
        }
        resp
    }
}

/// An executed request's answer. `data_json` is the already serialized `data` when the
/// caller serialized it to store it (answers without errors only).
pub fn executed(
    mut response: async_graphql::Response,
    media: Media,
    is_get: bool,
    tally: &RequestTally,
    request_id: &str,
    data_json: Option<&str>,
) -> Response {
    let request_error = is_request_error(&response);
    let status = if request_error && media == Media::GraphQLResponse {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let cache_control = http_cache_control(&response, is_get);
    let body = match data_json {
        Some(data) if response.errors.is_empty() && response.extensions.is_empty() => {
            with_extensions(data, tally)
        }
        _ => {
            response.extensions.insert(
                "cache".into(),
                Value::from_json(tally.to_json()).unwrap_or(Value::Null),
            );
            mask_errors(&mut response.errors, request_id);
            serde_json::to_string(&Body {
                data: (!request_error).then_some(&response.data),
                errors: &response.errors,
                extensions: &response.extensions,
            })
            .unwrap_or_else(|_| r#"{"errors":[{"message":"internal error"}]}"#.into())
        }
    };
    finish(status, body, media, tally, cache_control)
}

/// A request error (parse or validation) fails before execution: no error has a path.
/// The spec says `data` is then absent, and graphql-response+json says 400.
pub fn is_request_error(response: &async_graphql::Response) -> bool {
    response.data == Value::Null
        && !response.errors.is_empty()
        && response.errors.iter().all(|e| e.path.is_empty())
}

/// A stored answer, replayed with this request's own `extensions.cache`.
pub fn replayed(
    stored: &super::responses::Stored,
    media: Media,
    is_get: bool,
    tally: &RequestTally,
) -> Response {
    let cache_control = if is_get {
        stored.cache_control.clone()
    } else {
        HeaderValue::from_static("no-store")
    };
    let body = with_extensions(&stored.data, tally);
    finish(StatusCode::OK, body, media, tally, cache_control)
}

/// `{"data":<data>,"extensions":{"cache":<tally>}}` from serialized `data`.
fn with_extensions(data: &str, tally: &RequestTally) -> String {
    let cache = tally.json();
    let mut body = String::with_capacity(data.len() + cache.len() + 32);
    body.push_str(r#"{"data":"#);
    body.push_str(data);
    body.push_str(r#","extensions":{"cache":"#);
    body.push_str(&cache);
    body.push_str("}}");
    body
}

fn finish(
    status: StatusCode,
    body: String,
    media: Media,
    tally: &RequestTally,
    cache_control: HeaderValue,
) -> Response {
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

/// A response body, serialized straight from async-graphql's values, whose objects keep
/// the selection's field order (a `serde_json::Value` on the way would sort them). A
/// request error has no `data` at all.
#[derive(serde::Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a Value>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [ServerError],
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    extensions: &'a BTreeMap<String, Value>,
}

/// HTTP caching only for GET queries that succeeded and touched only hinted types;
/// POST, mutations (POST only) and errors are never stored.
pub fn http_cache_control(response: &async_graphql::Response, is_get: bool) -> HeaderValue {
    match response.cache_control.value() {
        Some(v) if is_get && response.errors.is_empty() && v.starts_with("max-age") => {
            HeaderValue::from_str(&format!("public, {v}"))
                .unwrap_or(HeaderValue::from_static("no-store"))
        }
        _ => HeaderValue::from_static("no-store"),
    }
}

/// Gives every error a code. Ours carry one already; async-graphql's own get theirs
/// from `ErrorCode::classify`; unexpected ones are masked (their text may name
/// internals), logged, and tagged with the request id the log line carries.
pub fn mask_errors(errors: &mut [ServerError], request_id: &str) {
    for e in errors {
        let ext = e.extensions.get_or_insert_with(Default::default);
        // Ours carry a registered code and a client-safe message (internal ones were
        // logged where they were raised).
        let ours = match ext.get("code") {
            Some(Value::String(code)) => ErrorCode::from_extension(code),
            _ => None,
        };
        let code = ours.unwrap_or_else(|| ErrorCode::classify(&e.message, !e.path.is_empty()));
        if code == ErrorCode::InternalServerError {
            if ours.is_none() {
                tracing::error!(error = %e.message, path = ?e.path, "unexpected resolver error");
                e.message =
                    "internal error; the server log has the details under this request's id".into();
            }
            ext.set("requestId", request_id);
        }
        ext.set("code", code.as_str());
    }
}

#[cfg(test)]
mod tests {
    use crate::error::{ErrorCode, INPUT_ERROR_PREFIXES};
    use serde_json::json;

    /// async-graphql's own input errors carry no code. Those raised while executing
    /// have a path and must keep a prefix of `INPUT_ERROR_PREFIXES`, or an upgrade would
    /// turn user errors into masked `INTERNAL_SERVER_ERROR`s unnoticed; those raised in
    /// validation have none and are `GRAPHQL_VALIDATION_FAILED` whatever they say.
    #[tokio::test]
    async fn async_graphql_input_error_messages_keep_their_prefixes() {
        let schema = crate::graphql::build_schema(&Default::default());

        let filter = "query($f: ProductFilter) { products(filter: $f) { totalCount } }";
        let cases = [
            // (query, variables, prefix of the message, raised while executing)
            (
                r#"{ products(filter: { minPrice: "abc" }) { totalCount } }"#,
                json!({}),
                "Failed to parse",
                true,
            ),
            (
                filter,
                json!({ "f": { "minPrice": "1.2.3" } }),
                "Failed to parse",
                true,
            ),
            (
                filter,
                json!({ "f": { "minPrice": [1] } }),
                "Expected input type",
                true,
            ),
            (filter, json!({ "f": 3 }), "Expected input type", true),
            (
                filter,
                json!({ "f": { "bogus": 1 } }),
                "Invalid value",
                false,
            ),
            (
                "query($f: Int!) { products(first: $f) { totalCount } }",
                json!({}),
                "Variable ",
                false,
            ),
        ];
        for (query, variables, prefix, executing) in cases {
            let request = async_graphql::Request::new(query)
                .variables(async_graphql::Variables::from_json(variables.clone()));
            let response = schema.execute(request).await;
            let e = response
                .errors
                .first()
                .unwrap_or_else(|| panic!("{query} {variables}: no error"));
            assert!(INPUT_ERROR_PREFIXES.contains(&prefix));
            assert!(
                e.message.starts_with(prefix) && e.path.is_empty() != executing,
                "{query} {variables}: {:?} (path {:?}); expected {prefix:?}, executing: {executing}",
                e.message,
                e.path
            );
            let expected = if executing {
                ErrorCode::BadUserInput
            } else {
                ErrorCode::GraphqlValidationFailed
            };
            assert_eq!(ErrorCode::classify(&e.message, executing), expected);
        }
    }
}
