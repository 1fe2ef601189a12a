//! What readers ask of the cache: one round trip for items, pages and their stamps
//! (`read`, which needs the trust lease and also checks the history counters it sees
//! against this process's floors; `read_uncovered` when the database failed a read the
//! lease sent there), seeding missing list counters, re-checking an earlier answer's stamps
//! (`validate`), conditional fills and list pages (new keys within the fill budget).
use super::{
    Backend, Cache, Event, Fill, Kind, RequestTally, Snapshot, lease::Now, stamps, store::Store,
    timed, timed_parts, with_store,
};

impl Cache {
    /// One round trip: the epoch, the list `counters` (key names), and `keys`. `None`
    /// when there is no cache or it failed (already counted and logged against `kind`);
    /// groups that are not usable now, or whose node failed, are `lost` in the answer.
    /// Reads of a shared store need the trust lease (`lease`): without one this
    /// answers `None` and the tally says so (the caller reads the database, and
    /// `read_uncovered` only if that fails); keys the lease withholds come back `lost`
    /// (the database, and nothing else, answers for them).
    pub async fn read(
        &self,
        kind: Kind,
        keys: &[String],
        counters: &[String],
        tally: &RequestTally,
    ) -> Option<Snapshot> {
        let grant = match &self.store {
            Backend::Redis(_) => match self.lease.now() {
                Now::Clear => None,
                Now::Held(grant) => Some(grant),
                Now::Expired => {
                    tally.lacked_lease();
                    return None;
                }
                Now::Foreign => return None,
            },
            _ => None,
        };
        let mut snapshot = self.read_now(kind, keys, counters, tally).await?;
        if let Some(grant) = grant {
            let names = counters.iter().chain(keys);
            for (i, key) in names.enumerate() {
                if !grant.allows(key) && !snapshot.lost.contains(&i) {
                    snapshot.lost.push(i);
                }
            }
            // Not `lacked_lease`: these keys may well be stale in the cache, so no
            // fallback may serve them (only a request without any lease may).
        }
        Some(snapshot)
    }

    /// The read a request without a lease may still make once the database failed it:
    /// as `read`, but ignoring the lease (never on an instance of another layout). What
    /// it serves is not covered by the promise; the tally says so.
    pub async fn read_uncovered(
        &self,
        kind: Kind,
        keys: &[String],
        counters: &[String],
        tally: &RequestTally,
    ) -> Option<Snapshot> {
        if !self.lease.speaks_layout() {
            return None;
        }
        let snapshot = self.read_now(kind, keys, counters, tally).await?;
        tally.uncovered();
        crate::metrics::uncovered_read();
        Some(snapshot)
    }

    /// One read round trip, as far as degraded mode and the history check allow.
    async fn read_now(
        &self,
        kind: Kind,
        keys: &[String],
        counters: &[String],
        tally: &RequestTally,
    ) -> Option<Snapshot> {
        let skip = self.unusable_mask();
        if skip == self.all_groups() || matches!(self.store, Backend::None) {
            return None;
        }
        // Only values seen before this read was sent bind it: a delivery answered while
        // the read is in flight may be processed after it by Redis, or its answer may be
        // handled first by this process.
        let floors = self.trust.floors();
        let result =
            with_store!(self, s => timed("read", s.read(keys, counters, skip)).await, return None);
        tally.round_trip();
        let touched = || self.groups_of(counters.iter().chain(keys).map(String::as_str));
        let mut snapshot = self.ok_or_log(kind, result, touched)?;
        self.failed_groups(kind, std::mem::take(&mut snapshot.failed));
        for &(group, seen) in &snapshot.history {
            if seen < floors[group] {
                self.history_lost();
                self.stats.add(kind, Event::Error, 1);
                tracing::warn!(
                    group,
                    seen,
                    floor = floors[group],
                    "the cache's history went back (restored or failed over): reading around it until checked"
                );
                return None;
            }
        }
        for &(group, seen) in &snapshot.history {
            self.trust.saw_history(group, seen);
        }
        Some(snapshot)
    }

    /// Seeds the missing list counters `keys` with random start values and reads them
    /// again, one round trip: a page whose counter was missing (a new or flushed Redis)
    /// is then stored by its first reader, not only after someone else seeded it.
    pub async fn seed_counters(
        &self,
        keys: &[String],
        tally: &RequestTally,
    ) -> Option<Vec<Option<u64>>> {
        let result =
            with_store!(self, s => timed("seed", s.seed_counters(keys)).await, return None);
        tally.round_trip();
        self.ok_or_log(Kind::List, result, || {
            self.groups_of(keys.iter().map(String::as_str))
        })
    }

    /// Whether every stamp of an earlier answer still holds: one round trip reading the
    /// epoch, the stamped list counters and the stamped item keys. `false` when the cache cannot
    /// answer (an error, or degraded mode), so a replay is never served on trust. Each
    /// stamp that holds counts as a hit of its kind, in the tally and the stats.
    pub async fn validate(&self, stamps: &stamps::Stamps, tally: &RequestTally) -> bool {
        if stamps.is_empty() {
            return true;
        }
        let Some(now) = self
            .read(Kind::Response, &stamps.keys, &stamps.counter_keys, tally)
            .await
        else {
            return false;
        };
        let holds = now.lost.is_empty()
            && Some(now.epoch) == stamps.epoch
            && stamps
                .counters
                .iter()
                .zip(&now.counters)
                .all(|(then, now)| Some(*then) == *now)
            && stamps
                .items
                .iter()
                .zip(&now.values)
                .all(|((_, stamp), raw)| stamp.holds(raw.as_deref(), now.epoch));
        if holds {
            for kind in Kind::ENTITIES {
                let n = stamps.count(kind);
                self.stats.add(kind, Event::Hit, n);
                tally.hit(kind, n);
            }
        }
        holds
    }

    /// Conditional fills, one round trip; rejected fills are counted, not errors. Fills
    /// of groups that are not usable now are dropped.
    pub async fn fill(&self, kind: Kind, mut fills: Vec<Fill>, tally: &RequestTally) {
        let skip = self.unusable_mask();
        if skip != 0 {
            fills.retain(|f| skip & (1 << self.keys.group_of(&f.key)) == 0);
        }
        // "No such id" markers are keys per id a stranger asks for: within the budget.
        fills.retain(|f| f.version != 0 || self.fill_budget.take(kind.as_str()));
        if fills.is_empty() {
            return;
        }
        let (accepted, failed) =
            with_store!(self, s => timed_parts("fill", s.fill(&fills)).await, return);
        tally.round_trip();
        let asked = fills
            .iter()
            .filter(|f| !failed.iter().any(|(g, _)| *g == self.keys.group_of(&f.key)))
            .count() as u64;
        self.failed_groups(kind, failed);
        self.stats.add(kind, Event::Fill, accepted);
        self.stats
            .add(kind, Event::FillRejected, asked.saturating_sub(accepted));
    }

    /// Stores list pages (key, entry, whether the key held a page already), one round
    /// trip. Not conditional: the counter tags inside each page decide whether a later
    /// read may use it. A page under a new key takes a token of the fill budget.
    pub async fn put_lists(&self, pages: Vec<(String, String, bool)>, tally: &RequestTally) {
        let skip = self.unusable_mask();
        let pages: Vec<(String, String)> = pages
            .into_iter()
            .filter(|(k, _, _)| skip & (1 << self.keys.group_of(k)) == 0)
            .filter(|(_, _, existed)| *existed || self.fill_budget.take(Kind::List.as_str()))
            .map(|(k, v, _)| (k, v))
            .collect();
        if pages.is_empty() {
            return;
        }
        let entries = pages
            .into_iter()
            .map(|(k, v)| (k, v, self.jittered(self.ttls.list)))
            .collect();
        let (written, failed) =
            with_store!(self, s => timed_parts("put", s.put_many(entries)).await, return);
        tally.round_trip();
        self.failed_groups(Kind::List, failed);
        self.stats.add(Kind::List, Event::Fill, written);
    }
}
