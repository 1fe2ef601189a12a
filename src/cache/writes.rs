//! What writers ask of the cache: a committed write's invalidation (tombstones, then the
//! list counter bumps, every key group's copy), and `clearCache`'s epoch bump; plus the
//! naive invalidation the consistency checker must catch (test-only).
use super::{Backend, Cache, CacheError, Event, Kind, Mark, store::Store, timed, with_store};

impl Cache {
    /// After a commit: tombstones for the written items, then a bump of each list
    /// counter the write can change (`counters`: names, e.g. `c7:price`; every group's
    /// copy is bumped). Returns the history counter of each group it touched (Redis;
    /// none for the in-process store), for Postgres to record.
    pub async fn invalidate(
        &self,
        marks: Vec<(Kind, Mark)>,
        counters: &[String],
    ) -> Result<Vec<(usize, u64)>, CacheError> {
        let kinds: Vec<Kind> = marks.iter().map(|(k, _)| *k).collect();
        let marks: Vec<Mark> = marks.into_iter().map(|(_, m)| m).collect();
        let copies = self.counter_copies(counters);
        let result = with_store!(self, s => timed("mark", s.mark(&marks, &copies)).await, return Ok(Vec::new()));
        match result {
            Ok(history) => {
                for &(group, seen) in &history {
                    self.trust.saw_history(group, seen);
                }
                for k in kinds {
                    self.stats.add(k, Event::Invalidation, 1);
                }
                self.stats
                    .add(Kind::List, Event::Invalidation, counters.len() as u64);
                Ok(history)
            }
            // Delivered to the master, not yet to enough replicas: Redis is fine, so
            // reads keep using it; the outbox replays until the replicas have it.
            Err(e @ CacheError::NotReplicated { .. }) => {
                crate::metrics::wait_short();
                Err(e)
            }
            // Not yet a lost invalidation: the outbox keeps trying, and only when it
            // gives up (`undelivered`) does this instance read around the cache.
            Err(e) => {
                self.stats.add(Kind::List, Event::Error, 1);
                Err(e)
            }
        }
    }

    /// Test-only: the naive invalidation, a plain delete of `keys` and the counter bumps.
    #[cfg(feature = "test-hooks")]
    pub async fn delete_for_test(
        &self,
        keys: Vec<String>,
        counters: &[String],
    ) -> Result<(), CacheError> {
        let counters = &self.counter_copies(counters);
        match &self.store {
            Backend::None => {}
            Backend::Redis(r) => {
                r.remove_for_test(&keys).await?;
                r.mark(&[], counters).await?;
            }
            Backend::Memory(m) => {
                m.remove_for_test(&keys).await;
                m.mark(&[], counters).await?;
            }
        }
        Ok(())
    }

    /// Makes every entry of this app unreachable at once (O(1)); tombstones stay in force.
    pub async fn clear(&self) -> Result<Option<u64>, CacheError> {
        if !self.lease.speaks_layout() {
            return Err(CacheError::Unavailable);
        }
        with_store!(self, s => timed("clear", s.bump_epoch()).await.map(Some), Ok(None))
    }
}
