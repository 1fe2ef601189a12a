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
/// then the counter keys. ARGV[1]: a random seed for a missing counter; ARGV[2]: how many
/// item keys; then per item key: version, payload, ttl ms, gone (0/1). Tombstones first,
/// so a reader that sees a counter's new value also sees the item's tombstone. Returns
/// the history counter's new value, which the outbox row records in Postgres.
pub const MARK_LUA: &str = r#"
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
