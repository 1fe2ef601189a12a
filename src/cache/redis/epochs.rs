//! The epoch copies of a Redis store (one per key group, all held at one value) and the
//! store's background upkeep. A copy is only ever raised, every copy to one target read
//! from all of them (`raise_epochs`): `clearCache` raises them to the highest + 1, a
//! failed history check or a missing copy (a node that lost its data) by a random jump,
//! so an epoch seen before never comes back; a read that finds copies apart settles them
//! to the highest. The upkeep maps a cluster's groups to masters and settles the copies
//! after every (re)connect.
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering::Relaxed},
    },
    time::Duration,
};

use fred::{prelude::*, types::scripts::Script};

use super::routes::{Node, Routes};
use crate::cache::{CacheError, keys::Keys};

/// For the life of the store: on a cluster, maps the groups to masters at once and then
/// every second (and at once after a reconnect, which may follow a failover); after a
/// (re)connect, settles the epoch copies (a new, restarted or flushed node gets them
/// raised by a random jump, so an epoch seen before is not seen again).
pub(super) async fn maintain(
    routes: std::sync::Weak<Routes>,
    keys: Keys,
    raise: Script,
    reconnected: Arc<tokio::sync::Notify>,
    settle: Arc<AtomicBool>,
) {
    let mut mapped = false;
    loop {
        let Some(r) = routes.upgrade() else {
            return;
        };
        if r.is_clustered() {
            mapped = r.refresh().await.is_ok() || mapped;
        }
        if settle.load(Relaxed) && (!r.is_clustered() || mapped) {
            let (routes, keys, raise, settle) =
                (r.clone(), keys.clone(), raise.clone(), settle.clone());
            tokio::spawn(async move {
                settle.store(false, Relaxed);
                if raise_epochs(&routes, &keys, &raise, Raise::Settle, &[])
                    .await
                    .is_err()
                {
                    settle.store(true, Relaxed);
                }
            });
        }
        drop(r);
        let pause = if mapped { 1000 } else { 50 };
        tokio::select! {
            _ = reconnected.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(pause)) => {}
        }
    }
}

/// How far `raise_epochs` moves the epoch copies.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Raise {
    /// To the highest copy (a missing copy makes it a jump).
    Settle,
    /// To one more than the highest.
    Bump,
    /// By a random amount, so no epoch seen before comes back.
    Jump,
}

/// Reads every epoch copy (one wave), then raises each to one target (a second wave),
/// with the history counters raised to `floors` (by group; missing = 0). A missing copy
/// means a group lost its data, so the target then jumps. Every group's node must
/// answer. Returns the target.
pub(super) async fn raise_epochs(
    routes: &Routes,
    keys: &Keys,
    script: &Script,
    how: Raise,
    floors: &[u64],
) -> Result<u64, CacheError> {
    let groups = keys.groups();
    let nodes: Vec<Arc<Node>> = (0..groups)
        .map(|g| routes.node(g).ok_or(CacheError::Unavailable))
        .collect::<Result<_, _>>()?;
    let budget = Duration::from_secs(1);
    let reads = nodes
        .iter()
        .enumerate()
        .map(|(g, n)| n.client.get::<Option<String>, _>(keys.epoch(g)));
    let copies: Vec<Option<u64>> =
        tokio::time::timeout(budget, futures::future::try_join_all(reads))
            .await
            .map_err(|_| CacheError::Timeout)??
            .into_iter()
            .map(|v| v.and_then(|v| v.parse().ok()))
            .collect();
    let highest = copies.iter().flatten().copied().max().unwrap_or(0);
    let missing = copies.iter().any(Option::is_none);
    let jump = || highest + rand::random_range(1u64 << 20..1 << 40);
    let target = match how {
        Raise::Jump => jump(),
        _ if missing => jump(),
        Raise::Bump => highest + 1,
        Raise::Settle if copies.iter().all(|c| *c == Some(highest)) => return Ok(highest),
        Raise::Settle => highest,
    };
    let raises = nodes.iter().enumerate().map(|(g, n)| {
        let floor = floors.get(g).copied().unwrap_or(0);
        script.evalsha_with_reload::<String, _, _>(
            &n.client,
            vec![keys.epoch(g), keys.history(g)],
            vec![target.to_string(), floor.to_string()],
        )
    });
    tokio::time::timeout(budget, futures::future::try_join_all(raises))
        .await
        .map_err(|_| CacheError::Timeout)??;
    Ok(target)
}

/// `raise_epochs` to the highest copy, errors only logged (a background repair).
pub(super) async fn settle_epochs(routes: &Routes, keys: &Keys, script: &Script) {
    if let Err(e) = raise_epochs(routes, keys, script, Raise::Settle, &[]).await {
        tracing::debug!(error = %e, "settling the epoch copies failed; the next read retries");
    }
}
