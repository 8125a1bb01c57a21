/**
 * Lua scripts of the Redis engine. Each runs atomically in Redis, so offset assignment, the
 * history append and the pub/sub fan-out of one publication are one step: no node can observe
 * offsets out of order, or a publication that is not yet in history.
 *
 * Keys of one channel share the hash tag `{<channel>}` so the scripts also work on Redis Cluster.
 * A stream's meta hash holds `e` (epoch) and `o` (top offset). A missing meta hash (Redis
 * restarted without persistence, key expired or flushed) means a new epoch, and any history left
 * without its meta is dropped with it, so a client is never told `recovered: true` on wrong data.
 */

/**
 * KEYS: 1 meta hash, 2 history list, 3 idempotency key (the caller's, or the node's own for a
 *       publish without one: every publish is recorded, so a lost reply can be looked up, see OUTCOME)
 * ARGV: 1 publication JSON (channel, data, time, publisher), 2 history size (0 = none),
 *       3 history TTL ms, 4 position (meta) TTL ms, 5 epoch to create with, 6 pub/sub channel,
 *       7 idempotency window ms (0 = none), 8 client id to exclude ('' = none), 9 'PUBLISH' or 'SPUBLISH',
 *       10 deadline in Redis time, ms ('0' = none): a script that runs later (the caller already gave
 *          up, e.g. Redis was paused) applies nothing, so once Redis's clock is past it the
 *          publication can never appear; the deadline is checked FIRST,
 *       11 attempt id, recorded with the result so a lookup tells this attempt from an earlier
 *          one with the same key
 * Returns: { status (0 applied, 1 duplicate, 2 past the deadline: nothing applied), offset, epoch, Redis time ms }
 */
export const PUBLISH = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[10] ~= '0' and now > tonumber(ARGV[10]) then return {2, 0, '', now} end
if ARGV[7] ~= '0' then
  local seen = redis.call('HMGET', KEYS[3], 'o', 'e')
  if seen[1] then return {1, tonumber(seen[1]), seen[2], now} end
end
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'e', epoch, 'o', 0)
end
local offset = redis.call('HINCRBY', KEYS[1], 'o', 1)
local size = tonumber(ARGV[2])
local history = 0
if size > 0 then history = 1 end
local body = '"o":' .. offset .. ',"e":"' .. epoch .. '","h":' .. history .. ',"p":' .. ARGV[1] .. '}'
if size > 0 then
  redis.call('RPUSH', KEYS[2], '{' .. body)
  redis.call('LTRIM', KEYS[2], -size, -1)
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
-- The position outlives the history, so a quiet channel keeps its epoch.
redis.call('PEXPIRE', KEYS[1], math.max(tonumber(ARGV[3]), tonumber(ARGV[4])))
local message = '{"t":"p",' .. body
if ARGV[8] ~= '' then message = '{"t":"p","x":' .. cjson.encode(ARGV[8]) .. ',' .. body end
redis.call(ARGV[9], ARGV[6], message)
if ARGV[7] ~= '0' then
  redis.call('HSET', KEYS[3], 'o', offset, 'e', epoch, 'a', ARGV[11])
  redis.call('PEXPIRE', KEYS[3], ARGV[7])
end
return {0, offset, epoch, now}
`;

/**
 * The outcome of a publish whose reply was lost or late, by its idempotency key.
 * KEYS: 1 idempotency key. ARGV: 1 the publish's deadline in Redis time, ms ('0' = none),
 *       2 until when (Redis time, ms) the key of a publish applied in time is surely not expired yet
 * Returns: { status, offset, epoch, attempt id, Redis time ms } where status is 1 applied (found),
 *          2 not applied (absent, Redis's clock is past the deadline so the script can never apply
 *          it, and the key could not have expired yet), 0 cannot tell yet
 */
export const OUTCOME = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local seen = redis.call('HMGET', KEYS[1], 'o', 'e', 'a')
if seen[1] then return {1, tonumber(seen[1]), seen[2], seen[3] or '', now} end
if ARGV[1] ~= '0' and now > tonumber(ARGV[1]) and now < tonumber(ARGV[2]) then return {2, 0, '', '', now} end
return {0, 0, '', '', now}
`;

/**
 * A stream's position, creating the stream (with the epoch given) when it does not exist, and
 * keeping its meta alive for `ttl` ms at least. Returns epoch, top offset, retained length.
 * Shared by READ and POSITIONS.
 */
const STREAM_POSITION = `
local function position(meta, hist, newEpoch, ttl)
  local epoch = redis.call('HGET', meta, 'e')
  if not epoch then
    redis.call('DEL', hist)
    redis.call('HSET', meta, 'e', newEpoch, 'o', 0)
    redis.call('PEXPIRE', meta, ttl)
    return newEpoch, 0, 0
  end
  -- Reading keeps the position alive (nodes with subscribers read it), never shortens it.
  if redis.call('PTTL', meta) < tonumber(ttl) then redis.call('PEXPIRE', meta, ttl) end
  return epoch, tonumber(redis.call('HGET', meta, 'o')), redis.call('LLEN', hist)
end
`;

/**
 * KEYS: 1 meta hash, 2 history list
 * ARGV: 1 epoch to create with, 2 meta TTL ms, 3 after offset (0 = from the oldest), 4 limit, 5 reverse (1/0)
 * Returns: { epoch, top offset, first retained offset, items... }
 */
export const READ = `${STREAM_POSITION}
local epoch, top, len = position(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
local first = top - len + 1
local limit = tonumber(ARGV[4])
local result = {epoch, top, first}
if limit <= 0 or len == 0 then return result end
local from = tonumber(ARGV[3]) + 1
if from < first then from = first end
local startIndex = from - first
if startIndex >= len then return result end
local endIndex = len - 1
if ARGV[5] == '1' then
  if len - limit > startIndex then startIndex = len - limit end
else
  if startIndex + limit - 1 < endIndex then endIndex = startIndex + limit - 1 end
end
local items = redis.call('LRANGE', KEYS[2], startIndex, endIndex)
for i = 1, #items do result[#result + 1] = items[i] end
return result
`;

/**
 * The positions of several streams at once (what READ with limit 0 answers, for each), creating
 * those that do not exist. Not for Redis Cluster (the keys span slots).
 * KEYS: meta hash and history list of each stream, in pairs. ARGV: 1 meta TTL ms, then the epoch
 * to create each stream with, in KEYS order.
 * Returns: { epoch, top offset, first retained offset } of each stream, flattened.
 */
export const POSITIONS = `${STREAM_POSITION}
local result = {}
for i = 1, #KEYS / 2 do
  local epoch, top, len = position(KEYS[2 * i - 1], KEYS[2 * i], ARGV[i + 1], ARGV[1])
  result[#result + 1] = epoch
  result[#result + 1] = top
  result[#result + 1] = top - len + 1
end
return result
`;

/** Presence: drop expired entries of one channel; returns the {user, entry} of users now gone. Shared by the scripts below. */
const PRESENCE_EXPIRE = `
local function nowms() local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local function expire(clients, expiries, users, now)
  local gone = {}
  local ids = redis.call('ZRANGEBYSCORE', expiries, '-inf', now)
  for i = 1, #ids do
    local entry = redis.call('HGET', clients, ids[i])
    redis.call('HDEL', clients, ids[i])
    redis.call('ZREM', expiries, ids[i])
    if entry then
      local user = cjson.decode(entry)['user']
      local left = redis.call('HINCRBY', users, user, -1)
      if left <= 0 then
        redis.call('HDEL', users, user)
        gone[#gone + 1] = entry
      end
    end
  end
  return gone
end
`;

/**
 * KEYS: 1 clients hash (client id -> entry JSON), 2 expiry zset, 3 users hash (user -> connections)
 * ARGV: 1 client id, 2 entry JSON, 3 user, 4 ttl ms. Time is Redis's own (TIME), the same for every node.
 * Returns: 1 when it is the user's first connection in the channel, else 0.
 *
 * Expired entries are NOT dropped here (nor by a plain list): only the sweep drops them, because
 * only the sweep reports the users who left with them (one `leave` each). An expired entry still
 * counts for its user until swept, so a user who comes back before the sweep gets neither a
 * leave nor a second join.
 */
export const PRESENCE_ADD = `
local function nowms() local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local now = nowms()
local existed = redis.call('HEXISTS', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[4]), ARGV[1])
local first = 0
if existed == 0 then
  if redis.call('HINCRBY', KEYS[3], ARGV[3], 1) == 1 then first = 1 end
end
-- The keys outlive their longest entry (never shortened by an entry with a shorter TTL).
local ttl = tonumber(ARGV[4]) * 2
for i = 1, 3 do
  if redis.call('PTTL', KEYS[i]) < ttl then redis.call('PEXPIRE', KEYS[i], ttl) end
end
return first
`;

/**
 * KEYS: as PRESENCE_ADD. ARGV: 1 client id.
 * Returns: { last (1/0), user } — last is 1 when it was the user's last connection.
 */
export const PRESENCE_REMOVE = `
local entry = redis.call('HGET', KEYS[1], ARGV[1])
if not entry then return {0, ''} end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
local user = cjson.decode(entry)['user']
local left = redis.call('HINCRBY', KEYS[3], user, -1)
if left <= 0 then
  redis.call('HDEL', KEYS[3], user)
  return {1, user}
end
return {0, user}
`;

/**
 * KEYS: as PRESENCE_ADD. ARGV: 1 '1' to sweep (drop expired entries and return the users gone with
 * them), '0' to only list. Returns: { gone entries..., '--', live (unexpired) entries... }
 */
export const PRESENCE_LIST = `${PRESENCE_EXPIRE}
local now = nowms()
local result = {}
if ARGV[1] == '1' then result = expire(KEYS[1], KEYS[2], KEYS[3], now) end
result[#result + 1] = '--'
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. now, '+inf')
for i = 1, #ids do
  local entry = redis.call('HGET', KEYS[1], ids[i])
  if entry then result[#result + 1] = entry end
end
return result
`;

/** Reserve a connection slot: the body shared by RESERVE and RESERVE_MANY. */
const RESERVE_ONE = `
local function nowms() local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local function reserve(key, id, max, ttl, now)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if redis.call('ZSCORE', key, id) == false and redis.call('ZCARD', key) >= max then return 0 end
  redis.call('ZADD', key, now + ttl, id)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
  return 1
end
`;

/**
 * Per-user connection cap. KEYS: 1 zset (client id -> expiry). ARGV: 1 client id, 2 max, 3 ttl ms.
 * Returns 1 when reserved, 0 when the user is at the cap.
 */
export const RESERVE = `${RESERVE_ONE}
return reserve(KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), nowms())
`;

/**
 * RESERVE for several connections at once, in order (two of the same user count against each
 * other). Not for Redis Cluster (the keys span slots).
 * KEYS: each connection's user zset. ARGV: client id, max, ttl ms of each, in KEYS order.
 * Returns: 1 (reserved) or 0 (at the cap) for each.
 */
export const RESERVE_MANY = `${RESERVE_ONE}
local now = nowms()
local result = {}
for i = 1, #KEYS do
  result[i] = reserve(KEYS[i], ARGV[3 * i - 2], tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i]), now)
end
return result
`;

/**
 * Token bucket. KEYS: 1 hash {tokens, ts}. ARGV: 1 rate per second, 2 burst, 3 cost.
 * Returns: { ok (1/0), retry after ms }
 */
export const TOKEN_BUCKET = `
local function nowms() local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local now = nowms()
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1])
local ts = tonumber(state[2])
if not tokens then tokens = burst; ts = now end
local elapsed = now - ts
if elapsed < 0 then elapsed = 0 end
tokens = math.min(burst, tokens + elapsed * rate / 1000)
local ok = 0
local retry = 0
if tokens >= cost then
  tokens = tokens - cost
  ok = 1
else
  retry = math.ceil((cost - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {ok, retry}
`;

/**
 * Refresh one live connection entry. KEYS: 1 the user's zset. ARGV: 1 ttl ms, 2 client id.
 * Re-adds an entry that is gone (expired during a Redis outage, or Redis lost it), so live
 * connections keep counting toward the cap.
 */
export const REFRESH = `
local function nowms() local t = redis.call('TIME') return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) end
redis.call('ZADD', KEYS[1], nowms() + tonumber(ARGV[1]), ARGV[2])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return 1
`;
