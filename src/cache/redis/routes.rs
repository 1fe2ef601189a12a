//! Which Redis connection serves each key group. On a single Redis: one node, serving the
//! one group. On a Redis Cluster: one fred client per master (a plain, non-cluster client
//! of that node), and each group mapped to the master that owns its slot, from `CLUSTER
//! SLOTS`. The map is refreshed after a group's error and every second, so a failover
//! moves a group to its new master while every other group keeps its connection: a node
//! that is down costs only its own groups. (fred's cluster client is not used for this:
//! while it reconnects one node, every command waits for it.)
//!
//! Every node counts its connections and connection errors (`Node::connections`); a
//! group's *session* changes whenever its node reconnects or the group moves to another
//! node, since either may bring older data (`Cache` re-checks the group's history then).
use std::sync::{
    Arc, RwLock,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use fred::{
    prelude::*,
    types::{cluster::ClusterRouting, config::Server},
};

use crate::cache::{CacheError, keys::Keys};

/// One Redis server and the clients talking to it.
pub struct Node {
    pub server: Server,
    /// Reads, fills, scripts.
    pub client: Client,
    /// With `CACHE_WAIT_REPLICAS`: the invalidation scripts and their `WAIT`, on a
    /// connection of their own (`WAIT` counts that connection's writes and blocks it).
    pub marks: Option<Client>,
    /// Connections made plus connection errors seen.
    pub connections: Arc<AtomicU64>,
    /// Circuit breaker: after a stalled command, this node's commands fail at once
    /// until this instant (ms since `born`), so a stalled node costs each request at
    /// most one wait, and only for its own groups.
    open_until_ms: AtomicU64,
    /// Answers this node gave (any command): a read past its budget keeps waiting while
    /// this moves (`redis::while_answering`).
    pub answers: AtomicU64,
    born: std::time::Instant,
}

/// How long a node's breaker stays open after a stalled command.
const BREAKER_OPEN: std::time::Duration = std::time::Duration::from_millis(250);

impl Node {
    pub fn new(
        server: Server,
        client: Client,
        marks: Option<Client>,
        connections: Arc<AtomicU64>,
    ) -> Self {
        Self {
            server,
            client,
            marks,
            connections,
            open_until_ms: AtomicU64::new(0),
            answers: AtomicU64::new(0),
            born: std::time::Instant::now(),
        }
    }

    /// Whether commands may be sent: connected, and the breaker closed.
    pub fn ready(&self) -> Result<(), CacheError> {
        if !self.client.is_connected() {
            return Err(CacheError::Unavailable);
        }
        if (self.born.elapsed().as_millis() as u64) < self.open_until_ms.load(Relaxed) {
            return Err(CacheError::Timeout);
        }
        Ok(())
    }

    /// Counts an answer (see `answers`).
    pub fn answered<T>(&self, r: Result<T, fred::error::Error>) -> Result<T, fred::error::Error> {
        if r.is_ok() {
            self.answers.fetch_add(1, Relaxed);
        }
        r
    }

    /// A command stalled: open the breaker.
    pub fn stalled(&self) -> CacheError {
        let until = self.born.elapsed() + BREAKER_OPEN;
        self.open_until_ms.store(until.as_millis() as u64, Relaxed);
        CacheError::Timeout
    }
}

/// How a node's clients are made (see `redis::RedisStore::start`): for one server of a
/// cluster, or (`None`) for the URL as given (a single Redis, or Sentinel's).
pub type Builder = Box<dyn Fn(Option<&Server>) -> Result<Node, CacheError> + Send + Sync>;

pub struct Routes {
    build: Builder,
    clustered: bool,
    /// The nodes in use (a failed master stays until nothing maps to it).
    nodes: RwLock<Vec<Arc<Node>>>,
    /// The URL's nodes, asked again when no node in use answers.
    seeds: Vec<Server>,
    /// Per group: its node (none until the first `CLUSTER SLOTS` answer) and how many
    /// times it moved.
    groups: RwLock<Vec<(Option<Arc<Node>>, u64)>>,
    /// Per group: the slot its keys hash to.
    slots: Vec<u16>,
}

impl Routes {
    /// Routes for `keys`' groups on the servers `config` names. On a single Redis its one
    /// node serves every group at once; on a cluster the groups are mapped by `refresh`.
    pub fn new(keys: &Keys, config: &Config, build: Builder) -> Result<Self, CacheError> {
        let clustered = config.server.is_clustered();
        let nodes: Vec<Arc<Node>> = if clustered {
            config
                .server
                .hosts()
                .iter()
                .map(|s| build(Some(s)).map(Arc::new))
                .collect::<Result<_, _>>()?
        } else {
            vec![Arc::new(build(None)?)]
        };
        let first = (!clustered).then(|| nodes[0].clone());
        let seeds = nodes.iter().map(|n| n.server.clone()).collect();
        let slots = (0..keys.groups())
            .map(|g| fred::util::redis_keyslot(keys.epoch(g).as_bytes()))
            .collect();
        Ok(Self {
            build,
            clustered,
            nodes: RwLock::new(nodes),
            seeds,
            groups: RwLock::new(vec![(first, 0); keys.groups()]),
            slots,
        })
    }

    pub fn is_clustered(&self) -> bool {
        self.clustered
    }

    /// The node serving `group`, if known.
    pub fn node(&self, group: usize) -> Option<Arc<Node>> {
        self.groups.read().unwrap_or_else(|p| p.into_inner())[group]
            .0
            .clone()
    }

    /// Every node made so far.
    pub fn nodes(&self) -> Vec<Arc<Node>> {
        self.nodes.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A number that changes when `group`'s node reconnects or the group moves.
    pub fn session(&self, group: usize) -> u64 {
        let groups = self.groups.read().unwrap_or_else(|p| p.into_inner());
        let (node, moved) = &groups[group];
        let connections = node.as_ref().map_or(0, |n| n.connections.load(Relaxed));
        (moved << 40) ^ connections
    }

    /// Whether `group`'s node is connected now.
    pub fn is_connected(&self, group: usize) -> bool {
        self.node(group).is_some_and(|n| n.client.is_connected())
    }

    /// Asks the nodes for `CLUSTER SLOTS` (the first that answers) and maps every group
    /// to the master owning its slot, making clients for masters not seen before.
    /// Returns whether a group moved. A no-op on a single Redis.
    pub async fn refresh(&self) -> Result<bool, CacheError> {
        if !self.clustered {
            return Ok(false);
        }
        let mut routing = None;
        for node in self.nodes() {
            if !node.client.is_connected() {
                continue;
            }
            let ask = node.client.cluster_slots::<Value>();
            if let Ok(Ok(value)) =
                tokio::time::timeout(std::time::Duration::from_secs(1), ask).await
                && let Ok(r) = ClusterRouting::from_cluster_slots(value, node.server.host.clone())
            {
                routing = Some(r);
                break;
            }
        }
        let Some(routing) = routing else {
            // No node answers: bring back the URL's nodes, in case they do again.
            for seed in &self.seeds {
                let _ = self.node_for(seed);
            }
            return Err(CacheError::Unavailable);
        };
        let mut moved = false;
        for (g, &slot) in self.slots.iter().enumerate() {
            let Some(server) = routing.get_server(slot) else {
                continue;
            };
            let current = self.node(g);
            if current.as_ref().is_some_and(|n| &n.server == server) {
                continue;
            }
            let node = self.node_for(server)?;
            let mut groups = self.groups.write().unwrap_or_else(|p| p.into_inner());
            groups[g] = (Some(node), groups[g].1 + 1);
            moved = true;
        }
        self.retire_unmapped();
        Ok(moved)
    }

    /// Closes the nodes no group maps to any more (a failed master, a seed that is a
    /// replica): a dead node's client would otherwise try to reconnect forever, and each
    /// failed try would count as a connection error of this store.
    fn retire_unmapped(&self) {
        let mapped: Vec<Arc<Node>> = self
            .groups
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(n, _)| n.clone())
            .collect();
        let mut nodes = self.nodes.write().unwrap_or_else(|p| p.into_inner());
        let (keep, retire): (Vec<_>, Vec<_>) = nodes
            .drain(..)
            .partition(|n| mapped.iter().any(|m| Arc::ptr_eq(m, n)));
        *nodes = keep;
        for node in retire {
            tokio::spawn(async move {
                for client in std::iter::once(&node.client).chain(&node.marks) {
                    let quit = client.quit();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), quit).await;
                }
            });
        }
    }

    /// The node for `server`, made (and connecting) if new.
    fn node_for(&self, server: &Server) -> Result<Arc<Node>, CacheError> {
        if let Some(n) = self.nodes().into_iter().find(|n| &n.server == server) {
            return Ok(n);
        }
        let node = Arc::new((self.build)(Some(server))?);
        self.nodes
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(node.clone());
        Ok(node)
    }
}
