//! Whether reads may use the shared store now, per key group, and why not. Two things
//! make an instance read a group around Redis: degraded mode, after an error of the
//! group's node that may have lost an invalidation (a lost connection, or one of its own
//! invalidations undelivered) until the outbox is replayed (`catalog::outbox`); and the
//! history check, after the node (re)connects until it passes, or at once when a read
//! finds a group's history counter below what this process saw (`catalog::history`). A
//! slow answer is neither (see `CacheError::is_loss`). On a Redis Cluster, a failed
//! master thus costs only its own groups; on a single Redis there is one group.
use std::{
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering::SeqCst},
    },
    time::Duration,
};

use super::{Backend, Cache, CacheError, keys::MAX_GROUPS, timed};

/// One key group's trust state, all atomics (no lock is held across an await).
struct Group {
    /// Errors of this group's node so far, and how many of them a completed resync
    /// (outbox replayed, node answering) has covered. While the first is ahead, reads of
    /// the group bypass the cache. Two counters instead of a flag, so an error during a
    /// resync is never cleared by it.
    error_seq: AtomicU64,
    resynced_seq: AtomicU64,
    /// The group's session (`RedisStore::session`: its node's connection count and
    /// moves) under which its history check last passed; `u64::MAX` before the first.
    /// Reads use the group only while this matches: a node that came back (restart,
    /// failover) may hold older data.
    history_ok: AtomicU64,
    /// The highest history counter value this process has seen the group hold (in
    /// reads, from its own deliveries, in checks). The counter never goes down in a
    /// Redis that keeps its data, so a read that finds it lower is reading a node that
    /// went back, whatever the connection events say (they arrive asynchronously, and a
    /// failover behind a proxy sends none).
    floor: AtomicU64,
}

/// The trust state of every group, and the server `run_id` the last passed check saw
/// (a single Redis's).
pub struct Trust {
    groups: Vec<Group>,
    history_run_id: Mutex<Option<String>>,
}

impl Trust {
    /// The state of a store whose keys fall in `groups` hash-tag groups.
    pub fn new(groups: usize) -> Self {
        let group = || Group {
            error_seq: AtomicU64::new(0),
            resynced_seq: AtomicU64::new(0),
            history_ok: AtomicU64::new(u64::MAX),
            floor: AtomicU64::new(0),
        };
        Self {
            groups: (0..groups.max(1)).map(|_| group()).collect(),
            history_run_id: Mutex::new(None),
        }
    }

    /// An error that may have lost an invalidation, in the groups of `mask` (bit g).
    pub fn record_error(&self, mask: u64) {
        for (g, group) in self.groups.iter().enumerate() {
            if mask & (1 << g) != 0 {
                group.error_seq.fetch_add(1, SeqCst);
            }
        }
    }

    pub fn is_degraded(&self, group: usize) -> bool {
        let g = &self.groups[group];
        g.error_seq.load(SeqCst) > g.resynced_seq.load(SeqCst)
    }

    pub fn any_degraded(&self) -> bool {
        (0..self.groups.len()).any(|g| self.is_degraded(g))
    }

    /// Every group's error count now.
    pub fn error_seqs(&self) -> Vec<u64> {
        self.groups
            .iter()
            .map(|g| g.error_seq.load(SeqCst))
            .collect()
    }

    /// A resync of `group` started when its error count was `seen` completed.
    pub fn resynced(&self, group: usize, seen: u64) {
        self.groups[group].resynced_seq.fetch_max(seen, SeqCst);
    }

    /// `group`'s history check passed under `session`, finding `count`.
    pub fn passed(&self, group: usize, session: u64, count: u64) {
        self.saw_history(group, count);
        self.groups[group].history_ok.store(session, SeqCst);
    }

    pub fn set_run_id(&self, run_id: Option<String>) {
        *self
            .history_run_id
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = run_id;
    }

    /// History was lost somewhere: every group waits for a check.
    pub fn lost(&self) {
        for g in &self.groups {
            g.history_ok.store(u64::MAX, SeqCst);
        }
    }

    pub fn run_id(&self) -> Option<String> {
        self.history_run_id
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn checked_under(&self, group: usize, session: u64) -> bool {
        self.groups[group].history_ok.load(SeqCst) == session
    }

    /// Every group's floor now, by group (entries past the groups are 0).
    pub fn floors(&self) -> [u64; MAX_GROUPS] {
        let mut floors = [0; MAX_GROUPS];
        for (f, g) in floors.iter_mut().zip(&self.groups) {
            *f = g.floor.load(SeqCst);
        }
        floors
    }

    /// Raises a group's floor to `seen`, a value Redis was seen to hold. Callers compare
    /// a read's value with the floor taken *before* sending it (see `Cache::read`).
    pub fn saw_history(&self, group: usize, seen: u64) {
        if let Some(g) = self.groups.get(group) {
            g.floor.fetch_max(seen, SeqCst);
        }
    }
}

impl Cache {
    /// Waits up to `limit` until reads may use every group (connected, history checked).
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
            Backend::Redis(r) => r.connections(),
            _ => 0,
        };
        let errors: u64 = self.trust.error_seqs().iter().sum();
        connections.wrapping_add(errors << 32)
    }

    /// Each group's history counter in the shared store (0 when missing; `None` when
    /// its node did not answer) and a single Redis's `run_id`; `None` for stores that
    /// cannot lose data behind this process's back.
    pub async fn history(&self) -> Option<(Vec<Option<u64>>, Option<String>)> {
        match &self.store {
            Backend::Redis(r) => Some(r.history().await),
            _ => None,
        }
    }

    /// Each group's session now: a history check started under these (see
    /// `history_passed`).
    pub fn sessions(&self) -> Vec<u64> {
        match &self.store {
            Backend::Redis(r) => (0..self.keys.groups()).map(|g| r.session(g)).collect(),
            _ => vec![0; self.keys.groups()],
        }
    }

    /// A history check that started under `sessions` found these groups (those with a
    /// count) consistent with Postgres, or made them so: reads may use them, unless their
    /// node reconnected since.
    pub fn history_passed(&self, sessions: &[u64], counts: &[Option<u64>], run_id: Option<String>) {
        for (g, count) in counts.iter().enumerate() {
            if let Some(count) = count {
                self.trust.passed(g, sessions[g], *count);
            }
        }
        self.trust.set_run_id(run_id);
    }

    /// A check found lost history: reads go around the cache until it is repaired.
    pub fn history_lost(&self) {
        self.trust.lost();
    }

    /// The `run_id` of the Redis server the last passed check saw.
    pub fn history_run_id(&self) -> Option<String> {
        self.trust.run_id()
    }

    /// Whether every group's last passed history check covers its current session.
    pub fn history_checked(&self) -> bool {
        (0..self.keys.groups()).all(|g| self.history_checked_in(g))
    }

    fn history_checked_in(&self, group: usize) -> bool {
        match &self.store {
            Backend::Redis(r) => self.trust.checked_under(group, r.session(group)),
            _ => true,
        }
    }

    /// After lost history: an epoch jump (everything stored before is unreachable) and
    /// each group's history counter raised to its `floors` entry (Postgres's).
    pub async fn jump_epoch(&self, floors: &[u64]) -> Result<u64, CacheError> {
        match &self.store {
            Backend::Redis(r) => timed("jump", r.jump_epoch(floors)).await,
            _ => Ok(0),
        }
    }

    /// Whether reads and fills may use `group` now: not degraded, its history checked.
    pub(super) fn usable(&self, group: usize) -> bool {
        !self.trust.is_degraded(group) && self.history_checked_in(group)
    }

    /// The groups (bit g) reads must not use now.
    pub(super) fn unusable_mask(&self) -> u64 {
        (0..self.keys.groups())
            .filter(|&g| !self.usable(g))
            .map(|g| 1u64 << g)
            .sum()
    }

    /// Whether reads use the cache now: a store is configured, connected, every group's
    /// history checked since its node last connected, no group in degraded mode, and
    /// (for a shared store) the trust lease held.
    pub fn is_trusted(&self) -> bool {
        self.untrusted_reason().is_none()
    }

    /// Why reads go around the cache now (for some or all groups), if they do.
    pub fn untrusted_reason(&self) -> Option<String> {
        let reason = if !self.is_enabled() {
            "no cache is configured"
        } else if !self.is_connected() {
            "not connected"
        } else if self.is_degraded() {
            "replaying invalidations after a cache error"
        } else if !self.history_checked() {
            "checking the cache's history against Postgres (after a connect)"
        } else if matches!(self.store, Backend::Redis(_)) {
            return self.lease.reason();
        } else {
            return None;
        };
        Some(reason.to_string())
    }

    /// Whether reads of some group bypass the cache until the outbox is replayed.
    pub fn is_degraded(&self) -> bool {
        self.trust.any_degraded()
    }

    /// Every group's error count now; a resync started after reading them covers those
    /// errors.
    pub fn error_seqs(&self) -> Vec<u64> {
        self.trust.error_seqs()
    }

    /// An invalidation of this instance's for the groups of `mask` could not be
    /// delivered in time: until the outbox has replayed it, reads of them go around the
    /// cache.
    pub fn undelivered(&self, mask: u64) {
        self.record_error(mask);
    }

    pub(super) fn record_error(&self, mask: u64) {
        if matches!(self.store, Backend::Redis(_)) {
            self.trust.record_error(mask);
        }
    }

    /// The outbox was replayed (except rows touching the groups of `pending`) after the
    /// error counts were `seen`: each group whose node answers now, and that no pending
    /// row touches, may be read through the cache again (unless a newer error happened
    /// meanwhile). Returns whether no group is degraded any more.
    pub async fn resync_done(&self, seen: &[u64], pending: u64) -> bool {
        let answering = match &self.store {
            Backend::Redis(r) => r.ping().await,
            _ => u64::MAX,
        };
        for (g, &seen) in seen.iter().enumerate() {
            let bit = 1u64 << g;
            if answering & bit != 0 && pending & bit == 0 {
                self.trust.resynced(g, seen);
            }
        }
        !self.is_degraded()
    }

    /// Every group (bit g).
    pub fn all_groups(&self) -> u64 {
        (1u64 << self.keys.groups()) - 1
    }

    /// The groups (bit g) the keys fall in.
    pub fn groups_of<'a>(&self, keys: impl IntoIterator<Item = &'a str>) -> u64 {
        keys.into_iter()
            .map(|k| 1u64 << self.keys.group_of(k))
            .fold(0, |a, b| a | b)
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
        let t = Trust::new(2);
        t.record_error(0b10);
        let seen = t.error_seqs();
        t.record_error(0b10);
        t.resynced(1, seen[1]);
        assert!(t.is_degraded(1) && !t.is_degraded(0), "only its own group");
        t.resynced(1, t.error_seqs()[1]);
        assert!(!t.any_degraded());
    }
}
