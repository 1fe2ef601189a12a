//! Reads: the epoch, each group's history counter, the asked list counters and keys,
//! one MGET per key group (merged with concurrent reads of the group, `combine`), all
//! sent in one wave; and how long a read waits on a node that is busy rather than down.
use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use super::{RedisStore, epochs::settle_epochs, routes::Node};
use crate::cache::{CacheError, Snapshot};

impl RedisStore {
    /// The epoch, the history counter of each group read, the asked counters, then the
    /// asked keys: one MGET per group the keys fall in (with that group's epoch copy and
    /// history counter first), all sent at once. Groups in `skip`, or whose node fails,
    /// are `lost` in the answer; only when every group is lost does the read fail.
    pub(super) async fn read_groups(
        &self,
        keys: &[String],
        counters: &[String],
        skip: u64,
    ) -> Result<Snapshot, CacheError> {
        let groups = self.keys.groups();
        let names: Vec<&str> = counters.iter().chain(keys).map(String::as_str).collect();
        // Per group: the positions (into counters ++ keys) it answers for.
        let mut positions: Vec<Vec<usize>> = vec![Vec::new(); groups];
        for (i, key) in names.iter().enumerate() {
            positions[self.keys.group_of(key)].push(i);
        }
        let mut asked: Vec<usize> = (0..groups)
            .filter(|&g| !positions[g].is_empty() && skip & (1 << g) == 0)
            .collect();
        if names.is_empty() && skip & 1 == 0 {
            asked.push(0); // A read of nothing still learns the epoch (group 0's).
        }
        let stamps: Vec<[String; 2]> = asked
            .iter()
            .map(|&g| [self.keys.epoch(g), self.keys.history(g)])
            .collect();
        let commands = asked.iter().zip(&stamps).map(|(&g, stamp)| {
            let mut list: Vec<&str> = Vec::with_capacity(positions[g].len() + 2);
            list.extend(stamp.iter().map(String::as_str));
            list.extend(positions[g].iter().map(|&i| names[i]));
            async move {
                let node = self.node(g)?;
                self.timed_read(&node, self.reads[g].mget(&node.client, list))
                    .await
            }
        });
        let replies = futures::future::join_all(commands).await;
        let mut out: Vec<Option<String>> = vec![None; names.len()];
        let mut lost: Vec<usize> = Vec::new();
        let mut failed: Vec<(usize, CacheError)> = Vec::new();
        let mut history = Vec::with_capacity(asked.len());
        let mut epoch: Option<u64> = None;
        for (&g, reply) in asked.iter().zip(replies) {
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    failed.push((g, e));
                    continue;
                }
            };
            let mut reply = reply.into_iter();
            let Some(e) = number(reply.next().as_ref()) else {
                // Flushed without a reconnect: settle it, and answer nothing from this read.
                self.settle_later();
                return Err(CacheError::Unseeded);
            };
            if epoch.is_some_and(|seen| seen != e) {
                // A clear under way, or copies left apart by a failure: raise them all.
                self.settle_later();
                return Err(CacheError::Unsettled);
            }
            epoch = Some(e);
            history.push((g, number(reply.next().as_ref()).unwrap_or(0)));
            for (&i, v) in positions[g].iter().zip(reply) {
                out[i] = v;
            }
        }
        let Some(epoch) = epoch else {
            return Err(failed
                .into_iter()
                .next()
                .map_or(CacheError::Unavailable, |(_, e)| e));
        };
        for (g, p) in positions.iter().enumerate() {
            if !asked.contains(&g) || failed.iter().any(|(f, _)| *f == g) {
                lost.extend(p);
            }
        }
        let values = out.split_off(counters.len());
        Ok(Snapshot {
            epoch,
            history,
            counters: out.iter().map(|v| number(Some(v))).collect(),
            values,
            lost,
            failed,
        })
    }

    /// A read: it waits up to its budget whatever happens (a node paused for less is
    /// waited out), then on for as long as the node keeps answering other commands (in
    /// slices of the command timeout): that is this process or Redis being busy, and a
    /// read sent to the database instead would only add load where there is none to
    /// spare. Only a slice in which the node answered nothing at all, after the budget,
    /// gives up (and opens its breaker). Counted when slower than the command timeout.
    async fn timed_read<T>(
        &self,
        node: &Node,
        read: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, CacheError> {
        let started = std::time::Instant::now();
        let result =
            match while_answering(self.read_budget, self.timeout, &node.answers, read).await {
                Some(r) => Ok(node.answered(r)?),
                None => Err(node.stalled()),
            };
        if started.elapsed() > self.timeout {
            crate::metrics::cache_slow_read();
        }
        result
    }

    /// Brings the epoch copies back to one value, in the background.
    fn settle_later(&self) {
        let (routes, keys, raise) = (
            self.routes.clone(),
            self.keys.clone(),
            self.scripts.raise.clone(),
        );
        tokio::spawn(async move { settle_epochs(&routes, &keys, &raise).await });
    }
}

/// `fut`'s output if it finishes within `budget`, or later while `answers` keeps moving
/// (checked every `slice`); `None` once a slice past the budget saw no answer.
async fn while_answering<T>(
    budget: Duration,
    slice: Duration,
    answers: &AtomicU64,
    fut: impl Future<Output = T>,
) -> Option<T> {
    let mut fut = std::pin::pin!(fut);
    let mut wait = budget;
    loop {
        let seen = answers.load(Relaxed);
        match tokio::time::timeout(wait, &mut fut).await {
            Ok(v) => return Some(v),
            Err(_) if answers.load(Relaxed) > seen => wait = slice,
            Err(_) => return None,
        }
    }
}

/// A counter's value as read (`None` when missing or not a number).
pub(super) fn number(value: Option<&Option<String>>) -> Option<u64> {
    value?.as_deref()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test(start_paused = true)]
    async fn a_read_past_its_budget_waits_while_redis_answers_and_gives_up_when_it_stops() {
        let (budget, slice) = (Duration::from_millis(500), Duration::from_millis(100));
        let answers = Arc::new(AtomicU64::new(0));
        let ticking = answers.clone();
        let ticker = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                ticking.fetch_add(1, Relaxed);
            }
        });
        // Busy, not down: 1.5 s, three times the budget, and still answered.
        let slow = tokio::time::sleep(Duration::from_millis(1500));
        assert_eq!(
            while_answering(budget, slice, &answers, slow).await,
            Some(())
        );
        ticker.abort();
        // Within the budget, nothing needs to move.
        let paused = tokio::time::sleep(Duration::from_millis(400));
        assert_eq!(
            while_answering(budget, slice, &answers, paused).await,
            Some(())
        );
        // Past the budget with no answer at all: give up.
        let started = tokio::time::Instant::now();
        let stalled = tokio::time::sleep(Duration::from_secs(5));
        assert_eq!(
            while_answering(budget, slice, &answers, stalled).await,
            None
        );
        assert_eq!(started.elapsed(), budget);
    }
}
