//! The trust lease: whether this instance may answer from the shared cache right now,
//! and which keys it must not (`Grant`). A writer whose invalidation Redis did not take
//! within its patience records that it gave up, in Postgres, and answers only once
//! every lease granted by a renewal *sent* before that record was visible has expired
//! (`catalog::lease`). Every instance renews its lease with one query per period that
//! lists the invalidations still undelivered whose writers gave up (or that are too old
//! to be in delivery); a grant withholds exactly the keys and list counters those rows
//! name, or everything for a row that names no counters, until they are delivered.
//!
//! Time is read from `CLOCK_BOOTTIME`, which keeps running while a machine is
//! suspended: a lease never outlives its length in real time on a resumed VM. A lease
//! runs from the moment its renewal was sent, never from its answer, and a late answer
//! of an older renewal never replaces a newer grant. No timestamps of two machines are
//! compared: the reader's clock times its lease, the writer's clock times its wait.
//!
//! Without a lease (expired, never granted, or the instance speaks another cache layout
//! than the one Postgres records) reads do not use the cache. With an expired lease a
//! read that the database then fails may still be answered from the cache, marked as
//! not covered by the promise (`Cache::read_uncovered`); an instance of another layout
//! never touches the cache.
use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use arc_swap::ArcSwap;

/// The time on `CLOCK_BOOTTIME` (since boot, suspended time included).
pub fn boot_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to write; CLOCK_BOOTTIME exists
    // on every Linux since 2.6.39. On failure `ts` stays zero: every lease then reads
    // as long expired, the safe side.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    Duration::new(
        ts.tv_sec.max(0) as u64,
        ts.tv_nsec.clamp(0, 999_999_999) as u32,
    )
}

/// The bound on how far any machine's clock may run slow or fast against real time
/// (NTP keeps it within 0.05%; this allows 2%): a writer waits a lease's length times
/// this, plus `WAIT_MARGIN`, so a lease timed by a fast clock has also expired.
pub const CLOCK_RATE_BOUND: f64 = 1.05;

/// Added to every lease wait: scheduling of the waking writer and the reader's check.
pub const WAIT_MARGIN: Duration = Duration::from_millis(25);

/// What a granted lease withholds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Withheld {
    /// Nothing: every key may be served.
    #[default]
    Nothing,
    /// These keys (item keys and every group's copy of the list counters named).
    Keys(HashSet<String>),
    /// Everything (a listed row names no counters, or too many rows are listed).
    All,
}

/// One renewal's answer, valid from `sent` for the lease's length.
#[derive(Debug, Clone)]
pub struct Grant {
    /// When the renewal that granted it was sent (`boot_now`).
    pub sent: Duration,
    /// When it expires (`boot_now`).
    pub until: Duration,
    pub withheld: Withheld,
}

/// Why this instance holds no lease now, for `/ready` and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Off {
    /// Never renewed yet, or the last renewal is older than the lease.
    Expired,
    /// Postgres records another cache layout than this instance speaks.
    Layout { recorded: Option<i32>, spoken: i32 },
    /// This instance took the layout over and waits for the old layout's leases.
    Settling,
}

/// The lease of one instance.
pub struct Lease {
    /// The newest grant (a placeholder that expired at boot before the first).
    grant: ArcSwap<Grant>,
    /// Why the last renewal granted nothing, if it did not.
    off: ArcSwap<Option<Off>>,
    /// The lease's length.
    pub length: Duration,
    /// The cache layout this instance speaks.
    pub layout: i32,
    /// Test-only naive mode: reads ignore the lease and writers do not wait for it.
    unchecked: AtomicBool,
}

/// What a read may do now.
pub enum Now {
    /// Serve from the cache: a lease is held and withholds nothing (the healthy path).
    Clear,
    /// Serve from the cache, except what the grant withholds.
    Held(Arc<Grant>),
    /// No lease: read the database, and the cache only if the database fails.
    Expired,
    /// Another layout: never touch the cache.
    Foreign,
}

impl Lease {
    pub fn new(length: Duration, layout: i32) -> Self {
        Self {
            grant: ArcSwap::from_pointee(Grant {
                sent: Duration::ZERO,
                until: Duration::ZERO,
                withheld: Withheld::All,
            }),
            off: ArcSwap::from_pointee(Some(Off::Expired)),
            length,
            layout,
            unchecked: AtomicBool::new(false),
        }
    }

    /// How often renewals are sent: twice per lease length, so one late renewal costs
    /// nothing.
    pub fn period(&self) -> Duration {
        self.length / 2
    }

    /// How long a writer that gave up waits after its record became visible: every
    /// lease granted before then has expired, whatever the clocks' rates.
    pub fn wait(&self) -> Duration {
        self.length.mul_f64(CLOCK_RATE_BOUND) + WAIT_MARGIN
    }

    /// A renewal sent at `sent` answered: a lease until `sent + length` withholding
    /// `withheld`, unless a newer renewal already granted one.
    pub fn grant(&self, sent: Duration, withheld: Withheld) {
        let new = Arc::new(Grant {
            sent,
            until: sent + self.length,
            withheld,
        });
        self.grant.rcu(|old| {
            if old.sent >= sent {
                old.clone()
            } else {
                new.clone()
            }
        });
        self.off.store(Arc::new(None));
    }

    /// A renewal answered that this instance may not use the cache (`off`). A grant
    /// already made runs out on its own: it was valid when given.
    pub fn refuse(&self, off: Off) {
        self.off.store(Arc::new(Some(off)));
        self.grant.store(Arc::new(Grant {
            sent: Duration::ZERO,
            until: Duration::ZERO,
            withheld: Withheld::All,
        }));
    }

    /// What a read may do now.
    pub fn now(&self) -> Now {
        if self.unchecked.load(Relaxed) {
            return Now::Clear;
        }
        if matches!(**self.off.load(), Some(Off::Layout { .. } | Off::Settling)) {
            return Now::Foreign;
        }
        // A guard, not a clone: every cache read passes here, and a shared reference
        // count would be one more cache line the cores trade.
        let grant = self.grant.load();
        if boot_now() >= grant.until || grant.withheld == Withheld::All {
            Now::Expired
        } else if grant.withheld == Withheld::Nothing {
            Now::Clear
        } else {
            Now::Held(arc_swap::Guard::into_inner(grant))
        }
    }

    /// Whether a lease is held now (whatever it withholds).
    pub fn held(&self) -> bool {
        self.unchecked.load(Relaxed) || (self.off.load().is_none() && boot_now() < self.until())
    }

    /// When the newest grant expires (`boot_now`).
    pub fn until(&self) -> Duration {
        self.grant.load().until
    }

    /// Whether this instance speaks the layout Postgres records (as last renewed).
    pub fn speaks_layout(&self) -> bool {
        !matches!(**self.off.load(), Some(Off::Layout { .. } | Off::Settling))
    }

    /// Why no lease is held now, if none is.
    pub fn reason(&self) -> Option<String> {
        if self.unchecked.load(Relaxed) {
            return None;
        }
        match &**self.off.load() {
            Some(Off::Layout { recorded, spoken }) => Some(format!(
                "Postgres records cache layout {}, this instance speaks {spoken}: reading the database, not the cache",
                recorded.map_or("none".to_string(), |l| l.to_string())
            )),
            Some(Off::Settling) => Some(
                "took the cache layout over; waiting until instances of the old layout have stopped trusting the cache".into(),
            ),
            Some(Off::Expired) => Some("no trust lease yet (renewing through Postgres)".into()),
            None if boot_now() >= self.until() => {
                Some("trust lease expired (Postgres did not answer its renewal in time)".into())
            }
            None if self.grant.load().withheld == Withheld::All => {
                Some("trust lease withholds every key (an undelivered invalidation names no counters)".into())
            }
            None => None,
        }
    }

    /// How many keys the current grant withholds (`u64::MAX` for all).
    pub fn withheld_count(&self) -> u64 {
        match &self.grant.load().withheld {
            Withheld::Nothing => 0,
            Withheld::Keys(k) => k.len() as u64,
            Withheld::All => u64::MAX,
        }
    }

    /// Test-only naive mode (`true`): no lease is checked or waited for.
    pub fn set_unchecked(&self, on: bool) {
        self.unchecked.store(on, Relaxed);
    }

    /// Whether the naive mode is on.
    pub fn unchecked(&self) -> bool {
        self.unchecked.load(Relaxed)
    }
}

impl Grant {
    /// Whether `key` may be served under this grant.
    pub fn allows(&self, key: &str) -> bool {
        match &self.withheld {
            Withheld::Nothing => true,
            Withheld::Keys(keys) => !keys.contains(key),
            Withheld::All => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_time_runs_forward() {
        let a = boot_now();
        std::thread::sleep(Duration::from_millis(5));
        let b = boot_now();
        assert!(b > a && a > Duration::ZERO, "{a:?} {b:?}");
    }

    #[test]
    fn a_late_answer_of_an_older_renewal_never_replaces_a_newer_grant() {
        let lease = Lease::new(Duration::from_secs(60), 2);
        let now = boot_now();
        lease.grant(now, Withheld::Nothing);
        let older = Withheld::Keys(HashSet::from(["{x}p:1".to_string()]));
        lease.grant(now - Duration::from_secs(1), older);
        assert!(
            matches!(lease.now(), Now::Clear),
            "the newer grant withholds nothing"
        );
        let _ = now;
    }

    #[test]
    fn a_lease_runs_from_its_renewal_being_sent_and_then_expires() {
        let lease = Lease::new(Duration::from_millis(30), 2);
        assert!(matches!(lease.now(), Now::Expired), "none before the first");
        // Sent 40 ms ago: its answer came late, and it is already over.
        lease.grant(boot_now() - Duration::from_millis(40), Withheld::Nothing);
        assert!(matches!(lease.now(), Now::Expired));
        lease.grant(boot_now(), Withheld::Nothing);
        assert!(matches!(lease.now(), Now::Clear) && lease.held());
        std::thread::sleep(Duration::from_millis(35));
        assert!(matches!(lease.now(), Now::Expired) && !lease.held());
        assert!(lease.reason().is_some_and(|r| r.contains("expired")));
    }

    #[test]
    fn a_grant_withholds_exactly_its_keys_and_a_foreign_layout_everything() {
        let lease = Lease::new(Duration::from_secs(60), 2);
        lease.grant(
            boot_now(),
            Withheld::Keys(HashSet::from(["{x}p:1".to_string()])),
        );
        match lease.now() {
            Now::Held(g) => assert!(!g.allows("{x}p:1") && g.allows("{x}p:2")),
            _ => panic!("held"),
        }
        lease.refuse(Off::Layout {
            recorded: Some(3),
            spoken: 2,
        });
        assert!(matches!(lease.now(), Now::Foreign) && !lease.speaks_layout());
        assert!(lease.reason().is_some_and(|r| r.contains("layout 3")));
        lease.grant(boot_now(), Withheld::All);
        assert!(
            matches!(lease.now(), Now::Expired),
            "all withheld: none held"
        );
    }

    #[test]
    fn a_writer_waits_longer_than_a_lease_on_a_fast_clock() {
        let lease = Lease::new(Duration::from_secs(1), 2);
        assert!(lease.wait() >= Duration::from_millis(1_070));
        assert_eq!(lease.period(), Duration::from_millis(500));
    }
}
