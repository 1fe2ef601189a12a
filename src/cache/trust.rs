//! Whether reads may use the shared store now, and why not. Two things make an instance
//! read around Redis: degraded mode, after an error that may have lost an invalidation
//! (a lost connection, or one of its own invalidations undelivered) until the outbox is
//! replayed (`catalog::outbox`); and the history check, after every connect until it
//! passes, or at once when a read finds Redis's history counter below what this process
//! saw (`catalog::history`). A slow answer is neither (see `CacheError::is_loss`).
use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::SeqCst},
    },
    time::Duration,
};

use super::{Cache, CacheError, Store, keys::MAX_GROUPS, timed};

/// The trust state, all atomics (no lock is held across an await).
pub struct Trust {
    /// Errors of the shared store so far, and how many of them a completed resync
    /// (outbox replayed, Redis answering) has covered. While the first is ahead, reads
    /// bypass the cache. Two counters instead of a flag, so an error during a resync is
    /// never cleared by it.
    error_seq: AtomicU64,
    resynced_seq: AtomicU64,
    /// The Redis connection count (`RedisStore::connections`) under which the history
    /// check last passed, and the server `run_id` it saw; `u64::MAX` before the first.
    /// Reads use Redis only while this matches the current count: a Redis that came
    /// back (restart, failover) may hold older data.
    history_ok: AtomicU64,
    history_run_id: Mutex<Option<String>>,
    /// Per key group, the highest history counter value this process has seen Redis
    /// hold (in reads, from its own deliveries, in checks). The counter never goes down
    /// in a Redis that keeps its data, so a read that finds it lower is reading a Redis
    /// (or a cluster node) that went back, whatever the connection events say (they
    /// arrive asynchronously, and a failover behind a proxy sends none).
    history_floor: Vec<AtomicU64>,
}

impl Trust {
    /// The state of a store whose keys fall in `groups` hash-tag groups.
    pub fn new(groups: usize) -> Self {
        Self {
            error_seq: AtomicU64::new(0),
            resynced_seq: AtomicU64::new(0),
            history_ok: AtomicU64::new(u64::MAX),
            history_run_id: Mutex::new(None),
            history_floor: (0..groups.max(1)).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Trust {
    pub fn record_error(&self) {
        self.error_seq.fetch_add(1, SeqCst);
    }

    pub fn is_degraded(&self) -> bool {
        self.error_seq.load(SeqCst) > self.resynced_seq.load(SeqCst)
    }

    pub fn error_seq(&self) -> u64 {
        self.error_seq.load(SeqCst)
    }

    /// A resync started when the error count was `seen` completed.
    pub fn resynced(&self, seen: u64) {
        self.resynced_seq.fetch_max(seen, SeqCst);
    }

    pub fn passed(&self, connections: u64, counts: &[u64], run_id: Option<String>) {
        for (group, &count) in counts.iter().enumerate() {
            self.saw_history(group, count);
        }
        *self
            .history_run_id
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = run_id;
        self.history_ok.store(connections, SeqCst);
    }

    pub fn lost(&self) {
        self.history_ok.store(u64::MAX, SeqCst);
    }

    pub fn run_id(&self) -> Option<String> {
        self.history_run_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn checked_under(&self, connections: u64) -> bool {
        self.history_ok.load(SeqCst) == connections
    }

    /// Every group's floor now, by group (entries past the groups are 0).
    pub fn floors(&self) -> [u64; MAX_GROUPS] {
        let mut floors = [0; MAX_GROUPS];
        for (f, a) in floors.iter_mut().zip(&self.history_floor) {
            *f = a.load(SeqCst);
        }
        floors
    }

    /// Raises a group's floor to `seen`, a value Redis was seen to hold. Callers compare
    /// a read's value with the floor taken *before* sending it (see `Cache::read`).
    pub fn saw_history(&self, group: usize, seen: u64) {
        if let Some(floor) = self.history_floor.get(group) {
            floor.fetch_max(seen, SeqCst);
        }
    }
}

impl Cache {
    /// Waits up to `limit` until reads may use the store (connected, history checked).
    pub async fn wait_trusted(&self, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while !self.is_trusted() && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Per group, the highest history counter value seen so far (see `Trust::floors`).
    pub fn history_floors(&self) -> Vec<u64> {
        self.trust.floors()[..self.keys.groups()].to_vec()
    }

    /// A number that changes whenever what this process knows of the shared store may
    /// have gone stale without a write telling it: on every reconnect (the store may have
    /// come back with older data) and every cache error. In-process memories of the
    /// store's state (replayable answers) are valid only within one session.
    pub fn session(&self) -> u64 {
        let connections = match &self.store {
            Store::Redis(r) => r.connections(),
            _ => 0,
        };
        connections.wrapping_add(self.trust.error_seq() << 32)
    }

    /// Each group's history counter in the shared store (0 when missing) and its
    /// server's `run_id`; `None` for stores that cannot lose data behind this process's
    /// back.
    pub async fn history(&self) -> Option<Result<(Vec<u64>, Option<String>), CacheError>> {
        match &self.store {
            Store::Redis(r) => Some(timed("history", r.history()).await),
            _ => None,
        }
    }

    /// The connection count a history check started under (see `history_passed`).
    pub fn connections(&self) -> u64 {
        match &self.store {
            Store::Redis(r) => r.connections(),
            _ => 0,
        }
    }

    /// A history check that started under `connections` found the store consistent
    /// with Postgres (or made it so): reads may use it, unless it reconnected since.
    pub fn history_passed(&self, connections: u64, counts: &[u64], run_id: Option<String>) {
        self.trust.passed(connections, counts, run_id);
    }

    /// A check found lost history: reads go around the cache until it is repaired.
    pub fn history_lost(&self) {
        self.trust.lost();
    }

    /// The `run_id` of the Redis server the last passed check saw.
    pub fn history_run_id(&self) -> Option<String> {
        self.trust.run_id()
    }

    /// Whether the last passed history check covers the current connection.
    pub fn history_checked(&self) -> bool {
        match &self.store {
            Store::Redis(r) => self.trust.checked_under(r.connections()),
            _ => true,
        }
    }

    /// After lost history: an epoch jump (everything stored before is unreachable) and
    /// each group's history counter raised to its `floors` entry (Postgres's).
    pub async fn jump_epoch(&self, floors: &[u64]) -> Result<u64, CacheError> {
        match &self.store {
            Store::Redis(r) => timed("jump", r.jump_epoch(floors)).await,
            _ => Ok(0),
        }
    }

    /// Whether reads may use the store now: not degraded, and its history checked.
    pub(super) fn usable(&self) -> bool {
        !self.is_degraded() && self.history_checked()
    }

    /// Whether reads use the cache now: a store is configured, connected, its history
    /// checked since it last connected, and not in degraded mode.
    pub fn is_trusted(&self) -> bool {
        self.untrusted_reason().is_none()
    }

    /// Why reads go around the cache now, if they do.
    pub fn untrusted_reason(&self) -> Option<&'static str> {
        if !self.is_enabled() {
            Some("no cache is configured")
        } else if !self.is_connected() {
            Some("not connected")
        } else if self.is_degraded() {
            Some("replaying invalidations after a cache error")
        } else if !self.history_checked() {
            Some("checking the cache's history against Postgres (after a connect)")
        } else {
            None
        }
    }

    /// Whether reads bypass the cache until the outbox is replayed.
    pub fn is_degraded(&self) -> bool {
        self.trust.is_degraded()
    }

    /// The error count now; a resync started after reading it covers those errors.
    pub fn error_seq(&self) -> u64 {
        self.trust.error_seq()
    }

    /// An invalidation of this instance's could not be delivered in time: until the
    /// outbox has replayed it, reads go around the cache.
    pub fn undelivered(&self) {
        self.record_error();
    }

    pub(super) fn record_error(&self) {
        if matches!(self.store, Store::Redis(_)) {
            self.trust.record_error();
        }
    }

    /// The outbox was replayed after the error count was `seen`: if Redis answers now,
    /// reads may use the cache again (unless a newer error happened meanwhile).
    pub async fn resync_done(&self, seen: u64) -> bool {
        let healthy = match &self.store {
            Store::Redis(r) => r.ping().await.is_ok(),
            _ => true,
        };
        if healthy {
            self.trust.resynced(seen);
        }
        healthy && !self.is_degraded()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_only_rises() {
        let t = Trust::new(2);
        t.saw_history(1, 9);
        t.saw_history(1, 5);
        t.saw_history(0, 3);
        assert_eq!(t.floors()[..2], [3, 9]);
    }

    #[test]
    fn an_error_during_a_resync_is_not_cleared_by_it() {
        let t = Trust::new(1);
        t.record_error();
        let seen = t.error_seq();
        t.record_error();
        t.resynced(seen);
        assert!(t.is_degraded());
        t.resynced(t.error_seq());
        assert!(!t.is_degraded());
    }
}
