//! Persisted query documents (APQ): a SHA-256 hash and the document it names. With Redis
//! they live there, shared by every instance, one key per document in the hash-tag group
//! the hash picks (so a cluster spreads them); without Redis, in this process. Either way
//! with a TTL from registration and bounds on count and bytes, checked when a document is
//! registered: past a bound the registration is refused (the caller runs the request
//! anyway and reports it), so anonymous clients cannot grow the Redis that also holds the
//! tombstones, and nothing else is ever evicted for a document. With Redis, a local LRU
//! sits in front: a hash never changes its document, so a local copy is always right and
//! a hit costs no round trip.
//!
//! On a cluster each group has `1/G` of each bound; its accounting (`lua::REGISTER_LUA`)
//! lives in the group's own slot, next to its documents.
use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::{Cache, CacheError};

/// Bytes an entry of the local LRU is counted for beyond its text.
const ENTRY_OVERHEAD: usize = 200;

/// The bounds of the document store (config's `PERSISTED_QUERY_*`).
pub use crate::config::PersistedQueryLimits as Limits;

/// What a registration did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registration {
    /// Stored now.
    Stored,
    /// It was registered already.
    Known,
    /// Refused: the store holds as many documents, or bytes, as its bounds allow.
    Full,
    /// Refused: the store could not be reached.
    Unavailable,
}

/// What a lookup found.
#[derive(Clone, Debug)]
pub enum Lookup {
    /// The document, and whether it came from this process (no round trip).
    Found(Arc<str>, bool),
    /// Not registered (never, or expired).
    Missing,
    /// The shared store could not be asked; the client will send the document again.
    Unavailable,
}

pub struct Documents {
    limits: Limits,
    /// Copies of documents read from (or registered in) Redis, by hash.
    local: moka::sync::Cache<Arc<str>, Arc<str>>,
    /// The store itself when there is no Redis.
    own: Mutex<Registry>,
}

impl Documents {
    pub fn new(limits: Limits) -> Self {
        let local = moka::sync::Cache::builder()
            .max_capacity(limits.max_bytes.max(1))
            // What an entry costs beyond its bytes (the hash map's share, two Arcs).
            .weigher(|k: &Arc<str>, v: &Arc<str>| {
                (ENTRY_OVERHEAD + k.len() + v.len()).min(u32::MAX as usize) as u32
            })
            .time_to_idle(limits.ttl.max(Duration::from_secs(1)))
            .build();
        Self {
            limits,
            local,
            own: Mutex::new(Registry::default()),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The document registered under `hash` (64 lowercase hex digits).
    pub async fn lookup(&self, cache: &Cache, hash: &str) -> Lookup {
        if let Some(doc) = self.local.get(hash) {
            return Lookup::Found(doc, true);
        }
        match cache.shared_document(hash).await {
            None => match self.own().get(hash, Instant::now()) {
                Some(doc) => Lookup::Found(doc, true),
                None => Lookup::Missing,
            },
            Some(Ok(Some(doc))) => {
                let doc: Arc<str> = doc.into();
                self.local.insert(hash.into(), doc.clone());
                Lookup::Found(doc, false)
            }
            Some(Ok(None)) => Lookup::Missing,
            Some(Err(e)) => {
                cache.log_error(&e);
                Lookup::Unavailable
            }
        }
    }

    /// Registers `document` under `hash`, which the caller has checked is its SHA-256.
    /// Whatever the store says, this process keeps a copy to answer the hash from (it
    /// is right forever and bounded by the LRU).
    pub async fn register(&self, cache: &Cache, hash: &str, document: &str) -> Registration {
        // 0 = no registrations at all (a group's share is otherwise at least 1).
        if self.limits.max_count == 0 || self.limits.max_bytes == 0 {
            return Registration::Full;
        }
        match cache
            .register_shared_document(hash, document, self.limits)
            .await
        {
            None => self
                .own()
                .register(hash, document, self.limits, Instant::now()),
            Some(outcome) => {
                self.local.insert(hash.into(), document.into());
                outcome.unwrap_or_else(|e: CacheError| {
                    cache.log_error(&e);
                    Registration::Unavailable
                })
            }
        }
    }

    fn own(&self) -> std::sync::MutexGuard<'_, Registry> {
        // A std Mutex, because no lock is held across an await; a poisoned one still
        // holds consistent maps (every update below is a few plain inserts).
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The in-process store: documents by hash, and their hashes in expiry order (one TTL
/// for all, so registration order is expiry order).
#[derive(Default)]
struct Registry {
    documents: HashMap<Box<str>, Arc<str>>,
    expiries: VecDeque<(Instant, Box<str>)>,
    bytes: u64,
}

impl Registry {
    fn get(&mut self, hash: &str, now: Instant) -> Option<Arc<str>> {
        self.expire(now);
        self.documents.get(hash).cloned()
    }

    fn register(
        &mut self,
        hash: &str,
        document: &str,
        limits: Limits,
        now: Instant,
    ) -> Registration {
        self.expire(now);
        if self.documents.contains_key(hash) {
            return Registration::Known;
        }
        let size = document.len() as u64;
        if self.documents.len() as u64 >= limits.max_count || self.bytes + size > limits.max_bytes {
            return Registration::Full;
        }
        let expires = now + limits.ttl;
        self.documents.insert(hash.into(), document.into());
        self.expiries.push_back((expires, hash.into()));
        self.bytes += size;
        Registration::Stored
    }

    fn expire(&mut self, now: Instant) {
        while let Some((at, _)) = self.expiries.front()
            && *at <= now
        {
            let Some((_, hash)) = self.expiries.pop_front() else {
                break;
            };
            if let Some(doc) = self.documents.remove(&hash) {
                self.bytes -= doc.len() as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(count: u64, bytes: u64) -> Limits {
        Limits {
            ttl: Duration::from_secs(60),
            max_count: count,
            max_bytes: bytes,
        }
    }

    #[test]
    fn the_in_process_store_refuses_past_its_bounds_and_frees_what_expired() {
        let mut r = Registry::default();
        let t0 = Instant::now();
        let l = limits(2, 10);
        assert_eq!(r.register("a", "1234", l, t0), Registration::Stored);
        assert_eq!(r.register("a", "1234", l, t0), Registration::Known);
        assert_eq!(
            r.register("b", "1234567", l, t0),
            Registration::Full,
            "bytes"
        );
        assert_eq!(r.register("b", "123", l, t0), Registration::Stored);
        assert_eq!(r.register("c", "1", l, t0), Registration::Full, "count");
        assert_eq!(r.get("a", t0).as_deref(), Some("1234"));
        let later = t0 + Duration::from_secs(61);
        assert_eq!(r.get("a", later), None, "expired");
        assert_eq!((r.documents.len(), r.bytes), (0, 0));
        assert_eq!(r.register("c", "123456789", l, later), Registration::Stored);
    }
}
