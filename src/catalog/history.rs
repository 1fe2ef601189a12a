//! The history check: is the Redis this instance reads the one that acknowledged the
//! catalog's invalidations? Redis can come back with older data than it acknowledged (a
//! restart from an RDB snapshot or a backup, an AOF that lost its last second, an
//! asynchronous replica promoted), and then tombstones and list counter bumps written
//! since are gone: every entry from before would read as current until its TTL ends.
//!
//! The anchor is Postgres, the source of truth, so a freshly started instance can check
//! too: every delivered invalidation advances a history counter in each key group it
//! touches (the mark script's `INCR hist`; on a Redis Cluster every group has its own,
//! since each master can lose data on its own) and records the values it got in its
//! outbox row in Postgres (`delivered_hist`). A group whose counter is below the highest
//! value Postgres recorded for it has lost acknowledged invalidations. Postgres is read
//! first, then Redis: a value recorded in between was already in Redis when it was
//! recorded, so a healthy Redis is never judged behind.
//!
//! The check runs at start, after every (re)connect or connection error (until it passes,
//! reads of the groups of that node go around the cache: `Cache::history_checked`) and
//! once a second, for every group whose node answers (a node that is down is checked
//! once it is back). Between
//! checks, every read carries the counter too: one that finds it below the highest value
//! this process saw for its group (`Cache::history_floors`) is refused and the history marked lost at
//! once, since connection events arrive asynchronously (and a failover behind a proxy
//! sends none). The floor also joins Postgres's value in the check, as a delivery this
//! process made may not be recorded there yet. On lost
//! history the epoch jumps (everything stored before becomes unreachable: a cold cache
//! is the cost of a lossy restart) and the counter is raised to Postgres's; then reads
//! trust Redis again. With Postgres unreachable, a reconnect to the same server process
//! (same `run_id`, which a restart changes) passes; anything else waits for Postgres.
use std::time::{Duration, Instant};

use super::Catalog;

/// How often the check runs while everything is fine.
const EVERY: Duration = Duration::from_secs(1);
/// How often the checker looks for a reconnect that needs a check now.
const POLL: Duration = Duration::from_millis(20);
/// How soon a check that could not decide is tried again.
const RETRY: Duration = Duration::from_millis(250);

/// What one check found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Redis holds every invalidation Postgres recorded as delivered.
    Intact,
    /// Redis had lost some; its epoch jumped, and it is trusted again.
    Repaired,
    /// Could not decide (Redis or Postgres unreachable); reads keep going around the
    /// cache if they did.
    Unknown,
}

impl Catalog {
    /// One history check (see the module header), of every group whose node answers.
    /// Only the Redis store has a history.
    pub async fn check_history(&self) -> Verdict {
        let cache = self.cache();
        let groups = cache.keys.groups();
        let sessions = cache.sessions();
        let recorded = self.recorded_history(groups).await;
        // The floors as they are before Redis is asked: a value seen while the question
        // is in flight may have been written after Redis answered it.
        let floors = cache.history_floors();
        let Some((counts, run_id)) = cache.history().await else {
            return Verdict::Intact;
        };
        if counts.iter().all(Option::is_none) {
            return Verdict::Unknown;
        }
        let at_floor = counts
            .iter()
            .zip(&floors)
            .all(|(c, f)| c.is_some_and(|c| c >= *f));
        let recorded = match recorded {
            Ok(v) => v,
            Err(e) => {
                // Without Postgres: the same server process cannot have gone back.
                if run_id.is_some() && run_id == cache.history_run_id() && at_floor {
                    cache.history_passed(&sessions, &counts, run_id);
                    return Verdict::Intact;
                }
                tracing::warn!(error = %e, "cannot check the cache's history without the database");
                return Verdict::Unknown;
            }
        };
        // What this process itself saw Redis hold counts too: a delivery it made may not
        // be recorded in Postgres yet.
        let wanted: Vec<u64> = recorded
            .iter()
            .zip(&floors)
            .map(|((r, _), f)| (*r).max(*f))
            .collect();
        let behind: Vec<usize> = (0..groups)
            .filter(|&g| counts[g].is_some_and(|c| c < wanted[g]))
            .collect();
        let decided = counts.iter().all(Option::is_some);
        if behind.is_empty() {
            cache.history_passed(&sessions, &counts, run_id);
            return if decided {
                Verdict::Intact
            } else {
                Verdict::Unknown
            };
        }
        cache.history_lost();
        tracing::warn!(
            groups = ?behind,
            redis = ?behind.iter().map(|&g| counts[g]).collect::<Vec<_>>(),
            postgres = ?behind.iter().map(|&g| wanted[g]).collect::<Vec<_>>(),
            "the cache lost acknowledged invalidations (restored or failed over to older data): retiring every entry"
        );
        match cache.jump_epoch(&wanted).await {
            Ok(epoch) => {
                crate::metrics::history_repaired();
                tracing::info!(epoch, "cache epoch jumped; reading through the cache again");
                let counts: Vec<Option<u64>> = counts
                    .iter()
                    .zip(&wanted)
                    .map(|(c, w)| c.map(|c| c.max(*w)))
                    .collect();
                cache.history_passed(&sessions, &counts, run_id);
                Verdict::Repaired
            }
            Err(e) => {
                cache.log_error(&e);
                Verdict::Unknown
            }
        }
    }

    /// Runs the check for the life of the app: at once after every (re)connect, and
    /// every second.
    pub fn spawn_history_checker(&self) -> tokio::task::JoinHandle<()> {
        let catalog = self.clone();
        tokio::spawn(async move {
            let (mut next, mut decided) = (Instant::now(), true);
            loop {
                let cache = catalog.cache();
                let now = Instant::now();
                // A reconnect needs a check at once, unless the last one could not decide
                // (then it waits RETRY, so an outage is not polled every POLL).
                let due = now >= next || (decided && !cache.history_checked());
                // An instance of another layout leaves the cache alone (`lease`).
                if due && cache.any_connected() && cache.lease.speaks_layout() {
                    let verdict = catalog.check_history().await;
                    decided = verdict != Verdict::Unknown;
                    next = Instant::now() + if decided { EVERY } else { RETRY };
                }
                tokio::time::sleep(POLL).await;
            }
        })
    }
}
