//! `POST /graphql`: an `application/json` body holding one GraphQL request.
use std::net::SocketAddr;

use axum::{
    Extension,
    body::Bytes,
    extract::{ConnectInfo, State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::Response,
};

use super::{
    execute::{Caller, Method, execute, is_admin},
    negotiate::{self, Media},
    persisted,
    respond::Rejection,
    responses,
};
use crate::{error::ErrorCode, transport::Endpoint};

pub async fn post(
    State(state): State<Endpoint>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(media) = negotiate::negotiate(&headers) else {
        return not_acceptable();
    };
    let body = match accept(&headers, body) {
        Ok(body) => body,
        Err(rejection) => return rejection.into_response(media),
    };
    let admin = is_admin(&headers, &state.admin_token);
    // A repeated query is answered from the response cache before anything is parsed;
    // one that may carry a persisted query only once it is resolved (`persisted`).
    let key = state.responses.key(Method::Post, media, admin, &body);
    let persisted = persisted::mentions(&body);
    if !persisted
        && let Some(k) = &key
        && let Some(resp) = responses::replay(&state, k, media, Method::Post).await
    {
        return resp;
    }
    let caller = Caller {
        media,
        method: Method::Post,
        admin,
        peer: peer.map(|Extension(ConnectInfo(p))| p),
    };
    let mut request = match read(&body) {
        Ok(request) => request,
        Err(rejection) => return rejection.into_response(media),
    };
    let pending = match persisted::resolve(&state, &mut request, media).await {
        Ok(pending) => pending,
        Err(rejection) => return rejection.into_response(media),
    };
    // A hash alone may be replayed now; a document to register runs.
    if persisted
        && pending.is_none()
        && let Some(k) = &key
        && let Some(resp) = responses::replay(&state, k, media, Method::Post).await
    {
        return resp;
    }
    execute(&state, &headers, request, caller, key, pending).await
}

/// 406, answered as legacy JSON since the client accepts neither type.
pub fn not_acceptable() -> Response {
    Rejection::new(
        ErrorCode::NotAcceptable,
        "Accept must allow application/graphql-response+json or application/json",
    )
    .into_response(Media::Json)
}

/// The body, if it is one larder reads: 415 unless JSON, 413 over the body limit
/// (enforced by the router's `DefaultBodyLimit` while reading).
fn accept(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<Bytes, Rejection> {
    if !negotiate::is_json_body(headers) {
        return Err(Rejection::new(
            ErrorCode::UnsupportedMediaType,
            "Content-Type must be application/json",
        ));
    }
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Rejection::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than the server accepts",
        ),
        _ => Rejection::new(ErrorCode::BadRequest, rejection.body_text()),
    })
}

/// The body as one GraphQL request; 400 for anything malformed. The query may be
/// missing (or null) only when `extensions.persistedQuery` stands for it.
fn read(body: &[u8]) -> Result<async_graphql::Request, Rejection> {
    let bad = |message: String| Rejection::new(ErrorCode::BadRequest, message);
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::Array(_)) => Err(bad("batched requests are not supported".into())),
        Ok(serde_json::Value::Object(mut fields)) => {
            let persisted = fields
                .get("extensions")
                .is_some_and(|e| e.get("persistedQuery").is_some());
            match fields.get("query") {
                Some(q) if q.is_string() => {}
                None | Some(serde_json::Value::Null) if persisted => {
                    fields.remove("query");
                }
                _ => return Err(bad("the query parameter is missing or not a string".into())),
            }
            serde_json::from_value::<async_graphql::Request>(serde_json::Value::Object(fields))
                .map_err(|e| bad(format!("invalid GraphQL request: {e}")))
        }
        Ok(_) => Err(bad("the body must be a JSON object".into())),
        Err(e) => Err(bad(format!("the body is not valid JSON: {e}"))),
    }
}
