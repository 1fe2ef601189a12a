//! The response cache: repeated reads skip GraphQL execution. An entry is the
//! serialized `data` of a successful query plus the stamps its execution read (see
//! `catalog::Stamps`); it lives in this process (moka, bounded by bytes). A request whose
//! key matches an entry re-reads those stamps in one cache round trip and gets the
//! stored bytes only if every one is unchanged; otherwise it executes as usual and its
//! answer replaces the entry. It is exactly as fresh as the entity cache: a write that
//! returned has changed a stamp of everything it changed.
//!
//! The key is the raw request as it arrived (the POST body, or the GET query string),
//! with the method, the negotiated media type and whether the caller is admin: equal
//! bytes parse to the same request, so a replay needs no parsing at all. Never stored:
//! mutations, answers with errors, anything that read a `no-cache` field (`cacheStats`,
//! `cachePerformance`), answers whose reads went around the cache.
use std::{sync::Arc, time::Duration};

use axum::{http::HeaderValue, response::Response};
use moka::ops::compute::Op;

use super::{execute::Method, negotiate::Media, respond};
use crate::{
    catalog::{Event, Kind, RequestTally, Stamps},
    transport::Endpoint,
};

/// Largest `data` stored; larger answers are not worth the memory.
const MAX_ENTRY_BYTES: usize = 1024 * 1024;
/// Entries not asked for in this long are dropped (they would mostly fail validation).
const IDLE: Duration = Duration::from_secs(600);

/// The raw request plus what else decides its answer.
pub type Key = Box<[u8]>;

/// One stored answer.
pub struct Stored {
    /// The serialized `data` of the answer.
    pub data: Box<str>,
    /// Its `Cache-Control` (only GET answers may be cached by HTTP caches).
    pub cache_control: HeaderValue,
    /// The operation name, for the metrics.
    pub operation: Option<Box<str>>,
    /// What it was built from.
    pub stamps: Stamps,
    /// The cache session it was built in (`Cache::session`): a reconnect or a cache
    /// error retires every stored answer, since the store may have lost what the
    /// stamps were checked against.
    pub session: u64,
}

pub struct ResponseCache {
    entries: Option<moka::sync::Cache<Key, Arc<Stored>>>,
}

impl ResponseCache {
    /// A cache of at most `max_bytes` (keys, answers and stamps); 0 = off.
    pub fn new(max_bytes: u64) -> Self {
        let entries = (max_bytes > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &Key, v: &Arc<Stored>| {
                    (k.len() + v.data.len() + v.stamps.weight()).min(u32::MAX as usize) as u32
                })
                .time_to_idle(IDLE)
                .build()
        });
        Self { entries }
    }

    /// The key of a request, or `None` when the cache is off.
    pub fn key(&self, method: Method, media: Media, admin: bool, raw: &[u8]) -> Option<Key> {
        self.entries.as_ref()?;
        let mut key = Vec::with_capacity(raw.len() + 3);
        key.push(method as u8);
        key.push(media as u8);
        key.push(admin as u8);
        key.extend_from_slice(raw);
        Some(key.into_boxed_slice())
    }

    /// Stores an answer (when it is small enough).
    pub fn put(&self, key: Key, stored: Stored) {
        if let Some(entries) = &self.entries
            && stored.data.len() <= MAX_ENTRY_BYTES
        {
            entries.insert(key, Arc::new(stored));
        }
    }
}

/// The stored answer for `key`, if there is one and every stamp it was built from still
/// holds. A stale entry is dropped.
pub async fn replay(state: &Endpoint, key: &Key, media: Media, method: Method) -> Option<Response> {
    let entries = state.responses.entries.as_ref()?;
    let catalog = &state.catalog;
    let Some(stored) = entries.get(key) else {
        catalog.count(Kind::Response, Event::Miss, 1);
        return None;
    };
    let tally = RequestTally::default();
    let holds = catalog.cache_session() == stored.session
        && catalog.still_valid(&stored.stamps, &tally).await
        && catalog.cache_session() == stored.session;
    if !holds {
        // Only this entry: a fresher one stored meanwhile by another request stays.
        entries
            .entry(key.clone())
            .and_compute_with(|current| match current {
                Some(e) if Arc::ptr_eq(e.value(), &stored) => Op::Remove,
                _ => Op::Nop,
            });
        catalog.count(Kind::Response, Event::Invalidation, 1);
        catalog.count(Kind::Response, Event::Miss, 1);
        return None;
    }
    catalog.count(Kind::Response, Event::Hit, 1);
    tally.hit(Kind::Response, 1);
    crate::metrics::graphql_operation(stored.operation.as_deref(), true);
    Some(respond::replayed(
        &stored,
        media,
        method == Method::Get,
        &tally,
    ))
}
