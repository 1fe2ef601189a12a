//! The Redis/Valkey store through fred, configured as a cache rather than a database:
//! connect in the background and retry forever with exponential backoff, a short
//! command timeout (reads may wait longer, up to their budget, on a connection that is
//! up), no command retries, a bounded command buffer, detection of unresponsive
//! connections, an instant "unavailable" while disconnected, and a short circuit
//! breaker after a timeout, so a dead or stalled Redis costs a request at most one
//! timeout on top of its database read.
//!
//! Keys spread over hash-tag groups (`keys`); on a single Redis there is one. Every
//! command names keys of one group, and the commands of one operation go out together
//! (one wave), so a read costs one round trip however many groups it touches. The epoch
//! has a copy per group, all held at one value: it is only ever raised, in every group,
//! to a target read from all copies (`raise_epochs`), so copies that disagree (a clear
//! under way, or a group whose node lost its data) converge on the highest.
use std::{
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::{Duration, Instant},
};

use fred::{
    prelude::*,
    types::{config::UnresponsiveConfig, scripts::Script},
};

use super::{CacheError, Fill, Mark, Snapshot, keys::Keys};

/// Conditional fills: the Lua twin of `entry::fill_allowed`.
/// KEYS: item keys. ARGV: per key, version, payload, ttl in ms.
const FILL_LUA: &str = r#"
local accepted = 0
for i, key in ipairs(KEYS) do
  local v = tonumber(ARGV[3 * i - 2])
  local cur = redis.call('GET', key)
  local ok = true
  if cur then
    local tag, cv = string.match(cur, '^(%a)|(%d+)')
    if tag == 'G' then
      ok = false
    elseif tag == 'V' or tag == 'P' then
      ok = v >= tonumber(cv)
    end
  end
  if ok then
    -- A fill that replaces a tombstone keeps at least the tombstone's remaining life:
    -- a slower reader holding an older row may still be on its way.
    local px = tonumber(ARGV[3 * i])
    if cur and string.sub(cur, 1, 1) == 'P' then
      local left = redis.call('PTTL', key)
      if left > px then px = left end
    end
    redis.call('SET', key, ARGV[3 * i - 1], 'PX', px)
    accepted = accepted + 1
  end
end
return accepted
"#;

/// Tombstones after a commit, then the list counter bumps, then the history counter: the
/// Lua twin of `entry::mark_allowed`. KEYS[1]: the history counter; then the item keys,
/// then the counter keys. ARGV[1]: a random seed for a missing counter; ARGV[2]: how many
/// item keys; then per item key: version, payload, ttl ms, gone (0/1). Tombstones first,
/// so a reader that sees a counter's new value also sees the item's tombstone. Returns
/// the history counter's new value, which the outbox row records in Postgres.
const MARK_LUA: &str = r#"
local items = tonumber(ARGV[2])
for i = 1, items do
  local key = KEYS[i + 1]
  local base = 2 + 4 * (i - 1)
  local v = tonumber(ARGV[base + 1])
  local gone = ARGV[base + 4] == '1'
  local cur = redis.call('GET', key)
  local write = true
  if cur then
    local tag, cv = string.match(cur, '^(%a)|(%d+)')
    if tag == 'G' then
      write = false
    elseif not gone and (tag == 'V' or tag == 'P') then
      write = tonumber(cv) < v
    end
  end
  if write then
    redis.call('SET', key, ARGV[base + 2], 'PX', ARGV[base + 3])
  end
end
for i = items + 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('SET', KEYS[i], ARGV[1])
  end
  redis.call('INCR', KEYS[i])
end
return redis.call('INCR', KEYS[1])
"#;

/// One group's epoch copy raised to a target (never lowered), and its history counter
/// to a floor (after a failed history check; 0 otherwise). KEYS: epoch, history. ARGV:
/// target, floor. Returns the copy's value.
const RAISE_LUA: &str = r#"
local e = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if e < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
local h = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if h < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
end
return redis.call('GET', KEYS[1])
"#;

pub struct RedisStore {
    client: Client,
    keys: Keys,
    fill: Script,
    mark: Script,
    raise: Script,
    timeout: Duration,
    /// How long a read may wait on a connected Redis before its request goes to the
    /// database for it (`CACHE_READ_BUDGET_MS`): a read slower than `timeout` because
    /// this process or Redis is busy is waited out, and counted, not treated as down.
    read_budget: Duration,
    /// Circuit breaker: after a timeout, every command fails at once until this
    /// instant (milliseconds since `epoch`), so one stalled Redis costs each request
    /// at most one timeout instead of one per cache command.
    open_until_ms: AtomicU64,
    epoch: Instant,
    /// Connections made so far (the first one included) plus connection errors seen. A
    /// Redis that came back may hold older data than before (a snapshot, a lagging
    /// replica), so what this process remembers of it (replayable answers, a passed
    /// history check) must not outlive a reconnect; counting the error that precedes one
    /// closes the gap until the reconnect is reported.
    connections: std::sync::Arc<AtomicU64>,
    /// With `CACHE_WAIT_REPLICAS`: a client of its own for the invalidation script and
    /// its `WAIT` (which counts that connection's writes and blocks it, so reads never
    /// queue behind it), the replicas to wait for, and the longest wait.
    replicated: Option<(Client, u32, Duration)>,
}

/// How long the breaker stays open after a timeout.
const BREAKER_OPEN: Duration = Duration::from_millis(250);

impl RedisStore {
    /// Builds the client (and, with `wait` = (replicas, timeout), the invalidation
    /// client) and starts connecting in the background; never waits for Redis.
    pub fn start(
        url: &str,
        keys: Keys,
        timeout: Duration,
        read_budget: Duration,
        wait: Option<(u32, Duration)>,
    ) -> Result<Self, CacheError> {
        // fred's own timeout above every deadline set here, so ours decide.
        let client = build_client(url, timeout.max(read_budget) * 2)?;
        let _connection_task = client.connect();
        let replicated = match wait {
            Some((n, t)) if n > 0 => {
                let marks = build_client(url, timeout + t)?;
                let _task = marks.connect();
                Some((marks, n, t))
            }
            _ => None,
        };
        let store = Self {
            client,
            keys,
            fill: Script::from_lua(FILL_LUA),
            mark: Script::from_lua(MARK_LUA),
            raise: Script::from_lua(RAISE_LUA),
            timeout,
            read_budget,
            open_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            connections: Default::default(),
            replicated,
        };
        store.seed_epoch_on_connect();
        Ok(store)
    }

    /// A missing epoch copy (a new, restarted or flushed Redis or node) makes every copy
    /// jump by a random amount, so an epoch seen before a restart is not seen again
    /// after it: a value filled from a pre-restart read reads as a miss. (List counters
    /// are seeded with random values by the first write or read that finds one missing.)
    fn seed_epoch_on_connect(&self) {
        let (client, keys, raise) = (self.client.clone(), self.keys.clone(), self.raise.clone());
        let connections = self.connections.clone();
        // The returned handle is dropped: the task lives as long as the client.
        let _task = self.client.on_reconnect(move |_server| {
            let (client, keys, raise) = (client.clone(), keys.clone(), raise.clone());
            connections.fetch_add(1, Relaxed);
            async move {
                let _ = settle_epochs(&client, &keys, &raise).await;
                Ok(())
            }
        });
        let connections = self.connections.clone();
        let _errors = self.client.on_error(move |_| {
            connections.fetch_add(1, Relaxed);
            async { Ok(()) }
        });
    }

    pub fn is_connected(&self) -> bool {
        self.client.is_connected()
    }

    /// How many times the client has (re)connected.
    pub fn connections(&self) -> u64 {
        self.connections.load(Relaxed)
    }

    /// Waits up to `limit` for the background connection.
    pub async fn wait_connected(&self, limit: Duration) {
        let _ = tokio::time::timeout(limit, self.client.wait_for_connect()).await;
    }

    async fn run<T>(
        &self,
        fut: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, CacheError> {
        self.run_on(&self.client, self.timeout, fut).await
    }

    /// `fut`, a command of `client`, within `timeout`, behind the breaker.
    async fn run_on<T>(
        &self,
        client: &Client,
        timeout: Duration,
        fut: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, CacheError> {
        if !client.is_connected() {
            return Err(CacheError::Unavailable);
        }
        let now_ms = self.epoch.elapsed().as_millis() as u64;
        if now_ms < self.open_until_ms.load(Relaxed) {
            return Err(CacheError::Timeout);
        }
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => Ok(r?),
            Err(_) => {
                let until = self.epoch.elapsed() + BREAKER_OPEN;
                self.open_until_ms.store(until.as_millis() as u64, Relaxed);
                Err(CacheError::Timeout)
            }
        }
    }

    /// The epoch, the history counter of each group read, the asked counters, then the
    /// asked keys: one MGET per group the keys fall in (with that group's epoch copy and
    /// history counter first), all sent at once.
    pub async fn read(&self, keys: &[String], counters: &[String]) -> Result<Snapshot, CacheError> {
        let groups = self.keys.groups();
        let names: Vec<&str> = counters.iter().chain(keys).map(String::as_str).collect();
        // Per group: the positions (into counters ++ keys) it answers for.
        let mut positions: Vec<Vec<usize>> = vec![Vec::new(); groups];
        for (i, key) in names.iter().enumerate() {
            positions[self.keys.group_of(key)].push(i);
        }
        let mut asked: Vec<usize> = (0..groups).filter(|&g| !positions[g].is_empty()).collect();
        if asked.is_empty() {
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
            self.client.mget::<Vec<Option<String>>, _>(list)
        });
        let replies = self
            .timed_read(futures::future::try_join_all(commands))
            .await?;
        let mut out: Vec<Option<String>> = vec![None; names.len()];
        let mut history = Vec::with_capacity(asked.len());
        let mut epoch: Option<u64> = None;
        for (&g, reply) in asked.iter().zip(replies) {
            let mut reply = reply.into_iter();
            let e = self.epoch_of(reply.next())?;
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
        let values = out.split_off(counters.len());
        Ok(Snapshot {
            epoch: epoch.unwrap_or(0),
            history,
            counters: out.iter().map(|v| number(Some(v))).collect(),
            values,
        })
    }

    /// A read within its budget, counted when slower than the command timeout.
    async fn timed_read<T>(
        &self,
        read: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, CacheError> {
        let started = Instant::now();
        let result = self.run_on(&self.client, self.read_budget, read).await;
        if started.elapsed() > self.timeout {
            crate::metrics::cache_slow_read();
        }
        result
    }

    /// The epoch copy a read got; a missing one (flushed without a reconnect) is
    /// re-seeded and the read answers nothing.
    fn epoch_of(&self, value: Option<Option<String>>) -> Result<u64, CacheError> {
        number(value.as_ref()).ok_or_else(|| {
            self.settle_later();
            CacheError::Unseeded
        })
    }

    /// Brings the epoch copies back to one value, in the background.
    fn settle_later(&self) {
        let (client, keys, raise) = (self.client.clone(), self.keys.clone(), self.raise.clone());
        tokio::spawn(async move { settle_epochs(&client, &keys, &raise).await });
    }

    /// One script call per group for all fills, sent at once; returns how many were
    /// accepted.
    pub async fn fill(&self, fills: &[Fill]) -> Result<u64, CacheError> {
        let calls = self.by_group(fills, |f| &f.key).into_iter().map(|group| {
            let keys: Vec<String> = group.iter().map(|f| f.key.clone()).collect();
            let mut args: Vec<String> = Vec::with_capacity(group.len() * 3);
            for f in group {
                args.push(f.version.to_string());
                args.push(f.payload.clone());
                args.push(f.ttl.as_millis().max(1).to_string());
            }
            self.fill
                .evalsha_with_reload::<u64, _, _>(&self.client, keys, args)
        });
        let accepted = self.run(futures::future::try_join_all(calls)).await?;
        Ok(accepted.into_iter().sum())
    }

    /// `items` split by the group of each one's key, in group order.
    fn by_group<'a, T>(&self, items: &'a [T], key: impl Fn(&T) -> &str) -> Vec<Vec<&'a T>> {
        let mut groups: Vec<Vec<&T>> = vec![Vec::new(); self.keys.groups()];
        for item in items {
            groups[self.keys.group_of(key(item))].push(item);
        }
        groups.retain(|g| !g.is_empty());
        groups
    }

    /// The invalidation of one write (or of a replayed batch): tombstones, then the
    /// counter bumps (`counters`: every group's copy of each bumped counter), each group's
    /// part one script that also advances that group's history counter. Groups holding a
    /// tombstone go first, the groups with only counter copies after they answered: a
    /// reader that sees a counter's new value in any group also sees the tombstones.
    /// Returns each touched group's history counter, which the outbox row records.
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
        let client = self.replicated.as_ref().map_or(&self.client, |r| &r.0);
        let mut history = Vec::with_capacity(first.len() + then.len());
        for wave in [first, then] {
            if wave.is_empty() {
                continue;
            }
            let calls = wave.iter().map(|&g| {
                let mut keys = vec![self.keys.history(g)];
                keys.extend(items[g].iter().map(|m| m.key.clone()));
                keys.extend(bumps[g].iter().map(|c| (*c).clone()));
                let mut args = vec![
                    rand::random_range(1u64..1 << 40).to_string(),
                    items[g].len().to_string(),
                ];
                for m in &items[g] {
                    args.push(m.version.to_string());
                    args.push(m.payload());
                    args.push(m.ttl.as_millis().max(1).to_string());
                    args.push(if m.gone { "1".into() } else { "0".into() });
                }
                self.mark
                    .evalsha_with_reload::<u64, _, _>(client, keys, args)
            });
            let values = self
                .run_on(client, self.timeout, futures::future::try_join_all(calls))
                .await?;
            history.extend(wave.iter().copied().zip(values));
        }
        // Once, for everything: until it answers, the mutation has not returned.
        if let Some((client, replicas, wait)) = &self.replicated {
            let touched: Vec<usize> = history.iter().map(|(g, _)| *g).collect();
            self.wait_replicas(client, &touched, *replicas, *wait)
                .await?;
        }
        Ok(history)
    }

    /// `WAIT` on the node of each group in `groups`, on the invalidation client's
    /// connection to it (which counts that connection's writes).
    async fn wait_replicas(
        &self,
        client: &Client,
        groups: &[usize],
        replicas: u32,
        wait: Duration,
    ) -> Result<(), CacheError> {
        let wanted = i64::from(replicas);
        let wait_ms = wait.as_millis() as i64;
        let acked: Vec<i64> = if client.is_clustered() {
            let state = client
                .cached_cluster_state()
                .ok_or(CacheError::Unavailable)?;
            let mut nodes: Vec<fred::types::config::Server> = Vec::new();
            for &g in groups {
                let slot = fred::util::redis_keyslot(self.keys.epoch(g).as_bytes());
                let node = state.get_server(slot).ok_or(CacheError::Unavailable)?;
                if !nodes.contains(node) {
                    nodes.push(node.clone());
                }
            }
            let calls = nodes
                .into_iter()
                .map(|n| async move { client.with_cluster_node(n).wait(wanted, wait_ms).await });
            self.run_on(
                client,
                self.timeout + wait,
                futures::future::try_join_all(calls),
            )
            .await?
        } else {
            vec![
                self.run_on(client, self.timeout + wait, client.wait(wanted, wait_ms))
                    .await?,
            ]
        };
        match acked.into_iter().min() {
            Some(acked) if acked < wanted => Err(CacheError::NotReplicated {
                acked,
                wanted: replicas,
            }),
            _ => Ok(()),
        }
    }

    /// Gives each missing counter of `keys` a random start value (`SET NX`, so one that
    /// exists is never moved back) and reads them all again, one pipeline (one command
    /// per key, so it is cluster safe).
    pub async fn seed_counters(&self, keys: &[String]) -> Result<Vec<Option<u64>>, CacheError> {
        let pipeline = self.client.pipeline();
        for key in keys {
            let seed = rand::random_range(1u64..1 << 40);
            let _: () = pipeline
                .set(key.as_str(), seed, None, Some(SetOptions::NX), false)
                .await?;
        }
        for key in keys {
            let _: () = pipeline.get(key.as_str()).await?;
        }
        let replies: Vec<Value> = self.run(pipeline.all()).await?;
        Ok(replies
            .into_iter()
            .skip(keys.len())
            .map(|v| v.convert::<Option<String>>().ok().flatten())
            .map(|v| v.and_then(|v| v.parse().ok()))
            .collect())
    }

    /// Plain writes with a TTL each, in one pipeline.
    pub async fn put_many(
        &self,
        entries: Vec<(String, String, Duration)>,
    ) -> Result<(), CacheError> {
        let pipeline = self.client.pipeline();
        for (key, value, ttl) in entries {
            let px = Expiration::PX(ttl.as_millis().max(1) as i64);
            let _: () = pipeline.set(key, value, Some(px), None, false).await?;
        }
        self.run(pipeline.all::<()>()).await
    }

    /// `clearCache`: every epoch copy raised to one more than the highest (a random jump
    /// when one is missing: a flushed node), two waves. Returns the new epoch.
    pub async fn bump_epoch(&self) -> Result<u64, CacheError> {
        self.run(raise_epochs(
            &self.client,
            &self.keys,
            &self.raise,
            Raise::Bump,
            &[],
        ))
        .await
    }

    /// Each group's history counter (0 when missing), and the server's `run_id` (on a
    /// single Redis; a cluster's nodes have one each, so none).
    pub async fn history(&self) -> Result<(Vec<u64>, Option<String>), CacheError> {
        let groups = self.keys.groups();
        let pipeline = self.client.pipeline();
        for g in 0..groups {
            let _: () = pipeline.get(self.keys.history(g)).await?;
        }
        let clustered = self.client.is_clustered();
        if !clustered {
            let _: () = pipeline.info(Some(fred::types::InfoKind::Server)).await?;
        }
        let replies: Vec<Value> = self.run(pipeline.all()).await?;
        let mut replies = replies.into_iter();
        let counts = (&mut replies)
            .take(groups)
            .map(|v| v.convert::<Option<String>>().ok().flatten())
            .map(|v| v.and_then(|v| v.parse().ok()).unwrap_or(0))
            .collect();
        let run_id = replies
            .next()
            .and_then(|v| v.convert::<String>().ok())
            .and_then(|info| {
                info.lines()
                    .find_map(|l| l.strip_prefix("run_id:"))
                    .map(|v| v.trim().to_string())
            });
        Ok((counts, run_id))
    }

    /// Makes everything stored so far unreachable (every epoch copy jumps by a random
    /// amount) and raises each group's history counter to its `floors` entry; returns
    /// the new epoch.
    pub async fn jump_epoch(&self, floors: &[u64]) -> Result<u64, CacheError> {
        self.run(raise_epochs(
            &self.client,
            &self.keys,
            &self.raise,
            Raise::Jump,
            floors,
        ))
        .await
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        self.run(self.client.ping::<String>(None)).await.map(|_| ())
    }

    /// Server facts for `cacheStats`: version, memory used, connected clients.
    pub async fn info(&self) -> Result<RedisInfo, CacheError> {
        let text: String = self.run(self.client.info(None)).await?;
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

    /// Raw access for the tests that read TTLs and entries.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// A fred client configured as a cache client (see the module header), not connected.
fn build_client(url: &str, timeout: Duration) -> Result<Client, CacheError> {
    let mut config = Config::from_url(url)?;
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

/// A counter's value as read (`None` when missing or not a number).
fn number(value: Option<&Option<String>>) -> Option<u64> {
    value?.as_deref()?.parse().ok()
}

/// How far `raise_epochs` moves the epoch copies.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Raise {
    /// To the highest copy (a missing copy makes it a jump).
    Settle,
    /// To one more than the highest.
    Bump,
    /// By a random amount, so no epoch seen before comes back.
    Jump,
}

/// Reads every epoch copy (one wave), then raises each to one target (a second wave),
/// with the history counters raised to `floors` (by group; missing = 0). A missing copy
/// means a group lost its data, so the target then jumps. Returns the target.
async fn raise_epochs(
    client: &Client,
    keys: &Keys,
    script: &Script,
    how: Raise,
    floors: &[u64],
) -> Result<u64, fred::error::Error> {
    let groups = keys.groups();
    let reads = (0..groups).map(|g| client.get::<Option<String>, _>(keys.epoch(g)));
    let copies: Vec<Option<u64>> = futures::future::try_join_all(reads)
        .await?
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
    let raises = (0..groups).map(|g| {
        let floor = floors.get(g).copied().unwrap_or(0);
        script.evalsha_with_reload::<String, _, _>(
            client,
            vec![keys.epoch(g), keys.history(g)],
            vec![target.to_string(), floor.to_string()],
        )
    });
    futures::future::try_join_all(raises).await?;
    Ok(target)
}

/// `raise_epochs` to the highest copy, errors only logged (a background repair).
async fn settle_epochs(client: &Client, keys: &Keys, script: &Script) {
    if let Err(e) = raise_epochs(client, keys, script, Raise::Settle, &[]).await {
        tracing::debug!(error = %e, "settling the epoch copies failed; the next read retries");
    }
}

/// What `INFO` tells about the Redis server.
#[derive(Clone, Debug, Default)]
pub struct RedisInfo {
    pub version: Option<String>,
    pub used_memory_bytes: Option<u64>,
    pub connected_clients: Option<u64>,
}
