//! Running one request: the document guards that must run before async-graphql sees
//! it, per-request loaders, the request timeout, and storing the answer in the response
//! cache when it may be replayed.
use async_graphql::parser::types::{ExecutableDocument, OperationDefinition, OperationType};
use axum::{
    http::{HeaderMap, header},
    response::Response,
};
use subtle::ConstantTimeEq;

use super::{
    negotiate::Media,
    persisted::{self, Pending},
    respond::{self, Rejection},
    responses::{Key, Stored},
};
use crate::{
    catalog::{Event, Kind, RequestTally},
    error::ErrorCode,
    graphql::{guard, loaders::RequestContext},
    transport::Endpoint,
};

/// How the request arrived; GET answers may be cached by HTTP caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// Who sends the request and how it wants its answer.
#[derive(Clone, Copy)]
pub struct Caller {
    pub media: Media,
    pub method: Method,
    pub admin: bool,
    /// The TCP peer (a proxy, when one is in front: see `net::client_address`).
    pub peer: Option<std::net::SocketAddr>,
}

impl Caller {
    /// The client this request speaks for, behind trusted proxies.
    pub fn client(&self, state: &Endpoint, headers: &HeaderMap) -> std::net::IpAddr {
        super::client::client_address(self.peer, headers, &state.settings.trusted_proxies)
    }
}

/// Executes `request`. The execution's future is large (every resolver's state), so it
/// is boxed: otherwise each handler future, a replay's included, would carry that size
/// and be moved with it (memmove was 8% of a replayed read's CPU).
pub async fn execute(
    state: &Endpoint,
    headers: &HeaderMap,
    request: async_graphql::Request,
    caller: Caller,
    key: Option<Key>,
    pending: Option<Pending>,
) -> Response {
    if request.query.len() > HEAVY_DOCUMENT_BYTES {
        return Box::pin(heavy(state, headers, request, caller, key, pending)).await;
    }
    Box::pin(run(state, headers, request, caller, key, pending)).await
}

/// Documents longer than this are parsed, validated and executed on the heavy lane.
/// The dashboard's largest operation is under 1 KB, GraphiQL's introspection query
/// about 2 KB; a stranger's 700 aliases are 50 KB.
const HEAVY_DOCUMENT_BYTES: usize = 4 * 1024;

/// A long document's parsing, validation and execution take milliseconds of CPU in one
/// go, on whichever runtime worker runs them, and every request queued behind that
/// worker waits (measured: ten 50 KB documents a second put the p99 of cached reads
/// from 1.4 to 12.7 ms on two cores). So such a request runs on a thread of its own,
/// where the kernel shares the CPU fairly with the workers, and one at a time
/// (`Endpoint::heavy`): long documents take at most one core from everything else, and
/// queue (within their timeout) when they come faster than that.
async fn heavy(
    state: &Endpoint,
    headers: &HeaderMap,
    request: async_graphql::Request,
    caller: Caller,
    key: Option<Key>,
    pending: Option<Pending>,
) -> Response {
    let started = tokio::time::Instant::now();
    let timeout = state.settings.request_timeout;
    let timed_out = || {
        Rejection::new(
            ErrorCode::Timeout,
            "the request took too long and was cancelled",
        )
        .into_response(caller.media)
    };
    let Ok(Ok(permit)) = tokio::time::timeout(timeout, state.heavy.clone().acquire_owned()).await
    else {
        return timed_out();
    };
    let (state, headers) = (state.clone(), headers.clone());
    let runtime = tokio::runtime::Handle::current();
    let left = timeout.saturating_sub(started.elapsed());
    let work = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        runtime.block_on(async move {
            // What is left of the request's time (its own timeout inside `run` too).
            tokio::time::timeout(left, run(&state, &headers, request, caller, key, pending)).await
        })
    });
    match work.await {
        Ok(Ok(response)) => response,
        Ok(Err(_)) => timed_out(),
        // A panic inside: the same answer the panic layer gives.
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

async fn run(
    state: &Endpoint,
    headers: &HeaderMap,
    mut request: async_graphql::Request,
    caller: Caller,
    key: Option<Key>,
    pending: Option<Pending>,
) -> Response {
    let media = caller.media;
    let operation_type = match check_document(&mut request) {
        Ok(t) => t,
        Err(message) => return Rejection::document(message, media).into_response(media),
    };
    let ctx = RequestContext::new(&state.catalog, caller.admin);
    let tally = ctx.tally.clone();
    let session = state.catalog.cache_session();
    let operation = request.operation_name.clone();
    // Dropping the future on timeout cancels the work (queries, loaders) at its next
    // await; writes run in tasks of their own and finish (see `catalog::write`).
    let execution = tokio::time::timeout(
        state.settings.request_timeout,
        state
            .schema
            .execute(request.data(ctx).data(state.schema.clone())),
    );
    let Ok(mut response) = execution.await else {
        crate::metrics::graphql_operation(operation.as_deref(), false);
        return Rejection::new(
            ErrorCode::Timeout,
            "the request took too long and was cancelled",
        )
        .into_response(media);
    };
    crate::metrics::graphql_operation(operation.as_deref(), response.errors.is_empty());
    // A persisted query's document is registered only once it has parsed, validated
    // and run (the transport's own checks came first); a refusal is reported, and such
    // an answer is not kept for replay (a replay would not report it).
    let mut key = key;
    if let Some(p) = pending
        && !respond::is_request_error(&response)
        && let Some(refused) = persisted::register(state, p, caller.client(state, headers)).await
    {
        response
            .extensions
            .insert("persistedQuery".into(), refused.extension());
        key = None;
    }
    let is_get = caller.method == Method::Get;
    let data_json = response
        .errors
        .is_empty()
        .then(|| serde_json::to_string(&response.data).ok())
        .flatten();
    if let (Some(key), Some(data)) = (key, &data_json)
        && operation_type == Some(OperationType::Query)
    {
        let built = Built {
            data,
            response: &response,
            operation: operation.as_deref(),
            session,
        };
        keep(state, key, built, &tally, is_get);
    }
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    respond::executed(
        response,
        media,
        is_get,
        &tally,
        request_id,
        data_json.as_deref(),
    )
}

/// An executed answer that may be kept for replay.
struct Built<'a> {
    data: &'a str,
    response: &'a async_graphql::Response,
    operation: Option<&'a str>,
    /// The cache session when execution began.
    session: u64,
}

/// Stores a query's answer for replay, unless it read a `no-cache` field, a read went
/// around the cache (then its stamps cannot vouch for it), or the cache session changed
/// while it ran.
fn keep(state: &Endpoint, key: Key, built: Built<'_>, tally: &RequestTally, is_get: bool) {
    let catalog = &state.catalog;
    if built.response.cache_control.max_age == -1 || catalog.cache_session() != built.session {
        return;
    }
    let Some(stamps) = tally.stamps.take() else {
        return;
    };
    state.responses.put(
        key,
        Stored {
            data: built.data.into(),
            cache_control: respond::http_cache_control(built.response, is_get),
            operation: built.operation.map(Into::into),
            stamps,
            session: built.session,
        },
    );
    catalog.count(Kind::Response, Event::Fill, 1);
}

/// The guards async-graphql's own checks cannot replace: a linear nesting scan before
/// the recursive parser, then the fragment-expansion bound on the parsed document
/// (which async-graphql reuses). Returns the type of the operation that will run
/// (`None` when the document does not parse, which async-graphql then reports, or names
/// no single operation).
fn check_document(request: &mut async_graphql::Request) -> Result<Option<OperationType>, String> {
    guard::check_nesting(&request.query, guard::MAX_NESTING)?;
    let name = request.operation_name.clone();
    match request.parsed_query() {
        Ok(doc) => {
            guard::check_expansion(doc, guard::MAX_EXPANDED_FIELDS)?;
            Ok(selected_operation(doc, name.as_deref()))
        }
        Err(_) => Ok(None),
    }
}

/// The type of the operation a request runs: the one named, or the only one.
pub fn selected_operation(doc: &ExecutableDocument, name: Option<&str>) -> Option<OperationType> {
    selected(doc, name).map(|op| op.ty)
}

/// The operation a request runs: the one named, or the only one.
pub fn selected<'a>(
    doc: &'a ExecutableDocument,
    name: Option<&str>,
) -> Option<&'a OperationDefinition> {
    let mut operations = doc.operations.iter();
    let selected = match name {
        Some(name) => operations.find(|(n, _)| n.map(|n| n.as_str()) == Some(name)),
        None => match (operations.next(), operations.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        },
    };
    selected.map(|(_, op)| &op.node)
}

/// Whether the request carries the admin bearer token (constant-time comparison).
pub fn is_admin(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|given| bool::from(given.trim().as_bytes().ct_eq(token.as_bytes())))
}
