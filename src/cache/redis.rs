//! The Redis/Valkey store through fred, configured as a cache rather than a database:
//! connect in the background and retry forever with exponential backoff, a short
//! command timeout (reads may wait longer, up to their budget, on a connection that is
//! up), no command retries, a bounded command buffer, detection of unresponsive
//! connections, an instant "unavailable" while disconnected, and a short circuit
//! breaker after a timeout, so a dead or stalled Redis costs a request at most one
//! timeout on top of its database read.
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

/// After a failed history check: jump the epoch (seeding a missing one) by a random
/// amount, so no epoch seen before comes back, and raise the history counter to at
/// least Postgres's. KEYS: epoch, history. ARGV: seed, jump, floor.
const JUMP_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
end
redis.call('INCRBY', KEYS[1], ARGV[2])
local h = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
if h < tonumber(ARGV[3]) then
  redis.call('SET', KEYS[2], ARGV[3])
end
return redis.call('GET', KEYS[1])
"#;

/// `INCR` of a counter that is first seeded with ARGV[1] when missing.
const BUMP_LUA: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
end
return redis.call('INCR', KEYS[1])
"#;

pub struct RedisStore {
    client: Client,
    keys: Keys,
    fill: Script,
    mark: Script,
    bump: Script,
    jump: Script,
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
            bump: Script::from_lua(BUMP_LUA),
            jump: Script::from_lua(JUMP_LUA),
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

    /// A missing epoch key (a new, restarted or flushed Redis) gets a random start value,
    /// so an epoch seen before a restart is not seen again after it: a value filled from
    /// a pre-restart read reads as a miss. (List counters are seeded the same way, by
    /// the first write or read that finds one missing.)
    fn seed_epoch_on_connect(&self) {
        let client = self.client.clone();
        let keys = [self.keys.epoch()];
        let connections = self.connections.clone();
        // The returned handle is dropped: the task lives as long as the client.
        let _task = self.client.on_reconnect(move |_server| {
            let client = client.clone();
            let keys = keys.clone();
            connections.fetch_add(1, Relaxed);
            async move {
                seed_missing(&client, &keys).await;
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

    /// One MGET: the epoch, the history counter, the asked counters, then the asked keys.
    pub async fn read(&self, keys: &[String], counters: &[String]) -> Result<Snapshot, CacheError> {
        let (epoch, history) = (self.keys.epoch(), self.keys.history());
        let mut all: Vec<&str> = Vec::with_capacity(keys.len() + counters.len() + 2);
        all.push(&epoch);
        all.push(&history);
        all.extend(counters.iter().map(String::as_str));
        all.extend(keys.iter().map(String::as_str));
        let started = Instant::now();
        let mut values: Vec<Option<String>> = self
            .run_on(&self.client, self.read_budget, self.client.mget(all))
            .await?;
        if started.elapsed() > self.timeout {
            crate::metrics::cache_slow_read();
        }
        let values_of_keys = values.split_off(2 + counters.len());
        let Some(epoch) = values[0].as_deref().and_then(|v| v.parse().ok()) else {
            // Flushed without a reconnect: seed it, and answer nothing from this read.
            let (client, keys) = (self.client.clone(), [self.keys.epoch()]);
            tokio::spawn(async move { seed_missing(&client, &keys).await });
            return Err(CacheError::Unseeded);
        };
        let number = |v: &Option<String>| v.as_deref().and_then(|v| v.parse().ok());
        Ok(Snapshot {
            epoch,
            history: number(&values[1]).unwrap_or(0),
            counters: values[2..].iter().map(number).collect(),
            values: values_of_keys,
        })
    }

    /// One script call for all fills; returns how many were accepted.
    pub async fn fill(&self, fills: &[Fill]) -> Result<u64, CacheError> {
        let keys: Vec<String> = fills.iter().map(|f| f.key.clone()).collect();
        let mut args: Vec<String> = Vec::with_capacity(fills.len() * 3);
        for f in fills {
            args.push(f.version.to_string());
            args.push(f.payload.clone());
            args.push(f.ttl.as_millis().max(1).to_string());
        }
        self.run(self.fill.evalsha_with_reload(&self.client, keys, args))
            .await
    }

    /// One script call: tombstones, then the counter bumps; returns the history counter.
    pub async fn mark(&self, marks: &[Mark], counters: &[String]) -> Result<u64, CacheError> {
        let mut keys = vec![self.keys.history()];
        keys.extend(marks.iter().map(|m| m.key.clone()));
        keys.extend_from_slice(counters);
        let mut args = vec![
            rand::random_range(1u64..1 << 40).to_string(),
            marks.len().to_string(),
        ];
        for m in marks {
            args.push(m.version.to_string());
            args.push(m.payload());
            args.push(m.ttl.as_millis().max(1).to_string());
            args.push(if m.gone { "1".into() } else { "0".into() });
        }
        let Some((client, replicas, wait)) = &self.replicated else {
            return self
                .run(self.mark.evalsha_with_reload(&self.client, keys, args))
                .await;
        };
        // On the invalidation client, then WAIT for that connection's writes.
        let script = self.mark.evalsha_with_reload(client, keys, args);
        let history = self.run_on(client, self.timeout, script).await?;
        let wanted = i64::from(*replicas);
        let wait_ms = wait.as_millis() as i64;
        let acked: i64 = self
            .run_on(client, self.timeout + *wait, client.wait(wanted, wait_ms))
            .await?;
        if acked < wanted {
            return Err(CacheError::NotReplicated {
                acked,
                wanted: *replicas,
            });
        }
        Ok(history)
    }

    /// Gives each missing counter of `keys` a random start value (`SET NX`, so one that
    /// exists is never moved back) and reads them all again, one pipeline.
    pub async fn seed_counters(&self, keys: &[String]) -> Result<Vec<Option<u64>>, CacheError> {
        let pipeline = self.client.pipeline();
        for key in keys {
            let seed = rand::random_range(1u64..1 << 40);
            let _: () = pipeline
                .set(key.as_str(), seed, None, Some(SetOptions::NX), false)
                .await?;
        }
        let _: () = pipeline.mget(keys.to_vec()).await?;
        let mut replies: Vec<Value> = self.run(pipeline.all()).await?;
        let values: Vec<Option<String>> = replies
            .pop()
            .map(|v| v.convert())
            .transpose()?
            .unwrap_or_default();
        Ok(values
            .into_iter()
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

    /// `INCR epoch`, seeding a missing epoch with a random value first (one script), so a
    /// flushed Redis never comes back to a small epoch seen before.
    pub async fn bump_epoch(&self) -> Result<u64, CacheError> {
        let seed = rand::random_range(1u64..1 << 40).to_string();
        self.run(
            self.bump
                .evalsha_with_reload(&self.client, vec![self.keys.epoch()], vec![seed]),
        )
        .await
    }

    /// The history counter (0 when missing) and the server's `run_id`, one pipeline.
    pub async fn history(&self) -> Result<(u64, Option<String>), CacheError> {
        let pipeline = self.client.pipeline();
        let _: () = pipeline.get(self.keys.history()).await?;
        let _: () = pipeline.info(Some(fred::types::InfoKind::Server)).await?;
        let (count, info): (Option<String>, String) = self.run(pipeline.all()).await?;
        let run_id = info
            .lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|v| v.trim().to_string());
        Ok((count.and_then(|v| v.parse().ok()).unwrap_or(0), run_id))
    }

    /// Makes everything stored so far unreachable (epoch jump) and raises the history
    /// counter to `floor`; returns the new epoch.
    pub async fn jump_epoch(&self, floor: u64) -> Result<u64, CacheError> {
        let args = vec![
            rand::random_range(1u64..1 << 40).to_string(),
            rand::random_range(1u64 << 20..1 << 32).to_string(),
            floor.to_string(),
        ];
        let keys = vec![self.keys.epoch(), self.keys.history()];
        let epoch: String = self
            .run(self.jump.evalsha_with_reload(&self.client, keys, args))
            .await?;
        Ok(epoch.parse().unwrap_or(0))
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

/// `SET key <random> NX` for each key.
async fn seed_missing(client: &Client, keys: &[String]) {
    for key in keys {
        let seed = rand::random_range(1u64..1 << 40);
        let _: Result<Option<String>, _> = client
            .set(key.as_str(), seed, None, Some(SetOptions::NX), false)
            .await;
    }
}

/// What `INFO` tells about the Redis server.
#[derive(Clone, Debug, Default)]
pub struct RedisInfo {
    pub version: Option<String>,
    pub used_memory_bytes: Option<u64>,
    pub connected_clients: Option<u64>,
}
