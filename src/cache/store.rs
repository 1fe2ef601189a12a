//! The store interface: what the cache protocol asks of a place to keep entries. Redis
//! (`redis::RedisStore`) and the in-process store (`memory::MemoryStore`) both implement
//! it, each applying the same two rules of `entry` atomically (Redis in Lua, the
//! in-process store per key). `Cache` picks one (or none) and speaks only this.
//!
//! Results that come in parts (`Parts`) say what went and which key groups failed: on
//! a Redis Cluster each group is served by its own node, and a failed node costs only
//! its groups. A store of one group fails as a whole.
use std::time::Duration;

use super::{CacheError, Fill, Mark, Snapshot};

/// How much of a command in parts went, and each failed group with its first error.
pub type Parts<T> = (T, Vec<(usize, CacheError)>);

pub trait Store: Send + Sync {
    /// One round trip: the epoch, each read group's history counter, the list
    /// `counters` (key names), then `keys`. Groups in `skip` (bit g) are not read; they
    /// and any group whose node fails are `lost` in the answer.
    fn read(
        &self,
        keys: &[String],
        counters: &[String],
        skip: u64,
    ) -> impl Future<Output = Result<Snapshot, CacheError>> + Send;

    /// Readers' conditional fills (rule 1 of `entry`); how many were accepted.
    fn fill(&self, fills: &[Fill]) -> impl Future<Output = Parts<u64>> + Send;

    /// A write's invalidation: tombstones (rule 2 of `entry`), then a bump of each list
    /// counter copy in `counters`. Returns each touched group's history counter (none for
    /// a store that cannot lose data behind this process).
    fn mark(
        &self,
        marks: &[Mark],
        counters: &[String],
    ) -> impl Future<Output = Result<Vec<(usize, u64)>, CacheError>> + Send;

    /// Plain writes with a TTL each (list pages); how many were written.
    fn put_many(
        &self,
        entries: Vec<(String, String, Duration)>,
    ) -> impl Future<Output = Parts<u64>> + Send;

    /// Gives each missing list counter of `keys` a random start value (never moving one
    /// that exists) and reads each back.
    fn seed_counters(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<Option<u64>>, CacheError>> + Send;

    /// `clearCache`: the epoch raised by one (every entry filled before reads as a
    /// miss; tombstones stay). Returns the new epoch.
    fn bump_epoch(&self) -> impl Future<Output = Result<u64, CacheError>> + Send;
}
