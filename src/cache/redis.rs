//! The Redis/Valkey store through fred, configured as a cache rather than a database:
//! connect in the background and retry forever with exponential backoff, a short
//! command timeout (reads may wait longer on a connection that is up, see
//! `timed_read`), no command retries, a bounded command buffer, detection of
//! unresponsive connections, an instant "unavailable" while disconnected, and a short
//! circuit breaker after a stalled command, so a dead or stalled node costs a request at
//! most one wait on top of its database read.
//!
//! Keys spread over hash-tag groups (`keys`); on a single Redis there is one, on a
//! cluster each group is served by its master's own connection (`route`). Every command
//! names keys of one group, and the commands of one operation go out together (one
//! wave), so a read costs one round trip however many groups it touches, and a group
//! whose node fails costs only that group (`Snapshot::lost`). The epoch has a copy per
//! group, all held at one value (`epochs`).
use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use fred::{
    prelude::*,
    types::{
        config::{Server, ServerConfig, UnresponsiveConfig},
        scripts::Script,
    },
};

use super::{
    CacheError, Fill, Mark, Snapshot,
    epochs::{Raise, maintain, raise_epochs, settle_epochs},
    keys::Keys,
    lua,
    route::{Node, Routes},
};

/// The scripts, loaded once per node on first use (`EVALSHA`, reloaded when missing).
#[derive(Clone)]
pub(super) struct Scripts {
    fill: Script,
    mark: Script,
    raise: Script,
    /// `cache::documents`.
    pub(super) register: Script,
}

pub struct RedisStore {
    routes: Arc<Routes>,
    pub(super) keys: Keys,
    pub(super) scripts: Scripts,
    pub(super) timeout: Duration,
    /// Concurrent reads of each group, merged into one MGET (`combine`): per group, not
    /// per node, since one command may touch one slot only.
    reads: Vec<super::combine::Combiner>,
    /// How long a read waits on a connected node before it looks at whether the node is
    /// still answering anything (`CACHE_READ_BUDGET_MS`, see `timed_read`).
    read_budget: Duration,
    /// With `CACHE_WAIT_REPLICAS`: the replicas to wait for, and the longest wait.
    wait: Option<(u32, Duration)>,
    /// Connections made so far on every node plus connection errors seen. A Redis that
    /// came back may hold older data than before (a snapshot, a lagging replica), so what
    /// this process remembers of it (replayable answers) must not outlive a reconnect;
    /// counting the error that precedes one closes the gap until it is reported.
    connections: Arc<AtomicU64>,
}

impl RedisStore {
    /// Builds the clients (with `wait` = (replicas, timeout), an invalidation client per
    /// node too) and starts connecting and mapping in the background; never waits.
    pub fn start(
        url: &str,
        keys: Keys,
        timeout: Duration,
        read_budget: Duration,
        wait: Option<(u32, Duration)>,
    ) -> Result<Self, CacheError> {
        let config = Config::from_url(url)?;
        let connections: Arc<AtomicU64> = Default::default();
        let reconnected = Arc::new(tokio::sync::Notify::new());
        let settle = Arc::new(AtomicBool::new(true));
        let build = {
            let (config, connections, reconnected, settle) = (
                config.clone(),
                connections.clone(),
                reconnected.clone(),
                settle.clone(),
            );
            let wait = wait.filter(|(n, _)| *n > 0);
            Box::new(move |server: Option<&Server>| {
                let mut config = config.clone();
                if let Some(s) = server {
                    config.server = ServerConfig::Centralized { server: s.clone() };
                }
                let server = server
                    .cloned()
                    .or_else(|| config.server.hosts().into_iter().next())
                    .unwrap_or_else(|| Server::new("localhost", 6379));
                // fred's own timeout above every deadline set here (a busy node's read
                // may wait past its budget; the request timeout bounds it): ours decide.
                let client = build_client(&config, (read_budget * 2).max(Duration::from_secs(10)))?;
                let marks = match wait {
                    Some((_, t)) => Some(build_client(&config, timeout + t)?),
                    None => None,
                };
                let node_connections: Arc<AtomicU64> = Default::default();
                for c in std::iter::once(&client).chain(&marks) {
                    let (all, own, woken, settle) = (
                        connections.clone(),
                        node_connections.clone(),
                        reconnected.clone(),
                        settle.clone(),
                    );
                    // The handles are dropped: the tasks live as long as the client.
                    let _task = c.on_reconnect(move |_| {
                        all.fetch_add(1, Relaxed);
                        own.fetch_add(1, Relaxed);
                        settle.store(true, Relaxed);
                        woken.notify_one();
                        async { Ok(()) }
                    });
                    let (all, own) = (connections.clone(), node_connections.clone());
                    let _errors = c.on_error(move |_| {
                        all.fetch_add(1, Relaxed);
                        own.fetch_add(1, Relaxed);
                        async { Ok(()) }
                    });
                    let _connection = c.connect();
                }
                Ok(Node::new(server, client, marks, node_connections))
            })
        };
        let routes = Arc::new(Routes::new(&keys, &config, build)?);
        let scripts = Scripts {
            fill: Script::from_lua(lua::FILL_LUA),
            mark: Script::from_lua(lua::MARK_LUA),
            raise: Script::from_lua(lua::RAISE_LUA),
            register: Script::from_lua(lua::REGISTER_LUA),
        };
        tokio::spawn(maintain(
            Arc::downgrade(&routes),
            keys.clone(),
            scripts.raise.clone(),
            reconnected,
            settle,
        ));
        Ok(Self {
            routes,
            reads: (0..keys.groups()).map(|_| Default::default()).collect(),
            keys,
            scripts,
            timeout,
            read_budget,
            wait: wait.filter(|(n, _)| *n > 0),
            connections,
        })
    }

    /// Whether every group's node is connected.
    pub fn is_connected(&self) -> bool {
        (0..self.keys.groups()).all(|g| self.routes.is_connected(g))
    }

    /// Whether some group's node is connected.
    pub fn any_connected(&self) -> bool {
        (0..self.keys.groups()).any(|g| self.routes.is_connected(g))
    }

    /// How many times the clients have (re)connected or seen a connection error.
    pub fn connections(&self) -> u64 {
        self.connections.load(Relaxed)
    }

    /// A number that changes when `group`'s node reconnects or the group moves.
    pub fn session(&self, group: usize) -> u64 {
        self.routes.session(group)
    }

    /// Waits up to `limit` until every group has a connected node.
    pub async fn wait_connected(&self, limit: Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.is_connected() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// The node serving `group`, ready for a command.
    pub(super) fn node(&self, group: usize) -> Result<Arc<Node>, CacheError> {
        let node = self.routes.node(group).ok_or(CacheError::Unavailable)?;
        node.ready()?;
        Ok(node)
    }

    /// `fut`, a command of `node`, within `timeout`. Past it the command fails; the
    /// node's breaker opens only if the node answered nothing meanwhile (a stall): a node
    /// that answers other commands is busy, and its reads must keep going to it.
    pub(super) async fn run<T>(
        &self,
        node: &Node,
        timeout: Duration,
        fut: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, CacheError> {
        let seen = node.answers.load(Relaxed);
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => Ok(node.answered(r)?),
            Err(_) if node.answers.load(Relaxed) > seen => Err(CacheError::Timeout),
            Err(_) => Err(node.stalled()),
        }
    }

    /// The epoch, the history counter of each group read, the asked counters, then the
    /// asked keys: one MGET per group the keys fall in (with that group's epoch copy and
    /// history counter first), all sent at once. Groups in `skip`, or whose node fails,
    /// are `lost` in the answer; only when every group is lost does the read fail.
    pub async fn read(
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

    /// One script call per group for all fills, sent at once; returns how many were
    /// accepted, and the groups whose node failed.
    pub async fn fill(&self, fills: &[Fill]) -> (u64, Vec<(usize, CacheError)>) {
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
    pub async fn mark(
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
                    super::COUNTER_TTL.as_millis().to_string(),
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
    pub async fn seed_counters(&self, keys: &[String]) -> Result<Vec<Option<u64>>, CacheError> {
        let calls = keys.iter().map(|key| async move {
            let node = self.node(self.keys.group_of(key))?;
            let seed = rand::random_range(1u64..1 << 40);
            let seeded = async {
                let ttl = Expiration::PX(super::COUNTER_TTL.as_millis() as i64);
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
    pub async fn put_many(
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

    /// `clearCache`: every epoch copy raised to one more than the highest (a random jump
    /// when one is missing: a flushed node), two waves. Returns the new epoch.
    pub async fn bump_epoch(&self) -> Result<u64, CacheError> {
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

    /// Raw access (group 0's node) for the tests that read TTLs and entries.
    pub fn client(&self) -> Option<Client> {
        self.routes.node(0).map(|n| n.client.clone())
    }
}

/// A fred client configured as a cache client (see the module header), not connected.
fn build_client(config: &Config, timeout: Duration) -> Result<Client, CacheError> {
    let mut config = config.clone();
    // Retry the very first connection too, so the server starts while Redis is down.
    config.fail_fast = false;
    Ok(Builder::from_config(config)
        .with_connection_config(|c| {
            c.connection_timeout = Duration::from_secs(1);
            c.internal_command_timeout = Duration::from_secs(1);
            // A cache command is worth one try: a miss is cheaper than a retry.
            c.max_command_attempts = 1;
            c.max_command_buffer_len = 10_000;
            c.unresponsive = UnresponsiveConfig {
                max_timeout: Some(Duration::from_secs(2)),
                interval: Duration::from_millis(500),
            };
        })
        .with_performance_config(|p| {
            p.default_command_timeout = timeout;
        })
        // 0 attempts = forever; 50 ms doubling up to 2 s.
        .set_policy(ReconnectPolicy::new_exponential(0, 50, 2_000, 2))
        .build()?)
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

/// A counter's value as read (`None` when missing or not a number).
fn number(value: Option<&Option<String>>) -> Option<u64> {
    value?.as_deref()?.parse().ok()
}

/// What `INFO` tells about the Redis server.
#[derive(Clone, Debug, Default)]
pub struct RedisInfo {
    pub version: Option<String>,
    pub used_memory_bytes: Option<u64>,
    pub connected_clients: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

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
