//! Automatic persisted queries: Apollo's APQ protocol, version 1, resolved here in the
//! transport, before any guard. A request whose `extensions.persistedQuery` names a
//! hash leaves with the document that hash stands for, so the GET-mutation check (405),
//! the document limits and the response cache all see the real document
//! (async-graphql's own APQ extension resolves inside execution, after the GET check,
//! and its errors carry no code).
//!
//! - A hash alone, registered: the document is filled in.
//! - A hash alone, unknown: `PERSISTED_QUERY_NOT_FOUND` (404); Apollo's clients then
//!   send the document with its hash.
//! - A document with its hash: the hash must be the document's SHA-256
//!   (`PERSISTED_QUERY_HASH_MISMATCH` otherwise); the request runs, and once it has
//!   passed every check (not a GET mutation, the document guards, parsing and
//!   validation) the document is registered (`Catalog::register_document`): junk never fills the
//!   store, and no client address registers more than its share a minute. A refused registration (the store is at its bounds, or unreachable) does not
//!   fail the request, whose client sent all it needs: the answer reports the refusal in
//!   `extensions.persistedQuery`.
//! - A version other than 1, or a malformed extension: `BAD_REQUEST`;
//!   `PERSISTED_QUERIES=false`: `PERSISTED_QUERY_NOT_SUPPORTED` (clients stop hashing).
//!
//! Statuses as for document errors: 200 for legacy `application/json` (what Apollo
//! Server answers, and what proxies and CDNs pass through untouched), 4xx for
//! `application/graphql-response+json` (404 for an unknown hash, 400 otherwise);
//! always `Cache-Control: no-store`.
use async_graphql::Value;
use sha2::{Digest, Sha256};

use super::{negotiate::Media, respond::Rejection};
use crate::{
    catalog::{Lookup, Registration},
    error::ErrorCode,
    transport::Endpoint,
};

/// Whether a raw request (a POST body, a GET query string) may carry a persisted
/// query: such a request is resolved before its bytes are looked up in the response
/// cache, since a registration must not be skipped by a replay. A byte match: a client
/// that escapes the name (`persisted\u0051uery`, `%51`) is replayed unresolved, which
/// is still the right answer (only queries are stored, and a hash names one document);
/// only its registration is skipped then.
pub fn mentions(raw: &[u8]) -> bool {
    memchr::memmem::find(raw, b"persistedQuery").is_some()
}

/// A registration that did not happen; the answer says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The document store is at `PERSISTED_QUERY_MAX_COUNT` or `_MAX_BYTES`.
    Full,
    /// The document store (Redis) could not be reached.
    Unavailable,
    /// This client address registered as many documents as it may per minute
    /// (`PERSISTED_QUERY_REGISTRATIONS_PER_MINUTE`).
    RateLimited,
}

impl Refused {
    /// `extensions.persistedQuery` of the answer.
    pub fn extension(self) -> Value {
        let (code, message) = match self {
            Self::Full => (
                "PERSISTED_QUERY_LIMIT_REACHED",
                "not registered: the persisted query store is at its bounds; send the document again next time",
            ),
            Self::Unavailable => (
                "PERSISTED_QUERY_STORE_UNAVAILABLE",
                "not registered: the persisted query store cannot be reached now; send the document again next time",
            ),
            Self::RateLimited => (
                "PERSISTED_QUERY_RATE_LIMITED",
                "not registered: this client registered as many documents as it may per minute; send the document again next time",
            ),
        };
        let mut ext = async_graphql::indexmap::IndexMap::new();
        ext.insert(
            async_graphql::Name::new("registered"),
            Value::Boolean(false),
        );
        ext.insert(async_graphql::Name::new("code"), Value::from(code));
        ext.insert(async_graphql::Name::new("message"), Value::from(message));
        Value::Object(ext)
    }
}

/// A document sent with its hash, registered once the request has passed its checks.
pub struct Pending {
    hash: String,
    document: String,
}

/// Resolves the request's persisted query, if it has one: fills in the document of a
/// hash, or checks the hash of the document sent with one (`Some(Pending)`: register it
/// with `register` once the request has passed every check).
pub async fn resolve(
    state: &Endpoint,
    request: &mut async_graphql::Request,
    media: Media,
) -> Result<Option<Pending>, Rejection> {
    let Some(extension) = request.extensions.0.remove("persistedQuery") else {
        return Ok(None);
    };
    if !state.settings.persisted_queries {
        count("not_supported");
        return Err(rejection(
            ErrorCode::PersistedQueryNotSupported,
            "PersistedQueryNotSupported".into(),
            media,
        ));
    }
    let hash = read_hash(&extension).map_err(|message| {
        count("malformed");
        rejection(ErrorCode::BadRequest, message, media)
    })?;
    if request.query.is_empty() {
        // Boxed: the store's read is a large future (about 21 KB), and unboxed it would
        // make every GET and POST handler future that large, replays included.
        let lookup = Box::pin(state.catalog.persisted_document(&hash));
        return match lookup.await {
            Lookup::Found(document, local) => {
                count(if local { "found_local" } else { "found_shared" });
                request.query = document.to_string();
                Ok(None)
            }
            Lookup::Missing | Lookup::Unavailable => {
                count("not_found");
                Err(rejection(
                    ErrorCode::PersistedQueryNotFound,
                    "PersistedQueryNotFound".into(),
                    media,
                ))
            }
        };
    }
    let actual = sha256_hex(&request.query);
    if actual != hash {
        count("hash_mismatch");
        return Err(rejection(
            ErrorCode::PersistedQueryHashMismatch,
            format!(
                "extensions.persistedQuery.sha256Hash is not the SHA-256 of the query (which is {actual})"
            ),
            media,
        ));
    }
    Ok(Some(Pending {
        hash,
        document: request.query.clone(),
    }))
}

/// Registers a checked document for the client at `client`; `Some` when it was not
/// registered. Each client address may register `PERSISTED_QUERY_REGISTRATIONS_PER_MINUTE`
/// documents a minute, so no one client fills the store for everyone.
pub async fn register(
    state: &Endpoint,
    pending: Pending,
    client: std::net::IpAddr,
) -> Option<Refused> {
    let catalog = &state.catalog;
    if !state.registrations.allow(client) {
        count("refused_rate");
        catalog.log_once_a_second(|| {
            tracing::warn!(%client, "persisted query not registered: this client's registrations per minute are spent")
        });
        return Some(Refused::RateLimited);
    }
    match catalog
        .register_document(&pending.hash, &pending.document)
        .await
    {
        Registration::Stored => {
            count("registered");
            None
        }
        Registration::Known => {
            count("known");
            None
        }
        Registration::Full => {
            count("refused_full");
            // Counted, and logged at most once a second: anonymous clients can repeat it.
            catalog.log_once_a_second(|| {
                tracing::warn!(
                    limits = ?catalog.document_limits(),
                    "persisted query not registered: the store is at its bounds"
                )
            });
            Some(Refused::Full)
        }
        Registration::Unavailable => {
            count("refused_unavailable");
            Some(Refused::Unavailable)
        }
    }
}

/// An APQ error with the status document errors get (see the module header).
fn rejection(code: ErrorCode, message: String, media: Media) -> Rejection {
    let mut r = Rejection::new(code, message);
    if media == Media::Json {
        r.status = Some(axum::http::StatusCode::OK);
    }
    r
}

/// The SHA-256 of a document, as APQ names it: 64 lowercase hexadecimal digits.
pub fn sha256_hex(document: &str) -> String {
    let digest = Sha256::digest(document.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    hex
}

/// `{"version": 1, "sha256Hash": "<64 hex digits>"}` -> the hash, lowercased; or what
/// is wrong with it.
fn read_hash(extension: &Value) -> Result<String, String> {
    let Value::Object(fields) = extension else {
        return Err(
            "extensions.persistedQuery must be an object with version and sha256Hash".into(),
        );
    };
    match fields.get("version") {
        Some(Value::Number(n)) if n.as_i64() == Some(1) => {}
        Some(other) => {
            return Err(format!(
                "persisted query version {other} is not supported; larder supports version 1"
            ));
        }
        None => return Err("extensions.persistedQuery.version is missing".into()),
    }
    match fields.get("sha256Hash") {
        Some(Value::String(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Ok(h.to_ascii_lowercase())
        }
        _ => Err("extensions.persistedQuery.sha256Hash must be 64 hexadecimal digits".into()),
    }
}

fn count(outcome: &'static str) {
    crate::metrics::persisted_query(outcome);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_the_sha256_apollo_clients_compute() {
        // echo -n '{ __typename }' | sha256sum
        assert_eq!(
            sha256_hex("{ __typename }"),
            "7f56e67dd21ab3f30d1ff8b7bed08893f0a0db86449836189b361dd1e56ddb4b"
        );
    }

    #[test]
    fn the_extension_is_read_strictly() {
        let ext = |json: &str| Value::from_json(serde_json::from_str(json).unwrap()).unwrap();
        let hash = "E".repeat(64);
        let ok = ext(&format!(r#"{{"version":1,"sha256Hash":"{hash}"}}"#));
        assert_eq!(read_hash(&ok).unwrap(), "e".repeat(64));
        for bad in [
            r#"{"version":2,"sha256Hash":"00"}"#.to_string(),
            format!(r#"{{"sha256Hash":"{hash}"}}"#),
            r#"{"version":1,"sha256Hash":"abc"}"#.to_string(),
            format!(r#"{{"version":1,"sha256Hash":"{}"}}"#, "g".repeat(64)),
            "[1]".to_string(),
        ] {
            assert!(read_hash(&ext(&bad)).is_err(), "{bad}");
        }
        let v2 = read_hash(&ext(r#"{"version":2,"sha256Hash":"00"}"#)).unwrap_err();
        assert!(v2.contains("version 2"), "{v2}");
    }
}
