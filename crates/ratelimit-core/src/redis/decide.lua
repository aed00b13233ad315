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
--
-- Every number written is formatted with %d: Lua would otherwise print
-- microsecond timestamps as 1.7e+15 and lose digits. Expiries are relative
-- (PEXPIRE) so that an explicit test time still gets a sensible TTL.

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local cost = tonumber(ARGV[2])
local charge = ARGV[3] == '1'

local function int(x)
  return string.format('%d', x)
end

local function expire_in(key, micros)
  local ms = math.ceil(micros / 1000)
  if ms < 1 then ms = 1 end
  redis.call('PEXPIRE', key, int(ms))
end

local out = {}
local writes = {}
local admitted = true

for i = 1, #KEYS do
  local base = 3 + (i - 1) * 4
  local alg = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local period = tonumber(ARGV[base + 3])
  local capacity = tonumber(ARGV[base + 4])
  local key = KEYS[i]
  local allowed, remaining, reset, retry, write

  if alg == 'fw' then
    local finish = now - (now % period) + period
    local state = redis.call('HMGET', key, 'w', 'c')
    local count = 0
    if tonumber(state[1]) == finish then count = tonumber(state[2]) end
    remaining = math.max(capacity - count, 0)
    reset = finish - now
    if cost > capacity then
      allowed, retry = false, -1
    elseif cost <= remaining then
      allowed, retry = true, -2
      remaining = remaining - cost
      write = function()
        redis.call('HSET', key, 'w', int(finish), 'c', int(count + cost))
        expire_in(key, finish - now)
      end
    else
      allowed, retry = false, reset
    end

  elseif alg == 'tb' then
    local interval = math.max(math.floor(period / limit), 1)
    local tolerance = interval * capacity
    local tat = tonumber(redis.call('GET', key)) or now
    if tat < now then tat = now end
    local used = tat - now
    remaining = math.max(math.floor((tolerance - used) / interval), 0)
    reset = used
    if cost > capacity then
      allowed, retry = false, -1
    else
      local next_tat = tat + cost * interval
      local next_used = next_tat - now
      if next_used <= tolerance then
        allowed, retry = true, -2
        remaining = math.floor((tolerance - next_used) / interval)
        reset = next_used
        write = function()
          redis.call('SET', key, int(next_tat), 'PX', int(math.max(math.ceil(next_used / 1000), 1)))
        end
      else
        allowed, retry = false, next_used - tolerance
      end
    end

  elseif alg == 'swc' then
    local start = now - (now % period)
    local finish = start + period
    local state = redis.call('HMGET', key, 'w', 'p', 'c')
    local w = tonumber(state[1])
    local previous, current = 0, 0
    if w == finish then
      previous, current = tonumber(state[2]), tonumber(state[3])
    elseif w == start then
      previous = tonumber(state[3])
    end
    local weight = finish - now
    -- Scaled by the period so the comparison needs no division.
    local used = previous * weight + current * period
    local budget = capacity * period
    remaining = math.max(math.floor((budget - used) / period), 0)
    local function reset_for(c)
      if c > 0 then return finish + period - now end
      if previous > 0 then return finish - now end
      return 0
    end
    reset = reset_for(current)
    if cost > capacity then
      allowed, retry = false, -1
    elseif used + cost * period <= budget then
      allowed, retry = true, -2
      remaining = math.max(math.floor((budget - used - cost * period) / period), 0)
      reset = reset_for(current + cost)
      write = function()
        redis.call('HSET', key, 'w', int(finish), 'p', int(previous), 'c', int(current + cost))
        expire_in(key, finish + period - now)
      end
    else
      allowed = false
      if current + cost <= capacity then
        local shrink = math.min(math.floor((capacity - current - cost) * period / previous), period)
        retry = start + (period - shrink) - now
      else
        local shrink = math.min(math.floor((capacity - cost) * period / current), period)
        retry = finish + (period - shrink) - now
      end
    end

  elseif alg == 'sw' then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - period))
    local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
    local total, last = 0, nil
    local costs, times = {}, {}
    for j = 1, #entries, 2 do
      local c = tonumber(string.match(entries[j], '^%d+:(%d+):'))
      local t = tonumber(entries[j + 1])
      costs[#costs + 1] = c
      times[#times + 1] = t
      total = total + c
      last = t
    end
    remaining = math.max(capacity - total, 0)
    reset = 0
    if last then reset = math.max(last + period - now, 0) end
    if cost > capacity then
      allowed, retry = false, -1
    elseif cost <= remaining then
      allowed, retry = true, -2
      remaining = remaining - cost
      if cost > 0 then
        local at = now
        if last and last > at then at = last end
        reset = at + period - now
        write = function()
          local seq = redis.call('ZCOUNT', key, int(at), int(at)) + 1
          redis.call('ZADD', key, int(at), int(at) .. ':' .. int(cost) .. ':' .. int(seq))
          expire_in(key, at + period - now)
        end
      end
    else
      allowed = false
      local to_free = cost - remaining
      retry = reset
      for j = 1, #times do
        retry = times[j] + period - now
        if costs[j] >= to_free then break end
        to_free = to_free - costs[j]
      end
    end

  else
    return redis.error_reply('unknown algorithm ' .. tostring(alg))
  end

  if not allowed then admitted = false end
  writes[i] = write
  out[#out + 1] = allowed and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = retry
end

if admitted and charge then
  for i = 1, #KEYS do
    if writes[i] then writes[i]() end
  end
end
return out
