//! The in-process store (moka), for a single instance: the same entry format and the
//! same two rules as Redis, each applied atomically per key with moka's
//! `and_compute_with`, and per-entry TTLs. Tombstones are also kept in a second store
//! without a capacity limit, so a full cache cannot evict one early.
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use moka::{Expiry, future::Cache, ops::compute::Op};

use super::{
    CacheError, Fill, Mark, Snapshot, entry,
    store::{Parts, Store},
};

/// A stored entry and how long it lives.
#[derive(Clone)]
struct Stored {
    raw: Arc<str>,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, Stored> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, v: &Stored, _: Instant) -> Option<Duration> {
        Some(v.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        v: &Stored,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(v.ttl)
    }
}

pub struct MemoryStore {
    /// Values, markers and tombstones, bounded: the least useful entries are evicted.
    entries: Cache<String, Stored>,
    /// Tombstones again, with no capacity limit (TTL only): an evicted tombstone would
    /// let a reader holding an older row fill it back, so fills check this store too.
    tombstones: Cache<String, Stored>,
    epoch: AtomicU64,
    /// List counters by key, each seeded with a random value when first used. A std
    /// Mutex, never held across an await; one entry per (scope, field), so it grows
    /// with the number of categories, not with traffic.
    counters: std::sync::Mutex<HashMap<String, u64>>,
}

impl MemoryStore {
    pub fn new(max_entries: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(PerEntryTtl)
                .build(),
            tombstones: Cache::builder().expire_after(PerEntryTtl).build(),
            epoch: AtomicU64::new(0),
            counters: Default::default(),
        }
    }

    #[cfg(feature = "test-hooks")]
    pub async fn remove_for_test(&self, keys: &[String]) {
        for k in keys {
            self.entries.invalidate(k).await;
        }
    }
}

impl Store for MemoryStore {
    async fn read(
        &self,
        keys: &[String],
        counters: &[String],
        _skip: u64,
    ) -> Result<Snapshot, CacheError> {
        // Counters first: an entry read after them can only be as new or newer.
        let counters = {
            let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            counters
                .iter()
                .map(|k| Some(*map.entry(k.clone()).or_insert_with(seed)))
                .collect()
        };
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut values = Vec::with_capacity(keys.len());
        for k in keys {
            values.push(self.entries.get(k).await.map(|s| s.raw.to_string()));
        }
        Ok(Snapshot {
            epoch,
            history: Vec::new(),
            counters,
            values,
            lost: Vec::new(),
            failed: Vec::new(),
        })
    }

    async fn fill(&self, fills: &[Fill]) -> Parts<u64> {
        let mut accepted = 0;
        for f in fills {
            let new = Stored {
                raw: f.payload.as_str().into(),
                ttl: f.ttl,
            };
            let tombstones = &self.tombstones;
            let result = self
                .entries
                .entry(f.key.clone())
                .and_compute_with(|cur| async move {
                    let tomb = tombstones.get(&f.key).await;
                    let ok = entry::fill_allowed(cur.as_ref().map(|e| &*e.value().raw), f.version)
                        && entry::fill_allowed(tomb.as_ref().map(|t| &*t.raw), f.version);
                    if ok { Op::Put(new) } else { Op::Nop }
                })
                .await;
            if !matches!(
                result,
                moka::ops::compute::CompResult::Unchanged(_)
                    | moka::ops::compute::CompResult::StillNone(_)
            ) {
                accepted += 1;
            }
        }
        (accepted, Vec::new())
    }

    async fn mark(
        &self,
        marks: &[Mark],
        counters: &[String],
    ) -> Result<Vec<(usize, u64)>, CacheError> {
        for m in marks {
            let new = Stored {
                raw: m.payload().into(),
                ttl: m.ttl,
            };
            // The tombstone first, in the store no capacity limit can evict from.
            let rule = |cur: Option<&str>| entry::mark_allowed(cur, m.version, m.gone);
            put_if(&self.tombstones, &m.key, new.clone(), rule).await;
            put_if(&self.entries, &m.key, new, rule).await;
        }
        // Then the counters, as in Redis: a reader that sees a new counter value finds
        // the tombstones in place.
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        for k in counters {
            *map.entry(k.clone()).or_insert_with(seed) += 1;
        }
        // No history counter: an in-process store cannot come back with older data.
        Ok(Vec::new())
    }

    async fn put_many(&self, entries: Vec<(String, String, Duration)>) -> Parts<u64> {
        let n = entries.len() as u64;
        for (key, value, ttl) in entries {
            self.entries
                .insert(
                    key,
                    Stored {
                        raw: value.into(),
                        ttl,
                    },
                )
                .await;
        }
        (n, Vec::new())
    }

    async fn seed_counters(&self, keys: &[String]) -> Result<Vec<Option<u64>>, CacheError> {
        let mut map = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        Ok(keys
            .iter()
            .map(|k| Some(*map.entry(k.clone()).or_insert_with(seed)))
            .collect())
    }

    async fn bump_epoch(&self) -> Result<u64, CacheError> {
        Ok(self.epoch.fetch_add(1, Ordering::SeqCst) + 1)
    }
}

/// A counter's random start value, as Redis gets: never a value seen before a restart.
fn seed() -> u64 {
    rand::random_range(1u64..1 << 40)
}

/// Stores `new` under `key` if `rule` allows it over the current entry, atomically.
async fn put_if(
    store: &Cache<String, Stored>,
    key: &str,
    new: Stored,
    rule: impl FnOnce(Option<&str>) -> bool,
) {
    store
        .entry(key.to_string())
        .and_compute_with(|cur| {
            let ok = rule(cur.as_ref().map(|e| &*e.value().raw));
            std::future::ready(if ok { Op::Put(new) } else { Op::Nop })
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(key: &str, version: i64) -> Fill {
        Fill {
            key: key.into(),
            version,
            payload: entry::value(version, 0, "{}"),
            ttl: Duration::from_secs(60),
        }
    }

    #[tokio::test]
    async fn a_full_cache_cannot_evict_a_tombstone_that_guards_against_an_old_fill() {
        let store = MemoryStore::new(10);
        let mark = Mark {
            key: "p:1".into(),
            version: 5,
            gone: false,
            ttl: Duration::from_secs(60),
        };
        store.mark(&[mark], &[]).await.unwrap();
        // Flood the bounded store far past its capacity.
        for i in 0..2_000 {
            store.fill(&[fill(&format!("p:{}", i + 100), 1)]).await;
        }
        store.entries.run_pending_tasks().await;
        assert!(store.entries.entry_count() <= 10);
        // A reader that loaded version 4 before the write must still be refused.
        assert_eq!(store.fill(&[fill("p:1", 4)]).await.0, 0);
        assert_eq!(store.fill(&[fill("p:1", 5)]).await.0, 1);
    }
}
