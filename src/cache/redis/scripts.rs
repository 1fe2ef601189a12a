//! The Lua scripts the Redis store runs, each over keys of one hash-tag group (so each
//! touches one Redis Cluster slot) and atomic per call. `entry` holds their Rust twins
//! for the in-process store, and the rules they share.

/// Conditional fills: the Lua twin of `entry::fill_allowed`.
/// KEYS: item keys. ARGV: per key, version, payload, ttl in ms.
pub const FILL_LUA: &str = r#"
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
/// then the counter keys. ARGV[1]: a random seed for a missing counter; ARGV[2]: a
/// counter's TTL in ms (each bump renews it, see `cache::COUNTER_TTL`); ARGV[3]: how many
/// item keys; then per item key: version, payload, ttl ms, gone (0/1). Tombstones first,
/// so a reader that sees a counter's new value also sees the item's tombstone. Returns
/// the history counter's new value, which the outbox row records in Postgres.
pub const MARK_LUA: &str = r#"
local items = tonumber(ARGV[3])
for i = 1, items do
  local key = KEYS[i + 1]
  local base = 3 + 4 * (i - 1)
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
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
return redis.call('INCR', KEYS[1])
"#;

/// One group's epoch copy raised to a target (never lowered), and its history counter
/// to a floor (after a failed history check; 0 otherwise). KEYS: epoch, history. ARGV:
/// target, floor. Returns the copy's value.
pub const RAISE_LUA: &str = r#"
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

/// Registers a persisted query document within its group's bounds (`cache::documents`).
/// KEYS[1]: the document; KEYS[2]: the group's hashes by expiry (ms, a sorted set);
/// KEYS[3]: their sizes and the `#total` (a hash). ARGV: hash, document, ttl ms, max
/// count, max bytes. Forgets the entries that expired (at most 1000 per call) before it
/// checks the bounds. Returns 1 stored, 2 known already, 0 refused (full). The registry
/// keys live as long as their longest-lived document, so nothing here is kept forever.
pub const REGISTER_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1000)
if #gone > 0 then
  local freed = 0
  for _, size in ipairs(redis.call('HMGET', KEYS[3], unpack(gone))) do
    freed = freed + (tonumber(size) or 0)
  end
  redis.call('HDEL', KEYS[3], unpack(gone))
  redis.call('ZREM', KEYS[2], unpack(gone))
  redis.call('HINCRBY', KEYS[3], '#total', -freed)
end
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 2
end
local size = string.len(ARGV[2])
local count = redis.call('ZCARD', KEYS[2])
local total = tonumber(redis.call('HGET', KEYS[3], '#total')) or 0
-- Still listed but gone (evicted by Redis): its entry is replaced, not counted twice.
local old = tonumber(redis.call('HGET', KEYS[3], ARGV[1]))
if old then
  count = count - 1
  total = total - old
end
if count >= tonumber(ARGV[4]) or total + size > tonumber(ARGV[5]) then
  return 0
end
local ttl = tonumber(ARGV[3])
redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
redis.call('ZADD', KEYS[2], now + ttl, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], size)
redis.call('HINCRBY', KEYS[3], '#total', size - (old or 0))
-- Only ever lengthened: an instance with a shorter TTL must not drop the registry
-- before documents it lists.
for i = 2, 3 do
  if redis.call('PTTL', KEYS[i]) < ttl then
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return 1
"#;
