//! What an answer was built from. While a request executes, every cache read records
//! its stamps here: the epoch, the values of the list counters the pages it used were
//! tagged with, and for every item key the state it found or loaded (a version,
//! "absent", "gone"). A response entry
//! keeps them; a later identical request re-reads exactly those keys in one round trip
//! (`Cache::validate`) and may reuse the entry only if every stamp is unchanged. A write
//! changes the stamp of everything it can change (a tombstone with a newer version, a
//! bump of each list counter it can affect) before its mutation returns, so a response that read anything a
//! finished write changed can never validate.
//!
//! A read that did not go through the cache (no cache, a cache error, degraded mode)
//! makes the request's stamps unusable: nothing would tell its answer apart from a stale
//! one.
use std::sync::Mutex;

use super::{Kind, entry::Entry};

/// The state of one item key that an answer depended on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ItemStamp {
    /// A row of this version (`V|version|epoch|...`).
    Version(i64),
    /// No such row (`A|epoch`).
    Absent,
    /// Deleted for good (`G|...`).
    Gone,
}

impl ItemStamp {
    /// The stamp a stored entry stands for under `epoch`; `None` when it stands for no
    /// usable state (a pending tombstone, another epoch, a list page, garbage).
    pub fn of(entry: &Entry<'_>, epoch: u64) -> Option<Self> {
        match *entry {
            Entry::Value {
                version, epoch: e, ..
            } if e == epoch => Some(Self::Version(version)),
            Entry::Absent { epoch: e } if e == epoch => Some(Self::Absent),
            Entry::Gone { .. } => Some(Self::Gone),
            _ => None,
        }
    }

    /// Whether the raw entry read now still stands for this stamp under `epoch`.
    pub fn holds(self, raw: Option<&str>, epoch: u64) -> bool {
        raw.and_then(Entry::parse)
            .and_then(|e| Self::of(&e, epoch))
            .is_some_and(|now| now == self)
    }
}

/// The stamps of one request.
#[derive(Clone, Debug, Default)]
pub struct Stamps {
    /// The epoch every read saw (all reads of one request must agree).
    pub epoch: Option<u64>,
    /// Item keys, each once; `items` holds their kind and state, in the same order.
    pub keys: Vec<String>,
    pub items: Vec<(Kind, ItemStamp)>,
    /// List counter keys, each once, and the value the pages used were tagged with.
    pub counter_keys: Vec<String>,
    pub counters: Vec<u64>,
    /// List pages used (for the tally of a replay).
    pub lists: u64,
}

impl Stamps {
    /// Whether nothing was read from the cache (e.g. `{ __typename }`, introspection):
    /// such an answer depends on no stamp at all.
    pub fn is_empty(&self) -> bool {
        self.epoch.is_none() && self.items.is_empty() && self.lists == 0
    }

    /// Entries of each kind a replay stands for.
    pub fn count(&self, kind: Kind) -> u64 {
        match kind {
            Kind::List => self.lists,
            _ => self.items.iter().filter(|(k, _)| *k == kind).count() as u64,
        }
    }

    /// Approximate heap size, for the response cache's byte bound.
    pub fn weight(&self) -> usize {
        let keys = self.keys.iter().chain(&self.counter_keys);
        keys.map(|k| k.len() + 40).sum::<usize>() + 64
    }
}

/// Collects a request's stamps as its reads happen. A std Mutex: it is held for a push,
/// never across an await.
#[derive(Default)]
pub struct Recorder {
    state: Mutex<Recording>,
}

#[derive(Default)]
struct Recording {
    stamps: Stamps,
    unusable: bool,
}

impl Recorder {
    fn with(&self, f: impl FnOnce(&mut Recording)) {
        f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// A read answered under `epoch`.
    pub fn saw(&self, epoch: u64) {
        self.with(|r| {
            if r.stamps.epoch.is_some_and(|e| e != epoch) {
                r.unusable = true;
            }
            r.stamps.epoch = Some(epoch);
        });
    }

    /// A page used was built under this value of the counter `key`.
    pub fn counter(&self, key: &str, value: u64) {
        self.with(|r| {
            let s = &mut r.stamps;
            match s.counter_keys.iter().position(|k| k == key) {
                Some(i) if s.counters[i] != value => r.unusable = true,
                Some(_) => {}
                None => {
                    s.counter_keys.push(key.to_string());
                    s.counters.push(value);
                }
            }
        });
    }

    /// The epoch this request's reads saw so far, if any.
    pub fn epoch(&self) -> Option<u64> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .stamps
            .epoch
    }

    pub fn item(&self, kind: Kind, key: &str, stamp: ItemStamp) {
        self.with(|r| match r.stamps.keys.iter().position(|k| k == key) {
            // Read twice in one request with two states: no single state to check.
            Some(i) if r.stamps.items[i].1 != stamp => r.unusable = true,
            Some(_) => {}
            None => {
                r.stamps.keys.push(key.to_string());
                r.stamps.items.push((kind, stamp));
            }
        });
    }

    pub fn list(&self) {
        self.with(|r| r.stamps.lists += 1);
    }

    /// A read that the stamps cannot vouch for (it went around the cache).
    pub fn unusable(&self) {
        self.with(|r| r.unusable = true);
    }

    /// The stamps, or `None` when some read made them unusable. The recorder is left
    /// unusable: what it recorded has been handed out once.
    pub fn take(&self) -> Option<Stamps> {
        let mut r = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let taken = std::mem::take(&mut *r);
        r.unusable = true;
        (!taken.unusable).then_some(taken.stamps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::entry;

    #[test]
    fn a_stamp_holds_only_for_the_same_state_under_the_same_epoch() {
        let v3 = ItemStamp::Version(3);
        assert!(v3.holds(Some(&entry::value(3, 7, "{}")), 7));
        assert!(
            !v3.holds(Some(&entry::value(3, 6, "{}")), 7),
            "another epoch"
        );
        assert!(
            !v3.holds(Some(&entry::pending(4)), 7),
            "a write's tombstone"
        );
        assert!(!v3.holds(Some(&entry::value(4, 7, "{}")), 7), "a newer row");
        assert!(!v3.holds(None, 7), "expired or evicted");
        assert!(ItemStamp::Absent.holds(Some(&entry::absent(7)), 7));
        assert!(
            !ItemStamp::Absent.holds(Some(&entry::pending(1)), 7),
            "created"
        );
        assert!(ItemStamp::Gone.holds(Some(&entry::gone(5)), 7));
    }

    #[test]
    fn mixed_epochs_counter_values_or_states_make_the_stamps_unusable() {
        let r = Recorder::default();
        r.saw(1);
        r.counter("n:all:members", 10);
        r.item(Kind::Product, "p:1", ItemStamp::Version(2));
        r.item(Kind::Product, "p:1", ItemStamp::Version(2));
        r.counter("n:all:members", 10);
        let s = r.take().expect("usable");
        assert_eq!(
            (s.epoch, s.counters.clone(), s.items.len()),
            (Some(1), vec![10], 1)
        );
        for spoil in [
            |r: &Recorder| r.saw(2),
            |r: &Recorder| r.counter("n:all:members", 11),
            |r: &Recorder| r.item(Kind::Product, "p:1", ItemStamp::Version(3)),
            |r: &Recorder| r.unusable(),
        ] {
            let r = Recorder::default();
            r.saw(1);
            r.counter("n:all:members", 10);
            r.item(Kind::Product, "p:1", ItemStamp::Version(2));
            spoil(&r);
            assert!(r.take().is_none());
        }
    }
}
