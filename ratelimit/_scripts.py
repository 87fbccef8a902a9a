"""The Lua scripts: atomic, on Redis server time, in integers.

A bucket is a plain string key holding two numbers, its scaled tokens and the time in µs
they were counted at (see `_bucket` for the scaling), written with one `SET … PX`: a hash
needed HSET and PEXPIRE, and every `redis.call` is a large part of a script this small.
The two numbers are packed as two doubles (`struct.pack('dd', …)`, 16 bytes): every value
stays below 2^53, so a double holds it exactly, and one pack and one unpack cost the server
less than formatting and parsing text.

One run of the charge script decides one request, or several in order: on one Redis, the
requests of one event-loop tick share a run (see `RedisBackend.charge`), each still
all-or-none.

The charge and refund scripts are generated per tuple of buckets, with the limits and
windows as constants in the source: parsing them from an argument on every call cost the
server as much as one more `redis.call`, and the client an argument to encode. A limiter
has one tuple per route, so Redis holds a handful of these scripts (a `RedisBackend` used
directly with ever-changing limits would load one per distinct tuple).
"""

from __future__ import annotations

from collections.abc import Sequence

from ._backend import Bucket

# Shared head of the generated scripts: the limits and windows of one tuple of buckets, and
# Redis server time. A missing bucket is full.
_HEAD = """
local limits = {%(limits)s}
local windows = {%(windows)s}
local n = #limits
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
-- Scaled tokens in bucket i (stored at `key`) now, and whether it is stored. A value that
-- is not two packed doubles (written by something else) counts as a full bucket: one
-- stray key must not fail the run, which may decide other callers' requests too.
local function level_of(key, i)
  local full = limits[i] * windows[i]
  local v = redis.call('GET', key)
  if not v or #v ~= 16 then return full, false end
  local stored, at = struct.unpack('dd', v)
  local elapsed = now - at
  if elapsed < 0 then elapsed = 0 elseif elapsed > windows[i] then elapsed = windows[i] end
  local level = stored + elapsed * limits[i]
  if level > full then level = full end
  return level, true
end
-- Microseconds until bucket i at `level` is full again.
local function reset_of(i, level)
  return math.ceil((limits[i] * windows[i] - level) / limits[i])
end
-- The key lives until the bucket is full again (a missing key means exactly that), and at
-- least a second: a key read after it is full reads as full, so it changes no decision, but
-- a fast bucket would otherwise be deleted and made again on nearly every request.
local function store(key, level, reset)
  local ttl = math.max(math.ceil(reset / 1000) + 1, 1000)
  redis.call('SET', key, struct.pack('dd', level, now), 'PX', ttl)
end
"""

# Decides one or more requests, in order: KEYS holds `n` bucket keys per request (in the
# order of the constants), ARGV the cost of each request (absent: every cost is 1, the
# common case, so nothing is sent). Each request takes its cost from every one of its
# buckets, or from none when any lacks it (a refusal charges nothing). Returns integers,
# for each request {retry_after_us, remaining_1, reset_us_1, remaining_2, …}: hiredis
# (redis-py's parser) turns them into Python ints with no parsing left to do on the client.
_CHARGE = _HEAD + """
local out = {}
local o = 0
for r = 0, #KEYS / n - 1 do
  local cost = tonumber(ARGV[r + 1] or 1)
  local base = r * n
  local levels = {}
  local retry = 0
  for i = 1, n do
    local level = level_of(KEYS[base + i], i)
    local missing = cost * windows[i] - level
    if missing > 0 then
      local wait = math.ceil(missing / limits[i])
      if wait > retry then retry = wait end
    end
    levels[i] = level
  end
  out[o + 1] = retry
  for i = 1, n do
    local level = levels[i]
    if retry == 0 then level = level - cost * windows[i] end
    local reset = reset_of(i, level)
    if retry == 0 then store(KEYS[base + i], level, reset) end
    out[o + 2 * i] = math.floor(level / windows[i])
    out[o + 2 * i + 1] = reset
  end
  o = o + 2 * n + 1
end
return out
"""

# Gives `cost` (ARGV[1], absent: 1) back to every stored bucket of one caller (KEYS, in the
# order of the constants), never above full (a full bucket is deleted).
_REFUND = _HEAD + """
local cost = tonumber(ARGV[1] or 1)
for i = 1, n do
  local level, stored = level_of(KEYS[i], i)
  if stored then
    level = math.min(limits[i] * windows[i], level + cost * windows[i])
    local reset = reset_of(i, level)
    if reset == 0 then redis.call('DEL', KEYS[i]) else store(KEYS[i], level, reset) end
  end
end
return 1
"""


# One request, unrolled: the same arithmetic as `_CHARGE` for r = 0, with every limit and
# window a literal and no tables, closures or loops to build on each run. A lone request is
# the common case, and this saves the server about a quarter of the script's time.
# KEYS: the request's bucket keys; ARGV[1]: its cost (absent: 1).
_ONE_HEAD = """
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local cost = tonumber(ARGV[1] or 1)
local retry = 0
"""

_ONE_READ = """
local level{i} = {full}
do
  local v = redis.call('GET', KEYS[{i}])
  if v and #v == 16 then
    local stored, at = struct.unpack('dd', v)
    local elapsed = now - at
    if elapsed < 0 then elapsed = 0 elseif elapsed > {window} then elapsed = {window} end
    level{i} = stored + elapsed * {limit}
    if level{i} > {full} then level{i} = {full} end
  end
  local missing = cost * {window} - level{i}
  if missing > 0 then
    local wait = math.ceil(missing / {limit})
    if wait > retry then retry = wait end
  end
end
"""

_ONE_WRITE = """
level{i} = level{i} - cost * {window}
local reset{i} = math.ceil(({full} - level{i}) / {limit})
redis.call('SET', KEYS[{i}], struct.pack('dd', level{i}, now), 'PX',
  math.max(math.ceil(reset{i} / 1000) + 1, 1000))
"""


def charge_one_script(buckets: Sequence[Bucket]) -> str:
    """The charge script of `buckets` for one request, unrolled (KEYS in the same order)."""
    values = [
        {"i": i, "limit": b.limit, "window": b.window_us, "full": b.limit * b.window_us}
        for i, b in enumerate(buckets, 1)
    ]
    refused = ", ".join(
        "math.floor(level{i} / {window}), math.ceil(({full} - level{i}) / {limit})".format(**v)
        for v in values
    )
    admitted = ", ".join("math.floor(level{i} / {window}), reset{i}".format(**v) for v in values)
    return "".join(
        [
            _ONE_HEAD,
            *(_ONE_READ.format(**v) for v in values),
            f"if retry > 0 then return {{retry, {refused}}} end\n",
            *(_ONE_WRITE.format(**v) for v in values),
            f"return {{0, {admitted}}}\n",
        ]
    )


def _constants(buckets: Sequence[Bucket]) -> dict[str, str]:
    return {
        "limits": ", ".join(str(b.limit) for b in buckets),
        "windows": ", ".join(str(b.window_us) for b in buckets),
    }


def charge_script(buckets: Sequence[Bucket]) -> str:
    """The charge script of `buckets` for any number of requests (KEYS in the same order,
    one run of them per request)."""
    return _CHARGE % _constants(buckets)


def refund_script(buckets: Sequence[Bucket]) -> str:
    """The refund script of `buckets` (KEYS in the same order)."""
    return _REFUND % _constants(buckets)


# KEYS[1]: the route's slot set (member = slot token, score = expiry in µs).
# ARGV: capacity, token, ttl_us.  Holds or renews the token; returns 1, or 0 when full.
HOLD_SLOT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then
  if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('ZADD', KEYS[1], string.format('%d', now + tonumber(ARGV[3])), ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil((tonumber(last[2]) - now) / 1000) + 1)
return 1
"""

# A trivial script: the floor of one EVALSHA round trip, for the benchmark.
NOOP = "return 1"

# Several holds in one run, in order: KEYS[i] is request i's slot set, ARGV holds
# (capacity, token, ttl_us) per request. The same set may come more than once (one caller's
# many streams): each request sees the ones before it. Returns 1 or 0 per request.
HOLD_SLOTS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local swept = {}
local out = {}
for i = 1, #KEYS do
  local key, token = KEYS[i], ARGV[3 * i - 1]
  if not swept[key] then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now))
    swept[key] = true
  end
  out[i] = 1
  if not redis.call('ZSCORE', key, token) then
    if redis.call('ZCARD', key) >= tonumber(ARGV[3 * i - 2]) then out[i] = 0 end
  end
  if out[i] == 1 then
    redis.call('ZADD', key, string.format('%d', now + tonumber(ARGV[3 * i])), token)
    local last = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    redis.call('PEXPIRE', key, math.ceil((tonumber(last[2]) - now) / 1000) + 1)
  end
end
return out
"""

# Several releases in one run: KEYS[i] is a slot set, ARGV[i] the token to remove from it.
RELEASE_SLOTS = """
for i = 1, #KEYS do
  redis.call('ZREM', KEYS[i], ARGV[i])
end
return #KEYS
"""
