//! `GET /graphql`: GraphiQL for a browser that asks for a page; otherwise a query in
//! the URL (`query`, `operationName`, `variables`, `extensions`). Mutations get 405:
//! a GET must never change anything.
//!
//! The parameters are read here rather than with async-graphql's
//! `http::parse_query_string`, which (in 7.2) reads `operation_name` instead of the
//! spec's `operationName`, turns a missing `query` into an empty document, and rejects
//! an empty `variables=` (pinned by `tests::async_graphql_parse_query_string_is_not_spec`).
use std::{collections::HashMap, net::SocketAddr};

use async_graphql::parser::types::OperationType;
use axum::{
    extract::{RawQuery, State},
    http::HeaderMap,
    response::Response,
};

use super::{
    execute::{Caller, Method, execute, is_admin, selected_operation},
    negotiate, persisted, playground,
    post::not_acceptable,
    respond::Rejection,
    responses,
};
use crate::{error::ErrorCode, graphql::guard, transport::Endpoint};

pub async fn get(
    State(state): State<Endpoint>,
    peer: Option<SocketAddr>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let admin = is_admin(&headers, &state.admin_token);
    let raw_bytes = raw.as_deref().unwrap_or("").as_bytes();
    let persisted = persisted::mentions(raw_bytes);
    // A repeated query is answered from the response cache before anything is parsed;
    // one that may carry a persisted query only once it is resolved (`persisted`).
    let mut key = None;
    if let (Some(media), Some(_)) = (negotiate::negotiate(&headers), raw.as_deref()) {
        key = state.responses.key(Method::Get, media, admin, raw_bytes);
        if !persisted
            && let Some(k) = &key
            && let Some(resp) = responses::replay(&state, k, media, Method::Get).await
        {
            return resp;
        }
    }
    let params: HashMap<String, String> =
        serde_urlencoded::from_str(raw.as_deref().unwrap_or("")).unwrap_or_default();
    if !params.contains_key("query")
        && !params.contains_key("extensions")
        && negotiate::wants_html(&headers)
    {
        return playground::page(state.settings.introspection);
    }
    let Some(media) = negotiate::negotiate(&headers) else {
        return not_acceptable();
    };
    let mut request = match read(&params) {
        Ok(r) => r,
        Err(rejection) => return rejection.into_response(media),
    };
    let pending = match persisted::resolve(&state, &mut request, media).await {
        Ok(pending) => pending,
        Err(rejection) => return rejection.into_response(media),
    };
    if is_mutation(&mut request) {
        return Rejection::new(
            ErrorCode::MethodNotAllowed,
            "mutations must be sent with POST",
        )
        .into_response(media);
    }
    // A hash alone may be replayed now; a document to register runs.
    if persisted
        && pending.is_none()
        && let Some(k) = &key
        && let Some(resp) = responses::replay(&state, k, media, Method::Get).await
    {
        return resp;
    }
    let caller = Caller {
        media,
        method: Method::Get,
        admin,
        peer,
    };
    execute(&state, &headers, request, caller, key, pending).await
}

/// The URL's parameters as a GraphQL request; `variables` and `extensions` must be
/// JSON objects when given (empty counts as absent). The query may be missing only when
/// `extensions.persistedQuery` stands for it.
fn read(params: &HashMap<String, String>) -> Result<async_graphql::Request, Rejection> {
    let bad = |message: String| Rejection::new(ErrorCode::BadRequest, message);
    let mut request = async_graphql::Request::new(params.get("query").cloned().unwrap_or_default());
    if let Some(name) = params.get("operationName").filter(|n| !n.is_empty()) {
        request = request.operation_name(name.clone());
    }
    for param in ["variables", "extensions"] {
        let Some(raw) = params.get(param).filter(|v| !v.is_empty()) else {
            continue;
        };
        match serde_json::from_str::<serde_json::Value>(raw) {
            Ok(v @ serde_json::Value::Object(_)) if param == "variables" => {
                request.variables = async_graphql::Variables::from_json(v);
            }
            Ok(v @ serde_json::Value::Object(_)) => {
                request.extensions = serde_json::from_value(v)
                    .map_err(|e| bad(format!("invalid extensions: {e}")))?;
            }
            Ok(serde_json::Value::Null) => {}
            _ => return Err(bad(format!("{param} must be a JSON object"))),
        }
    }
    if !params.contains_key("query") && !request.extensions.0.contains_key("persistedQuery") {
        return Err(bad("missing the query parameter".into()));
    }
    Ok(request)
}

/// Whether the operation a GET would run is a mutation. Parsed once here (after the
/// linear nesting scan that keeps the parser's stack bounded); async-graphql reuses the
/// parsed document. A document that does not parse is left to execution to report.
fn is_mutation(request: &mut async_graphql::Request) -> bool {
    if guard::check_nesting(&request.query, guard::MAX_NESTING).is_err() {
        return false;
    }
    let name = request.operation_name.clone();
    request
        .parsed_query()
        .is_ok_and(|doc| selected_operation(doc, name.as_deref()) == Some(OperationType::Mutation))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// If this starts failing, async-graphql's own parser may have become usable here.
    #[test]
    fn async_graphql_parse_query_string_is_not_spec() {
        let r = async_graphql::http::parse_query_string("query=%7Ba%7D&operationName=A")
            .expect("parses");
        assert_eq!(r.operation_name, None, "operationName is ignored");
        let r = async_graphql::http::parse_query_string("operationName=A").expect("parses");
        assert_eq!(r.query, "", "a missing query becomes an empty document");
        assert!(async_graphql::http::parse_query_string("query=%7Ba%7D&variables=").is_err());
    }

    #[test]
    fn get_parameters_follow_graphql_over_http() {
        let params: HashMap<String, String> = [
            ("query", "query A { a } mutation B { b }"),
            ("operationName", "B"),
            ("variables", r#"{"x":1}"#),
            ("extensions", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let mut r = read(&params).expect("reads");
        assert_eq!(r.operation_name.as_deref(), Some("B"));
        assert!(is_mutation(&mut r));
        let mut only_query = params.clone();
        only_query.insert("operationName".into(), "A".into());
        assert!(!is_mutation(&mut read(&only_query).unwrap()));
        let mut bad = params;
        bad.insert("variables".into(), "[1]".into());
        assert_eq!(read(&bad).unwrap_err().code, ErrorCode::BadRequest);
    }
}
