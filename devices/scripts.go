package devices

import "github.com/redis/go-redis/v9"

// The Lua scripts of the registry. Each touches either one owner key or one
// user's two keys (same hash tag), never both, so they run on Redis Cluster.
// gens are decimal strings below 2^53, compared as Lua numbers (exact).

// claimScript sets the owner key KEYS[1] to ARGV[1] (a user ID) with a new
// gen: the Redis server's time in microseconds, or the old gen + 1 if that is
// not smaller. It returns {old value or "", new gen}.
var claimScript = redis.NewScript(`
local old = redis.call('GET', KEYS[1])
local t = redis.call('TIME')
local gen = tonumber(t[1]) * 1000000 + tonumber(t[2])
if old then
  local og = tonumber(string.match(old, '^(%d+):'))
  if og and og >= gen then gen = og + 1 end
end
local g = string.format('%.0f', gen)
redis.call('SET', KEYS[1], g .. ':' .. ARGV[1])
return {old or '', g}
`)

// addScript adds or refreshes token ARGV[1] in a user's devices ZSET
// KEYS[1] (score ARGV[2], last seen in ms) and meta HASH KEYS[2]: platform
// ARGV[3] and locale ARGV[4] replace the stored ones unless empty, and the
// entry keeps the larger of its gen and ARGV[5]. Then, while the user has
// more than ARGV[6] devices, it removes the least recently seen other than
// ARGV[1]. It returns the removed tokens with their gens, flat:
// {token, gen, token, gen, ...}.
var addScript = redis.NewScript(`
local tok = ARGV[1]
local function meta(t)
  local raw = redis.call('HGET', KEYS[2], t)
  if raw then
    local ok, m = pcall(cjson.decode, raw)
    if ok and type(m) == 'table' then return m end
  end
  return {}
end
local m = meta(tok)
if ARGV[3] ~= '' then m.platform = ARGV[3] end
if ARGV[4] ~= '' then m.locale = ARGV[4] end
if (tonumber(m.gen) or 0) < tonumber(ARGV[5]) then m.gen = ARGV[5] end
redis.call('ZADD', KEYS[1], ARGV[2], tok)
redis.call('HSET', KEYS[2], tok, cjson.encode(m))
local evicted = {}
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[6])
if over > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, over)
  for _, t in ipairs(oldest) do
    if over == 0 then break end
    if t ~= tok then
      local g = meta(t).gen or '0'
      redis.call('ZREM', KEYS[1], t)
      redis.call('HDEL', KEYS[2], t)
      table.insert(evicted, t)
      table.insert(evicted, g)
      over = over - 1
    end
  end
end
return evicted
`)

// pruneScript removes token ARGV[1] from a user's devices ZSET KEYS[1] and
// meta HASH KEYS[2] unless its gen is larger than ARGV[2] (a newer
// registration). It returns 1 if it removed the entry, else 0.
var pruneScript = redis.NewScript(`
local g = 0
local raw = redis.call('HGET', KEYS[2], ARGV[1])
if raw then
  local ok, m = pcall(cjson.decode, raw)
  if ok and type(m) == 'table' then g = tonumber(m.gen) or 0 end
end
if g > tonumber(ARGV[2]) then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('ZREM', KEYS[1], ARGV[1])
`)

// releaseScript deletes the owner key KEYS[1] if it names user ARGV[1] and,
// unless ARGV[2] is "", its gen is not larger than ARGV[2]. It returns
// {1, deleted gen} or {0, bound}, where bound is the gen of the owner key
// left in place, or, when there is none, the server's time in microseconds
// minus one (lower than any gen a later claim can write).
var releaseScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
local g, u
if v then g, u = string.match(v, '^(%d+):(.*)$') end
if not g then
  local t = redis.call('TIME')
  return {0, string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]) - 1)}
end
if u ~= ARGV[1] or (ARGV[2] ~= '' and tonumber(g) > tonumber(ARGV[2])) then
  return {0, g}
end
redis.call('DEL', KEYS[1])
return {1, g}
`)
