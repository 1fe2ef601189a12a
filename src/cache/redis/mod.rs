//! The Redis/Valkey store through fred, configured as a cache rather than a database:
//! connect in the background and retry forever with exponential backoff, a short
//! command timeout (reads may wait longer on a connection that is up, see
//! `read::timed_read`), no command retries, a bounded command buffer, detection of
//! unresponsive connections, an instant "unavailable" while disconnected, and a short
//! circuit breaker after a stalled command, so a dead or stalled node costs a request at
//! most one wait on top of its database read. fred's types stay in this folder.
//!
//! Keys spread over hash-tag groups (`keys`); on a single Redis there is one, on a
//! cluster each group is served by its master's own connection (`route`). Every command
//! names keys of one group, and the commands of one operation go out together (one
//! wave), so a read costs one round trip however many groups it touches, and a group
//! whose node fails costs only that group (`Snapshot::lost`). The epoch has a copy per
//! group, all held at one value (`epochs`).
//!
//! Layout: here the store and its connections; `client` (fred's settings), `routes`
//! (which node serves each key group), `read` (one wave of MGETs, merged by `combine`),
//! `write` (fills, invalidation scripts, `WAIT`, pages), `scripts` (the Lua),
//! `epochs` (the per-group epoch copies and the store's upkeep), `admin` (history,
//! epoch jumps, `PING`, `INFO`), `documents` (persisted query documents).
mod admin;
mod client;
mod combine;
pub(super) mod documents;
mod epochs;
mod read;
mod routes;
mod scripts;
mod write;

pub use admin::RedisInfo;

use super::{
    Fill, Mark, Snapshot,
    store::{Parts, Store},
};
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
        config::{Server, ServerConfig},
        scripts::Script,
    },
};

use super::{CacheError, keys::Keys};
use epochs::maintain;
use routes::{Node, Routes};

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
    reads: Vec<combine::Combiner>,
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
                let client =
                    client::build(&config, (read_budget * 2).max(Duration::from_secs(10)))?;
                let marks = match wait {
                    Some((_, t)) => Some(client::build(&config, timeout + t)?),
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
            fill: Script::from_lua(scripts::FILL_LUA),
            mark: Script::from_lua(scripts::MARK_LUA),
            raise: Script::from_lua(scripts::RAISE_LUA),
            register: Script::from_lua(scripts::REGISTER_LUA),
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
}

/// The store interface, over one round trip (or one wave of per-group commands).
impl Store for RedisStore {
    async fn read(
        &self,
        keys: &[String],
        counters: &[String],
        skip: u64,
    ) -> Result<Snapshot, CacheError> {
        self.read_groups(keys, counters, skip).await
    }

    async fn fill(&self, fills: &[Fill]) -> Parts<u64> {
        self.fill_groups(fills).await
    }

    async fn mark(
        &self,
        marks: &[Mark],
        counters: &[String],
    ) -> Result<Vec<(usize, u64)>, CacheError> {
        self.mark_groups(marks, counters).await
    }

    async fn put_many(&self, entries: Vec<(String, String, Duration)>) -> Parts<u64> {
        self.put_groups(entries).await
    }

    async fn seed_counters(&self, keys: &[String]) -> Result<Vec<Option<u64>>, CacheError> {
        self.seed_groups(keys).await
    }

    async fn bump_epoch(&self) -> Result<u64, CacheError> {
        self.raise_all_epochs().await
    }
}
