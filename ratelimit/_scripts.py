"""The Lua scripts: one atomic call per decision, on Redis server time, in integers.

Bucket state is a hash `{s: scaled tokens, t: time in µs}` (see `_bucket` for the scaling;
every value stays below 2^53, so Lua's doubles hold it exactly). Numbers are written with
`%d`: Lua's default formatting would round them to 14 digits.
"""

from __future__ import annotations

# KEYS: one bucket per limit.  ARGV[1]: "cost limit_1 window_us_1 limit_2 window_us_2 …" (one
# argument: every argument costs the client an encoding pass on the hot path).
# Returns "allowed retry_after_us remaining_1 reset_us_1 remaining_2 reset_us_2 …": one bulk
# string parses much faster in redis-py than an array of integers.
CHARGE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local a = {}
for n in string.gmatch(ARGV[1], '%d+') do a[#a + 1] = tonumber(n) end
local cost = a[1]
local levels = {}
local retry = 0
for i = 1, #KEYS do
  local limit = a[2 * i]
  local window = a[2 * i + 1]
  local full = limit * window
  local level = full
  local v = redis.call('HMGET', KEYS[i], 's', 't')
  if v[1] then
    local elapsed = now - tonumber(v[2])
    if elapsed < 0 then elapsed = 0 end
    if elapsed > window then elapsed = window end
    level = math.min(full, tonumber(v[1]) + elapsed * limit)
  end
  local missing = cost * window - level
  if missing > 0 then
    local wait = math.ceil(missing / limit)
    if wait > retry then retry = wait end
  end
  levels[i] = level
end
local out = {retry == 0 and '1' or '0', string.format('%d', retry)}
for i = 1, #KEYS do
  local limit = a[2 * i]
  local window = a[2 * i + 1]
  local level = levels[i]
  if retry == 0 then
    level = level - cost * window
    redis.call('HSET', KEYS[i], 's', string.format('%d', level), 't', string.format('%d', now))
  end
  local reset = math.ceil((limit * window - level) / limit)
  if retry == 0 then
    redis.call('PEXPIRE', KEYS[i], math.ceil(reset / 1000) + 1)
  end
  out[2 * i + 1] = string.format('%d', math.floor(level / window))
  out[2 * i + 2] = string.format('%d', reset)
end
return table.concat(out, ' ')
"""

# KEYS: the buckets to refund.  ARGV[1]: as for CHARGE.
REFUND = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local a = {}
for n in string.gmatch(ARGV[1], '%d+') do a[#a + 1] = tonumber(n) end
local cost = a[1]
for i = 1, #KEYS do
  local v = redis.call('HMGET', KEYS[i], 's', 't')
  if v[1] then
    local limit = a[2 * i]
    local window = a[2 * i + 1]
    local full = limit * window
    local elapsed = now - tonumber(v[2])
    if elapsed < 0 then elapsed = 0 end
    if elapsed > window then elapsed = window end
    local level = math.min(full, tonumber(v[1]) + elapsed * limit + cost * window)
    if level >= full then
      redis.call('DEL', KEYS[i])
    else
      redis.call('HSET', KEYS[i], 's', string.format('%d', level), 't', string.format('%d', now))
      redis.call('PEXPIRE', KEYS[i], math.ceil(math.ceil((full - level) / limit) / 1000) + 1)
    end
  end
end
return 1
"""

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
