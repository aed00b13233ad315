-- One rate-limit decision over one or more limits, all-or-nothing.
--
-- KEYS[i]  the state key of limit i (all share one hash tag)
-- ARGV[1]  the time in microseconds since the epoch, or "" for the server's TIME
-- ARGV[2]  cost in units
-- ARGV[3]  "1" to charge an admitted request, "0" to only look
-- then four values per limit: algorithm (fw, sw, swc, tb), limit, period in
-- microseconds, capacity
--
-- Returns four integers per limit: allowed (1 or 0), remaining units,
-- microseconds until full capacity, and microseconds until this request
-- would pass (-1: never, it exceeds the capacity; -2: it is not denied).
-- When another limit denies the request, a limit that would admit it
-- reports its remaining units and reset as they stand: nothing is charged.
--
-- Every number written is formatted with %d: Lua would otherwise print
-- microsecond timestamps as 1.7e+15 and lose digits. The script keeps to
-- plain locals and arrays (no closures or per-limit tables): on the
-- request path every microsecond of Lua is a microsecond of Redis.

local now
-- With an explicit (test) time, the schedule's clock and the server's clock
-- that expires keys run apart; a minute of slack keeps state alive for the
-- whole of a test step. With the server's time, TTLs are exact.
local slack = 0
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
  slack = 60000000
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local cost = tonumber(ARGV[2])
local charge = ARGV[3] == '1'
local fmt = string.format
local floor, ceil, max, min = math.floor, math.ceil, math.max, math.min

-- Per limit: the decision, the state as it stands, and the pending write
-- (a string state, or the time of a sliding-log entry and the units the
-- log held before it).
local n = #KEYS
local allowed, remaining, reset, retry = {}, {}, {}, {}
local remaining0, reset0 = {}, {}
local value, ttl, log_at, log_units = {}, {}, {}, {}
local admitted = true

for i = 1, n do
  local base = 3 + (i - 1) * 4
  local alg = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local period = tonumber(ARGV[base + 3])
  local capacity = tonumber(ARGV[base + 4])
  local key = KEYS[i]
  local ok, left, until_full, wait, after_left, after_full

  if alg == 'fw' then
    -- State: "window_end:count".
    local finish = now - (now % period) + period
    local count = 0
    local state = redis.call('GET', key)
    if state then
      local w, c = string.match(state, '^(%d+):(%d+)$')
      if tonumber(w) == finish then count = tonumber(c) end
    end
    left = max(capacity - count, 0)
    until_full = finish - now
    after_left, after_full = left - cost, until_full
    if cost > capacity then
      ok, wait = false, -1
    elseif cost <= left then
      ok, wait = true, -2
      value[i] = fmt('%d:%d', finish, count + cost)
      ttl[i] = finish - now
    else
      ok, wait = false, until_full
    end

  elseif alg == 'tb' then
    -- State: the theoretical arrival time (when the bucket is full again).
    local interval = max(floor(period / limit), 1)
    local tolerance = interval * capacity
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    local used = tat - now
    left = max(floor((tolerance - used) / interval), 0)
    until_full = used
    if cost > capacity then
      ok, wait = false, -1
    else
      local next_used = used + cost * interval
      if next_used <= tolerance then
        ok, wait = true, -2
        after_left, after_full = floor((tolerance - next_used) / interval), next_used
        value[i] = fmt('%d', tat + cost * interval)
        ttl[i] = next_used
      else
        ok, wait = false, next_used - tolerance
      end
    end

  elseif alg == 'swc' then
    -- State: "window_end:previous:current".
    local start = now - (now % period)
    local finish = start + period
    local previous, current = 0, 0
    local state = redis.call('GET', key)
    if state then
      local w, p, c = string.match(state, '^(%d+):(%d+):(%d+)$')
      w = tonumber(w)
      if w == finish then
        previous, current = tonumber(p), tonumber(c)
      elseif w == start then
        previous = tonumber(c)
      end
    end
    -- Scaled by the period so the comparison needs no division.
    local used = previous * (finish - now) + current * period
    local budget = capacity * period
    left = max(floor((budget - used) / period), 0)
    if current > 0 then until_full = finish + period - now
    elseif previous > 0 then until_full = finish - now
    else until_full = 0 end
    if cost > capacity then
      ok, wait = false, -1
    elseif used + cost * period <= budget then
      ok, wait = true, -2
      after_left = max(floor((budget - used - cost * period) / period), 0)
      if current + cost > 0 then after_full = finish + period - now else after_full = until_full end
      value[i] = fmt('%d:%d:%d', finish, previous, current + cost)
      ttl[i] = finish + period - now
    else
      ok = false
      if current + cost <= capacity then
        local shrink = min(floor((capacity - current - cost) * period / previous), period)
        wait = start + (period - shrink) - now
      else
        local shrink = min(floor((capacity - cost) * period / current), period)
        wait = finish + (period - shrink) - now
      end
    end

  elseif alg == 'sw' then
    -- One sorted-set member per admitted request, whatever its cost, scored
    -- by its time: "units:cost", where units counts every unit logged up to
    -- and including this request (zero-padded, so requests logged in the
    -- same microsecond sort in order). The window's total is the newest
    -- count less the count before the oldest entry: two lookups, and one
    -- write per request, however many units it takes.
    redis.call('ZREMRANGEBYSCORE', key, '-inf', fmt('%d', now - period))
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    local total, last, before, first = 0, nil, 0, 0
    log_units[i] = 0
    if newest[1] then
      last = tonumber(newest[2])
      log_units[i] = tonumber(string.match(newest[1], '^(%d+)'))
      local units, c = string.match(redis.call('ZRANGE', key, 0, 0)[1], '^(%d+):(%d+)$')
      first = tonumber(units)
      before = first - tonumber(c)
      total = log_units[i] - before
    end
    left = max(capacity - total, 0)
    until_full = 0
    if last then until_full = max(last + period - now, 0) end
    if cost > capacity then
      ok, wait = false, -1
    elseif cost <= left then
      ok, wait = true, -2
      after_left, after_full = left - cost, until_full
      if cost > 0 then
        local at = now
        if last and last > at then at = last end
        after_full = at + period - now
        log_at[i] = at
        ttl[i] = at + period - now
      end
    else
      ok = false
      -- The request fits once the oldest entries holding (cost - left)
      -- units have left: the first entry whose count reaches that many,
      -- found by bisection over ranks (often the oldest, checked first).
      local target = before + cost - left
      local lo, hi = 0, 0
      if first < target then lo, hi = 1, redis.call('ZCARD', key) - 1 end
      while lo < hi do
        local mid = floor((lo + hi) / 2)
        local units = tonumber(string.match(redis.call('ZRANGE', key, mid, mid)[1], '^(%d+)'))
        if units >= target then hi = mid else lo = mid + 1 end
      end
      local freeing = redis.call('ZRANGE', key, lo, lo, 'WITHSCORES')
      wait = tonumber(freeing[2]) + period - now
    end

  else
    return redis.error_reply('unknown algorithm ' .. tostring(alg))
  end

  if not ok then admitted = false end
  allowed[i], retry[i] = ok, wait
  remaining0[i], reset0[i] = left, until_full
  if ok then
    remaining[i], reset[i] = after_left, after_full
  else
    remaining[i], reset[i] = left, until_full
  end
end

local out = {}
for i = 1, n do
  out[#out + 1] = allowed[i] and 1 or 0
  if allowed[i] and not admitted then
    out[#out + 1] = remaining0[i]
    out[#out + 1] = reset0[i]
  else
    out[#out + 1] = remaining[i]
    out[#out + 1] = reset[i]
  end
  out[#out + 1] = retry[i]
end

if admitted and charge and cost > 0 then
  for i = 1, n do
    local key = KEYS[i]
    -- A key lives exactly as long as its state matters, in whole milliseconds.
    local ms = ttl[i] and fmt('%d', max(ceil((ttl[i] + slack) / 1000), 1))
    if value[i] then
      redis.call('SET', key, value[i], 'PX', ms)
    elseif log_at[i] then
      redis.call('ZADD', key, fmt('%d', log_at[i]), fmt('%020d:%d', log_units[i] + cost, cost))
      redis.call('PEXPIRE', key, ms)
    end
  end
end
return out
