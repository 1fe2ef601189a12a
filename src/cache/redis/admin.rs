//! The store's own upkeep and facts: `clearCache`'s epoch bump, the history counters
//! and `run_id` the history check reads, the epoch jump after lost history, `PING`, and
//! `INFO` for `cacheStats`.
use fred::prelude::*;

use super::{
    RedisStore,
    epochs::{Raise, raise_epochs},
};
use crate::cache::CacheError;

impl RedisStore {
    /// `clearCache`: every epoch copy raised to one more than the highest (a random jump
    /// when one is missing: a flushed node), two waves. Returns the new epoch.
    pub(super) async fn raise_all_epochs(&self) -> Result<u64, CacheError> {
        raise_epochs(
            &self.routes,
            &self.keys,
            &self.scripts.raise,
            Raise::Bump,
            &[],
        )
        .await
    }

    /// Each group's history counter (0 when missing; `None` when its node did not
    /// answer), and the server's `run_id` (on a single Redis; a cluster's nodes have one
    /// each, so none).
    pub async fn history(&self) -> (Vec<Option<u64>>, Option<String>) {
        let calls = (0..self.keys.groups()).map(|g| async move {
            let node = self.node(g)?;
            let get = node.client.get::<Option<String>, _>(self.keys.history(g));
            let value = self.run(&node, self.timeout, get).await?;
            Ok::<_, CacheError>(value.and_then(|v| v.parse().ok()).unwrap_or(0))
        });
        let counts = futures::future::join_all(calls)
            .await
            .into_iter()
            .map(Result::ok)
            .collect();
        let run_id = match self.routes.is_clustered() {
            true => None,
            false => self.info_text().await.ok().and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("run_id:"))
                    .map(|v| v.trim().to_string())
            }),
        };
        (counts, run_id)
    }

    /// Makes everything stored so far unreachable (every epoch copy jumps by a random
    /// amount) and raises each group's history counter to its `floors` entry; returns
    /// the new epoch.
    pub async fn jump_epoch(&self, floors: &[u64]) -> Result<u64, CacheError> {
        raise_epochs(
            &self.routes,
            &self.keys,
            &self.scripts.raise,
            Raise::Jump,
            floors,
        )
        .await
    }

    /// The groups (bit g) whose node answers a `PING` now.
    pub async fn ping(&self) -> u64 {
        let calls = (0..self.keys.groups()).map(|g| async move {
            let node = self.node(g).ok()?;
            let ping = node.client.ping::<String>(None);
            self.run(&node, self.timeout, ping)
                .await
                .ok()
                .map(|_| 1u64 << g)
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .sum()
    }

    async fn info_text(&self) -> Result<String, CacheError> {
        let node = self.node(0)?;
        self.run(&node, self.timeout, node.client.info::<String>(None))
            .await
    }

    /// Server facts for `cacheStats` (of group 0's node): version, memory used,
    /// connected clients.
    pub async fn info(&self) -> Result<RedisInfo, CacheError> {
        let text = self.info_text().await?;
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(|v| v.trim().to_string())
        };
        Ok(RedisInfo {
            version: field("valkey_version").or_else(|| field("redis_version")),
            used_memory_bytes: field("used_memory").and_then(|v| v.parse().ok()),
            connected_clients: field("connected_clients").and_then(|v| v.parse().ok()),
        })
    }

    #[cfg(feature = "test-hooks")]
    /// Raw access (group 0's node) for the tests that read TTLs and entries.
    pub fn client(&self) -> Option<Client> {
        self.routes.node(0).map(|n| n.client.clone())
    }
}

/// What `INFO` tells about the Redis server.
#[derive(Clone, Debug, Default)]
pub struct RedisInfo {
    pub version: Option<String>,
    pub used_memory_bytes: Option<u64>,
    pub connected_clients: Option<u64>,
}
