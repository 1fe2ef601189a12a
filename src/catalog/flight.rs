//! Single-flight for cache misses on one instance: concurrent requests that miss the
//! same key (an item id, or a list page) share one database read. Sharing must not serve
//! a stale answer, so a request joins an existing flight only when that flight's database
//! read is known to come after every write that finished before the request read the
//! cache:
//! - both saw the same state of the key's cache entry under the same epoch (`Seen`): for
//!   an item, its raw entry (absent, a tombstone, another epoch's value); for a page, the
//!   values of the list counters it depends on. Every write that finishes changes that
//!   state before it returns (a tombstone with a new version; a bump of every counter a
//!   page of the key depends on), and neither ever goes back, so an equal state means no
//!   write that could change the answer finished in between. (The old anchor, one
//!   generation bumped by every write, is gone: writes now bump only the list counters
//!   they affect, and many bump none.) Or:
//! - the flight has not started its query yet, or started it after the request began.
//!
//! A finished flight stays joinable for `LINGER`, which closes the gap between a
//! leader's fill and readers that missed just before it. A failed flight is never joined
//! again: requests that arrive after the failure lead a new one.
use std::{
    collections::HashMap,
    hash::Hash,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::{BoxFuture, FutureExt, Shared};

use crate::error::AppError;

/// How long a finished flight may still be joined.
const LINGER: Duration = Duration::from_secs(1);
/// A flight older than this is joined by the time rule only: a state seen that long ago
/// might have come back (a tombstone outlives it by far, see `TOMBSTONE_FLOOR`).
const SAME_STATE_MAX_AGE: Duration = Duration::from_secs(10);
/// Past this many entries, expired flights are swept on insert; after a sweep, the
/// next waits until the map has doubled (a sweep visits every entry: sweeping on every
/// insert once this many flights are alive, as during a cache outage at thousands of
/// reads a second, cost a third of the CPU).
const SWEEP_AT: usize = 4_096;

/// A digest of what a request saw of one key's cache state (with the epoch), or `None`
/// when the cache did not answer (then only the time rule can join).
pub type Seen = Option<u64>;

/// The digest of a state: the epoch and any bytes that stand for the key's state.
pub fn seen(epoch: u64, state: impl Hash) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
    BuildHasherDefault::<DefaultHasher>::default().hash_one((epoch, state))
}

/// What one flight found, by key (keys not in the map do not exist).
pub type Found<K, V> = Arc<HashMap<K, V>>;
/// Why a flight failed (already logged); followers fail the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadFailure {
    /// The database could not be reached.
    Unavailable,
    /// The database read bound refused it (see `Catalog::read_sql`).
    Overloaded,
    /// Anything else.
    Internal,
    /// This request may not lead another read (its SQL budget is spent); never shared,
    /// since no flight is made for it.
    TooExpensive,
}

/// A flight's outcome.
pub type Outcome<K, V> = Result<Found<K, V>, LoadFailure>;

impl LoadFailure {
    /// What the request that waited for a read of `what` is told.
    pub fn into_error(self, what: &str, tally: &crate::cache::RequestTally) -> AppError {
        match self {
            Self::Unavailable => AppError::Unavailable,
            Self::Overloaded => AppError::Overloaded,
            Self::TooExpensive => AppError::TooExpensive {
                limit: tally.sql_limit(),
            },
            Self::Internal => AppError::Internal(format!("loading {what} failed")),
        }
    }
}

/// Marks kept by a flight as it runs.
#[derive(Default)]
pub struct FlightClock {
    pub query_started: OnceLock<Instant>,
    pub finished: OnceLock<Instant>,
    failed: AtomicBool,
}

struct Flight<K, V> {
    id: u64,
    seen: Seen,
    created: Instant,
    clock: Arc<FlightClock>,
    outcome: Shared<BoxFuture<'static, Outcome<K, V>>>,
}

impl<K, V> Flight<K, V> {
    fn joinable(&self, seen: Seen, request_start: Instant, now: Instant) -> bool {
        if self.expired(now) || self.clock.failed.load(Ordering::SeqCst) {
            return false;
        }
        if seen.is_some() && seen == self.seen && now - self.created < SAME_STATE_MAX_AGE {
            return true;
        }
        match self.clock.query_started.get() {
            None => self.clock.finished.get().is_none(),
            Some(started) => *started >= request_start,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.clock
            .finished
            .get()
            .is_some_and(|done| now.duration_since(*done) > LINGER)
    }
}

/// A flight's outcome, as every request that waits for it holds it.
type SharedOutcome<K, V> = Shared<BoxFuture<'static, Outcome<K, V>>>;

pub struct Flights<K, V> {
    map: Mutex<Map<K, V>>,
    next_id: AtomicU64,
}

struct Map<K, V> {
    flights: HashMap<K, Flight<K, V>>,
    /// The size at which the next sweep runs.
    sweep_at: usize,
}

impl<K, V> Default for Flights<K, V> {
    fn default() -> Self {
        Self {
            map: Mutex::new(Map {
                flights: HashMap::new(),
                sweep_at: SWEEP_AT,
            }),
            next_id: AtomicU64::new(1),
        }
    }
}

impl<K, V> Flights<K, V>
where
    K: Clone + Eq + Hash + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Loads `keys` (each with what the request saw of it): joins the flights it may
    /// join and leads one new flight, built by `lead`, for the rest. `lead` returns
    /// `None` when the request may not lead one (its SQL budget is spent): then this
    /// request fails alone with `TooExpensive`, and no flight is made.
    pub async fn load(
        &self,
        keys: &[(K, Seen)],
        request_start: Instant,
        lead: impl FnOnce(Vec<K>, Arc<FlightClock>) -> Option<BoxFuture<'static, Outcome<K, V>>>,
    ) -> Outcome<K, V> {
        let now = Instant::now();
        // Each flight waited on, with the keys this request takes from it: only those.
        // The flight of one key may also hold rows of others (it read them for another
        // request, perhaps before a write this request must see), and those rows are
        // not this request's to use.
        let mut waits: Vec<(SharedOutcome<K, V>, Vec<K>)> = Vec::new();
        let mut joined_ids: Vec<u64> = Vec::new();
        let mut led: Vec<(K, Seen)> = Vec::new();
        {
            // A std Mutex: it is never held across an await.
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            for (key, seen) in keys {
                match map.flights.get(key) {
                    Some(f) if f.joinable(*seen, request_start, now) => {
                        match joined_ids.iter().position(|id| *id == f.id) {
                            Some(i) => waits[i].1.push(key.clone()),
                            None => {
                                joined_ids.push(f.id);
                                waits.push((f.outcome.clone(), vec![key.clone()]));
                            }
                        }
                    }
                    _ => led.push((key.clone(), *seen)),
                }
            }
            if !led.is_empty() {
                let clock = Arc::new(FlightClock::default());
                let Some(work) = lead(led.iter().map(|(k, _)| k.clone()).collect(), clock.clone())
                else {
                    return Err(LoadFailure::TooExpensive);
                };
                let marks = clock.clone();
                let outcome = async move {
                    let outcome = work.await;
                    if outcome.is_err() {
                        // Before anyone sees the error: later requests lead a new flight.
                        marks.failed.store(true, Ordering::SeqCst);
                    }
                    let _ = marks.finished.set(Instant::now());
                    outcome
                }
                .boxed()
                .shared();
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                if map.flights.len() >= map.sweep_at {
                    map.flights.retain(|_, f| !f.expired(now));
                    map.sweep_at = (2 * map.flights.len()).max(SWEEP_AT);
                }
                let mine = led.iter().map(|(k, _)| k.clone()).collect();
                for (key, seen) in led {
                    map.flights.insert(
                        key,
                        Flight {
                            id,
                            seen,
                            created: now,
                            clock: clock.clone(),
                            outcome: outcome.clone(),
                        },
                    );
                }
                waits.push((outcome, mine));
            }
        }
        let (outcomes, takes): (Vec<_>, Vec<_>) = waits.into_iter().unzip();
        let mut found = HashMap::with_capacity(keys.len());
        for (outcome, take) in futures::future::join_all(outcomes)
            .await
            .into_iter()
            .zip(takes)
        {
            let rows = outcome?;
            for key in take {
                if let Some(row) = rows.get(&key) {
                    found.insert(key, row.clone());
                }
            }
        }
        Ok(Arc::new(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    type Lead = Box<
        dyn FnOnce(Vec<i32>, Arc<FlightClock>) -> Option<BoxFuture<'static, Outcome<i32, i32>>>
            + Send,
    >;

    fn leader(queries: Arc<AtomicUsize>, delay: Duration, fail: bool) -> Lead {
        Box::new(move |ids, clock| {
            Some(
                async move {
                    let _ = clock.query_started.set(Instant::now());
                    queries.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    if fail {
                        return Err(LoadFailure::Unavailable);
                    }
                    Ok(Arc::new(ids.into_iter().map(|i| (i, i * 10)).collect()))
                }
                .boxed(),
            )
        })
    }

    #[tokio::test]
    async fn concurrent_misses_that_saw_one_state_share_one_query() {
        let flights = Arc::new(Flights::<i32, i32>::default());
        let queries = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (f, q) = (flights.clone(), queries.clone());
                tokio::spawn(async move {
                    let lead = leader(q, Duration::from_millis(20), false);
                    f.load(&[(7, Some(1))], Instant::now(), lead).await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().get(&7), Some(&70));
        }
        assert_eq!(queries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_request_never_joins_a_query_that_started_before_it_under_another_state() {
        let flights = Arc::new(Flights::<i32, i32>::default());
        let queries = Arc::new(AtomicUsize::new(0));
        let (f, q) = (flights.clone(), queries.clone());
        let slow = tokio::spawn(async move {
            let lead = leader(q, Duration::from_millis(100), false);
            f.load(&[(7, Some(1))], Instant::now(), lead).await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A write's tombstone changed the entry after the first query started.
        let lead = leader(queries.clone(), Duration::ZERO, false);
        flights
            .load(&[(7, Some(2))], Instant::now(), lead)
            .await
            .unwrap();
        // Without a state (cache down), the start time decides: also no join.
        let lead = leader(queries.clone(), Duration::ZERO, false);
        flights
            .load(&[(7, None)], Instant::now(), lead)
            .await
            .unwrap();
        slow.await.unwrap().unwrap();
        assert_eq!(queries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_flight_is_shared_by_its_followers_but_never_by_later_requests() {
        let flights = Arc::new(Flights::<i32, i32>::default());
        let queries = Arc::new(AtomicUsize::new(0));
        let (f, q) = (flights.clone(), queries.clone());
        let failing = tokio::spawn(async move {
            let lead = leader(q, Duration::from_millis(50), true);
            f.load(&[(7, Some(1))], Instant::now(), lead).await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let lead = leader(queries.clone(), Duration::ZERO, false);
        let follower = flights.load(&[(7, Some(1))], Instant::now(), lead).await;
        assert_eq!(follower.unwrap_err(), LoadFailure::Unavailable);
        assert_eq!(
            failing.await.unwrap().unwrap_err(),
            LoadFailure::Unavailable
        );
        // Same state, well within LINGER: still a new flight, which succeeds.
        let lead = leader(queries.clone(), Duration::ZERO, false);
        let later = flights.load(&[(7, Some(1))], Instant::now(), lead).await;
        assert_eq!(later.unwrap().get(&7), Some(&70));
        assert_eq!(queries.load(Ordering::SeqCst), 2);
    }

    /// Joined for key 1 and for key 2, a request takes key 2's row from key 2's flight,
    /// even when key 1's flight read key 2 too (before a write this one must see).
    #[tokio::test]
    async fn a_row_comes_only_from_the_flight_joined_for_its_key() {
        let flights = Arc::new(Flights::<i32, i32>::default());
        let gate = Arc::new(tokio::sync::Notify::new());
        let (f, g) = (flights.clone(), gate.clone());
        let older = tokio::spawn(async move {
            let lead: Lead = Box::new(move |_, clock| {
                let _ = clock.query_started.set(Instant::now());
                Some(
                    g.notified_owned()
                        .map(|_| Ok(Arc::new(HashMap::from([(1, 10), (2, 20)]))))
                        .boxed(),
                )
            });
            f.load(&[(1, Some(1)), (2, Some(1))], Instant::now(), lead)
                .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        // A write changed key 2: a newer flight reads it at its new value.
        let lead: Lead =
            Box::new(|_, _| Some(async { Ok(Arc::new(HashMap::from([(2, 21)]))) }.boxed()));
        let newer = flights.load(&[(2, Some(2))], Instant::now(), lead).await;
        assert_eq!(newer.unwrap().get(&2), Some(&21));
        let f = flights.clone();
        let both = tokio::spawn(async move {
            let lead: Lead = Box::new(|_, _| panic!("everything is joined"));
            f.load(&[(2, Some(2)), (1, Some(1))], Instant::now(), lead)
                .await
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        gate.notify_one();
        let rows = both.await.unwrap().unwrap();
        assert_eq!((rows.get(&1), rows.get(&2)), (Some(&10), Some(&21)));
        older.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_request_that_may_not_lead_fails_alone_and_leaves_no_flight() {
        let flights = Flights::<i32, i32>::default();
        let queries = Arc::new(AtomicUsize::new(0));
        let refused = flights
            .load(&[(7, Some(1))], Instant::now(), |_, _| None)
            .await;
        assert_eq!(refused.unwrap_err(), LoadFailure::TooExpensive);
        let lead = leader(queries.clone(), Duration::ZERO, false);
        let next = flights.load(&[(7, Some(1))], Instant::now(), lead).await;
        assert_eq!(next.unwrap().get(&7), Some(&70), "led anew, not joined");
        assert_eq!(queries.load(Ordering::SeqCst), 1);
    }
}
