//! Merging concurrent database reads of one kind into one statement. A flight leader
//! (`read::lead`) queues its ids here and waits for a read slot (`Catalog::read_slot`);
//! whoever gets a slot first reads every queued id, up to `MAX_IDS`, in one statement and
//! hands each waiter its rows, so a waiter may be answered before its own slot comes. With
//! the cache gone under load, N concurrent misses of different ids then cost about
//! N / batch statements instead of N, within the same bound. A waiter answered by another
//! request's statement counts no statement of its own (`sqlStatements` 0), its misses
//! still say where its rows came from.
//!
//! Freshness is unchanged: a statement runs after every id it reads was queued, hence
//! after each waiter's flight began (`FlightClock::query_started`), which is all the
//! single-flight join rule relies on. A request dropped while it holds other waiters'
//! ids (its client went away, or it timed out) drops their answer channels; they queue
//! their ids again rather than fail.
use std::{collections::HashMap, sync::Arc};

use tokio::sync::oneshot;

use super::{Catalog, flight::LoadFailure, read::Cached};

/// The most ids one merged statement reads.
const MAX_IDS: usize = 500;

type Answer<T> = Result<Arc<HashMap<i32, T>>, LoadFailure>;
/// A waiting read: its ids, and where its rows go.
type Waiter<T> = (Vec<i32>, oneshot::Sender<Answer<T>>);

/// One kind's queue of waiting reads.
pub struct Batcher<T> {
    queue: std::sync::Mutex<Vec<Waiter<T>>>,
}

impl<T> Default for Batcher<T> {
    fn default() -> Self {
        Self {
            queue: Default::default(),
        }
    }
}

impl<T> Batcher<T> {
    fn push(&self, ids: Vec<i32>, tx: oneshot::Sender<Answer<T>>) {
        self.queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((ids, tx));
    }

    /// The oldest waiters, up to `MAX_IDS` ids in all (at least one waiter).
    fn take(&self) -> Vec<Waiter<T>> {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        let (mut n, mut count) = (0, 0);
        for (ids, _) in queue.iter() {
            if count > 0 && n + ids.len() > MAX_IDS {
                break;
            }
            n += ids.len();
            count += 1;
        }
        queue.drain(..count).collect()
    }
}

impl Catalog {
    /// The rows of `ids` (those that exist), read in a statement shared with the reads of
    /// `T` queued meanwhile.
    pub(super) async fn read_merged<T: Cached>(
        &self,
        ids: Vec<i32>,
        tally: &crate::cache::RequestTally,
    ) -> Answer<T> {
        let batcher = T::batcher(self);
        let (tx, mut rx) = oneshot::channel();
        batcher.push(ids.clone(), tx);
        loop {
            let slot = tokio::select! {
                biased;
                answer = &mut rx => match answer {
                    Ok(answer) => return answer,
                    // The request that took these ids was dropped before it answered (its
                    // client went away): queue them again.
                    Err(_) => {
                        rx = requeue(batcher, &ids);
                        continue;
                    }
                },
                slot = self.read_slot() => slot,
            };
            let slot = match slot {
                Ok(slot) => slot,
                // Refused by the bound: this request gives up (its queued ids, if someone
                // still reads them, are answered to no one).
                Err(e) => return Err(classify::<T>(&e)),
            };
            let waiters = batcher.take();
            if waiters.is_empty() {
                // Another request took this one's ids and will answer (unless it is
                // dropped first: then they are queued again).
                drop(slot);
                match (&mut rx).await {
                    Ok(answer) => return answer,
                    Err(_) => {
                        rx = requeue(batcher, &ids);
                        continue;
                    }
                }
            }
            let mut all: Vec<i32> = waiters
                .iter()
                .flat_map(|(ids, _)| ids.iter().copied())
                .collect();
            all.sort_unstable();
            all.dedup();
            let rows = self.counted_sql(tally, T::fetch(self, all)).await;
            drop(slot);
            match rows {
                Ok(rows) => {
                    let found: HashMap<i32, T> = rows.into_iter().map(|r| (r.id(), r)).collect();
                    for (ids, tx) in waiters {
                        let mine = ids
                            .iter()
                            .filter_map(|id| found.get(id).map(|r| (*id, r.clone())))
                            .collect();
                        let _ = tx.send(Ok(Arc::new(mine)));
                    }
                }
                Err(e) => {
                    let failure = classify::<T>(&e);
                    for (_, tx) in waiters {
                        let _ = tx.send(Err(failure));
                    }
                }
            }
            // This request's ids were in that statement, or are still queued: look again.
        }
    }
}

/// Queues `ids` again with a fresh answer channel.
fn requeue<T>(batcher: &Batcher<T>, ids: &[i32]) -> oneshot::Receiver<Answer<T>> {
    let (tx, rx) = oneshot::channel();
    batcher.push(ids.to_vec(), tx);
    rx
}

/// What a failed read of `T` means for its flights (logged once per statement).
fn classify<T: Cached>(e: &sea_orm::DbErr) -> LoadFailure {
    if crate::error::db_overloaded(e) {
        return LoadFailure::Overloaded;
    }
    if crate::error::db_unavailable(e) {
        tracing::warn!(error = %e, kind = T::KIND.as_str(), "database unavailable");
        return LoadFailure::Unavailable;
    }
    tracing::error!(error = %e, kind = T::KIND.as_str(), "database read failed");
    LoadFailure::Internal
}
