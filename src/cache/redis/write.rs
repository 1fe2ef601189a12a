//! Writes: readers' conditional fills, a write's invalidation (tombstones, then the list
//! counter bumps, one script per key group, in two waves), `WAIT` for replicas, counter
//! seeds, and list pages.
use std::{sync::Arc, time::Duration};

use fred::prelude::*;

use super::{RedisStore, routes::Node};
use crate::cache::{CacheError, Fill, Mark};

impl RedisStore {
    /// One script call per group for all fills, sent at once; returns how many were
    /// accepted, and the groups whose node failed.
    pub(super) async fn fill_groups(&self, fills: &[Fill]) -> (u64, Vec<(usize, CacheError)>) {
        let calls = self
            .by_group(fills, |f| &f.key)
            .into_iter()
            .map(|(g, group)| {
                let keys: Vec<String> = group.iter().map(|f| f.key.clone()).collect();
                let mut args: Vec<String> = Vec::with_capacity(group.len() * 3);
                for f in group {
                    args.push(f.version.to_string());
                    args.push(f.payload.clone());
                    args.push(f.ttl.as_millis().max(1).to_string());
                }
                async move {
                    let node = self.node(g).map_err(|e| (g, e))?;
                    let script = self.scripts.fill.evalsha_with_reload::<u64, _, _>(
                        &node.client,
                        keys,
                        args,
                    );
                    self.run(&node, self.timeout, script)
                        .await
                        .map_err(|e| (g, e))
                }
            });
        split(futures::future::join_all(calls).await)
    }

    /// `items` split by the group of each one's key, in group order.
    fn by_group<'a, T>(
        &self,
        items: &'a [T],
        key: impl Fn(&T) -> &str,
    ) -> Vec<(usize, Vec<&'a T>)> {
        let mut groups: Vec<Vec<&T>> = vec![Vec::new(); self.keys.groups()];
        for item in items {
            groups[self.keys.group_of(key(item))].push(item);
        }
        groups
            .into_iter()
            .enumerate()
            .filter(|(_, g)| !g.is_empty())
            .collect()
    }

    /// The invalidation of one write (or of a replayed batch): tombstones, then the
    /// counter bumps (`counters`: every group's copy of each bumped counter), each group's
    /// part one script that also advances that group's history counter. Groups holding a
    /// tombstone go first, the groups with only counter copies after they answered: a
    /// reader that sees a counter's new value in any group also sees the tombstones
    /// (unless a tombstone's node failed: see below).
    /// With `CACHE_WAIT_REPLICAS`, the scripts run on each node's invalidation client and
    /// a `WAIT` on each touched node follows. Returns each touched group's history
    /// counter, which the outbox row records.
    pub(super) async fn mark_groups(
        &self,
        marks: &[Mark],
        counters: &[String],
    ) -> Result<Vec<(usize, u64)>, CacheError> {
        let groups = self.keys.groups();
        let mut items: Vec<Vec<&Mark>> = vec![Vec::new(); groups];
        let mut bumps: Vec<Vec<&String>> = vec![Vec::new(); groups];
        for m in marks {
            items[self.keys.group_of(&m.key)].push(m);
        }
        for c in counters {
            bumps[self.keys.group_of(c)].push(c);
        }
        let (first, then): (Vec<usize>, Vec<usize>) = (0..groups)
            .filter(|&g| !items[g].is_empty() || !bumps[g].is_empty())
            .partition(|&g| !items[g].is_empty());
        let mut history = Vec::with_capacity(first.len() + then.len());
        let mut touched: Vec<Arc<Node>> = Vec::new();
        let mut failed: Option<CacheError> = None;
        // The second wave goes even when the first failed: the part left undelivered
        // then lies only in the groups whose node failed, which every instance that reads
        // them sees fail (and reads around), instead of in every group's counters.
        for wave in [first, then] {
            let calls = wave.iter().map(|&g| {
                let mut keys = vec![self.keys.history(g)];
                keys.extend(items[g].iter().map(|m| m.key.clone()));
                keys.extend(bumps[g].iter().map(|c| (*c).clone()));
                let mut args = vec![
                    rand::random_range(1u64..1 << 40).to_string(),
                    crate::cache::COUNTER_TTL.as_millis().to_string(),
                    items[g].len().to_string(),
                ];
                for m in &items[g] {
                    args.push(m.version.to_string());
                    args.push(m.payload());
                    args.push(m.ttl.as_millis().max(1).to_string());
                    args.push(if m.gone { "1".into() } else { "0".into() });
                }
                async move {
                    let node = self.node(g)?;
                    let client = node.marks.as_ref().unwrap_or(&node.client);
                    let script = self
                        .scripts
                        .mark
                        .evalsha_with_reload::<u64, _, _>(client, keys, args);
                    let value = self.run(&node, self.timeout, script).await?;
                    Ok::<_, CacheError>((g, value, node))
                }
            });
            for result in futures::future::join_all(calls).await {
                match result {
                    Ok((g, value, node)) => {
                        history.push((g, value));
                        if !touched.iter().any(|n| Arc::ptr_eq(n, &node)) {
                            touched.push(node);
                        }
                    }
                    Err(e) => {
                        failed.get_or_insert(e);
                    }
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        // Once, for everything: until it answers, the mutation has not returned.
        if let Some((replicas, wait)) = self.wait {
            self.wait_replicas(&touched, replicas, wait).await?;
        }
        Ok(history)
    }

    /// `WAIT` on each node's invalidation client (which counts that connection's writes).
    async fn wait_replicas(
        &self,
        nodes: &[Arc<Node>],
        replicas: u32,
        wait: Duration,
    ) -> Result<(), CacheError> {
        let wanted = i64::from(replicas);
        let wait_ms = wait.as_millis() as i64;
        let calls = nodes.iter().filter_map(|n| {
            let client = n.marks.as_ref()?;
            Some(self.run(n, self.timeout + wait, client.wait::<i64>(wanted, wait_ms)))
        });
        let acked = futures::future::try_join_all(calls).await?;
        match acked.into_iter().min() {
            Some(acked) if acked < wanted => Err(CacheError::NotReplicated {
                acked,
                wanted: replicas,
            }),
            _ => Ok(()),
        }
    }

    /// Gives each missing counter of `keys` a random start value (`SET NX`, so one that
    /// exists is never moved back) with its TTL, and reads it again, each on its group's
    /// node.
    pub(super) async fn seed_groups(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<u64>>, CacheError> {
        let calls = keys.iter().map(|key| async move {
            let node = self.node(self.keys.group_of(key))?;
            let seed = rand::random_range(1u64..1 << 40);
            let seeded = async {
                let ttl = Expiration::PX(crate::cache::COUNTER_TTL.as_millis() as i64);
                let _: Option<String> = node
                    .client
                    .set(key.as_str(), seed, Some(ttl), Some(SetOptions::NX), false)
                    .await?;
                node.client.get::<Option<String>, _>(key.as_str()).await
            };
            let value = self.run(&node, self.timeout, seeded).await?;
            Ok::<_, CacheError>(value.and_then(|v| v.parse().ok()))
        });
        futures::future::try_join_all(calls).await
    }

    /// Plain writes with a TTL each, sent at once; returns how many were written, and
    /// the groups whose node failed.
    pub(super) async fn put_groups(
        &self,
        entries: Vec<(String, String, Duration)>,
    ) -> (u64, Vec<(usize, CacheError)>) {
        let calls = entries.into_iter().map(|(key, value, ttl)| async move {
            let g = self.keys.group_of(&key);
            let node = self.node(g).map_err(|e| (g, e))?;
            let px = Expiration::PX(ttl.as_millis().max(1) as i64);
            let set = node
                .client
                .set::<(), _, _>(key, value, Some(px), None, false);
            self.run(&node, self.timeout, set)
                .await
                .map(|_| 1)
                .map_err(|e| (g, e))
        });
        split(futures::future::join_all(calls).await)
    }
}

/// The sum of what succeeded, and each failed group once (with its first error).
fn split(results: Vec<Result<u64, (usize, CacheError)>>) -> (u64, Vec<(usize, CacheError)>) {
    let mut done = 0;
    let mut failed: Vec<(usize, CacheError)> = Vec::new();
    for r in results {
        match r {
            Ok(n) => done += n,
            Err((g, e)) if !failed.iter().any(|(f, _)| *f == g) => failed.push((g, e)),
            Err(_) => {}
        }
    }
    (done, failed)
}

impl RedisStore {
    /// Test-only: the naive invalidation's plain delete (`Cache::delete_for_test`).
    #[cfg(feature = "test-hooks")]
    pub async fn remove_for_test(&self, keys: &[String]) -> Result<(), CacheError> {
        let client = self.client().ok_or(CacheError::Unavailable)?;
        for key in keys {
            client.del::<(), _>(key.as_str()).await?;
        }
        Ok(())
    }
}
