//! Single-flight for cache misses on one instance: concurrent requests that miss the
//! same id share one database query. Sharing must not serve a stale row, so a request
//! joins an existing flight only when that flight's database read is known to come
//! after every write that finished before the request started:
//! - both saw the same cache generation (every committed write bumps it before it
//!   returns, so no write finished in between) and the same epoch (no `clearCache`), or
//! - the flight has not started its query yet, or started it after the request began.
//!
//! A finished flight stays joinable (by the generation rule only) for `LINGER`, which
//! closes the gap between a leader's fill and readers that missed just before it.
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use futures::future::{BoxFuture, FutureExt, Shared};

/// How long a finished flight may still be joined by requests of the same generation.
const LINGER: Duration = Duration::from_secs(1);
/// Past this many entries, expired flights are swept on insert.
const SWEEP_AT: usize = 4_096;

/// What a request saw of the cache before it missed: (generation, epoch), or `None`
/// when the cache did not answer or had lost its generation.
pub type Stamp = Option<(u64, u64)>;

/// Rows found by one flight, by id (ids not in the map do not exist).
pub type Found<T> = Arc<HashMap<i32, T>>;
/// Why a flight failed (already logged); followers fail the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadFailure {
    /// The database could not be reached.
    Unavailable,
    /// Anything else.
    Internal,
}

/// A flight's outcome.
pub type Outcome<T> = Result<Found<T>, LoadFailure>;

/// Marks kept by a flight as it runs.
#[derive(Default)]
pub struct FlightClock {
    pub query_started: OnceLock<Instant>,
    pub finished: OnceLock<Instant>,
}

struct Flight<T> {
    id: u64,
    stamp: Stamp,
    clock: Arc<FlightClock>,
    outcome: Shared<BoxFuture<'static, Outcome<T>>>,
}

impl<T> Flight<T> {
    fn joinable(&self, stamp: Stamp, request_start: Instant, now: Instant) -> bool {
        if self.expired(now) {
            return false;
        }
        if stamp.is_some() && stamp == self.stamp {
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

pub struct Flights<T> {
    map: Mutex<HashMap<i32, Flight<T>>>,
    next_id: AtomicU64,
}

impl<T> Default for Flights<T> {
    fn default() -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Flights<T> {
    /// Loads `ids`: joins the flights it may join and leads one new flight, built by
    /// `lead`, for the rest. Returns the rows found.
    pub async fn load(
        &self,
        ids: &[i32],
        stamp: Stamp,
        request_start: Instant,
        lead: impl FnOnce(Vec<i32>, Arc<FlightClock>) -> BoxFuture<'static, Outcome<T>>,
    ) -> Outcome<T> {
        let now = Instant::now();
        let mut waits: Vec<Shared<BoxFuture<'static, Outcome<T>>>> = Vec::new();
        let mut joined_ids: Vec<u64> = Vec::new();
        let mut led: Vec<i32> = Vec::new();
        {
            // A std Mutex: it is never held across an await.
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            for &id in ids {
                match map.get(&id) {
                    Some(f) if f.joinable(stamp, request_start, now) => {
                        if !joined_ids.contains(&f.id) {
                            joined_ids.push(f.id);
                            waits.push(f.outcome.clone());
                        }
                    }
                    _ => led.push(id),
                }
            }
            if !led.is_empty() {
                let clock = Arc::new(FlightClock::default());
                let outcome = lead(led.clone(), clock.clone()).shared();
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                if map.len() >= SWEEP_AT {
                    map.retain(|_, f| !f.expired(now));
                }
                for &key in &led {
                    map.insert(
                        key,
                        Flight {
                            id,
                            stamp,
                            clock: clock.clone(),
                            outcome: outcome.clone(),
                        },
                    );
                }
                waits.push(outcome);
            }
        }
        let mut found = HashMap::with_capacity(ids.len());
        for outcome in futures::future::join_all(waits).await {
            let rows = outcome?;
            for &id in ids {
                if let Some(row) = rows.get(&id) {
                    found.insert(id, row.clone());
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

    fn leader(
        queries: Arc<AtomicUsize>,
        delay: Duration,
    ) -> impl FnOnce(Vec<i32>, Arc<FlightClock>) -> BoxFuture<'static, Outcome<i32>> {
        move |ids, clock| {
            async move {
                let _ = clock.query_started.set(Instant::now());
                queries.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let _ = clock.finished.set(Instant::now());
                Ok(Arc::new(ids.into_iter().map(|i| (i, i * 10)).collect()))
            }
            .boxed()
        }
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_generation_share_one_query() {
        let flights = Arc::new(Flights::<i32>::default());
        let queries = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (f, q) = (flights.clone(), queries.clone());
                tokio::spawn(async move {
                    f.load(
                        &[7],
                        Some((1, 0)),
                        Instant::now(),
                        leader(q, Duration::from_millis(20)),
                    )
                    .await
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().get(&7), Some(&70));
        }
        assert_eq!(queries.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_request_never_joins_a_query_that_started_before_it_under_a_newer_generation() {
        let flights = Arc::new(Flights::<i32>::default());
        let queries = Arc::new(AtomicUsize::new(0));
        let f = flights.clone();
        let q = queries.clone();
        let slow = tokio::spawn(async move {
            f.load(
                &[7],
                Some((1, 0)),
                Instant::now(),
                leader(q, Duration::from_millis(100)),
            )
            .await
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A write bumped the generation to 2 after the first query started.
        flights
            .load(
                &[7],
                Some((2, 0)),
                Instant::now(),
                leader(queries.clone(), Duration::ZERO),
            )
            .await
            .unwrap();
        // Without a generation (cache down), the start time decides: also no join.
        flights
            .load(
                &[7],
                None,
                Instant::now(),
                leader(queries.clone(), Duration::ZERO),
            )
            .await
            .unwrap();
        slow.await.unwrap().unwrap();
        assert_eq!(queries.load(Ordering::SeqCst), 3);
    }
}
