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
-- With an explicit (test) time, the schedule's clock and the server's clock
-- that expires keys run apart; a minute of slack keeps state alive for the
-- whole of a test step. With the server's time, TTLs are exact.
local ttl_slack = 0
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
  ttl_slack = 60000000
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local cost = tonumber(ARGV[2])
local charge = ARGV[3] == '1'

local function int(x)
  return string.format('%d', x)
end

-- A key lives exactly as long as its state matters, in whole milliseconds.
local function ttl_ms(micros)
  local ms = math.ceil((micros + ttl_slack) / 1000)
  if ms < 1 then ms = 1 end
  return int(ms)
end

local out = {}
local writes = {}
local results = {}
local admitted = true

for i = 1, #KEYS do
  local base = 3 + (i - 1) * 4
  local alg = ARGV[base + 1]
  local limit = tonumber(ARGV[base + 2])
  local period = tonumber(ARGV[base + 3])
  local capacity = tonumber(ARGV[base + 4])
  local key = KEYS[i]
  -- `before` holds remaining and reset as they are, for reporting a limit
  -- that would admit the request when another limit denies it.
  local allowed, remaining, reset, retry, write, before

  if alg == 'fw' then
    -- State: "window_end:count".
    local finish = now - (now % period) + period
    local count = 0
    local state = redis.call('GET', key)
    if state then
      local w, c = string.match(state, '^(%d+):(%d+)$')
      if tonumber(w) == finish then count = tonumber(c) end
    end
    remaining = math.max(capacity - count, 0)
    reset = finish - now
    before = {remaining, reset}
    if cost > capacity then
      allowed, retry = false, -1
    elseif cost <= remaining then
      allowed, retry = true, -2
      remaining = remaining - cost
      write = function()
        redis.call('SET', key, int(finish) .. ':' .. int(count + cost), 'PX', ttl_ms(finish - now))
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
    before = {remaining, reset}
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
          redis.call('SET', key, int(next_tat), 'PX', ttl_ms(next_used))
        end
      else
        allowed, retry = false, next_used - tolerance
      end
    end

  elseif alg == 'swc' then
    local start = now - (now % period)
    local finish = start + period
    -- State: "window_end:previous:current".
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
    before = {remaining, reset}
    if cost > capacity then
      allowed, retry = false, -1
    elseif used + cost * period <= budget then
      allowed, retry = true, -2
      remaining = math.max(math.floor((budget - used - cost * period) / period), 0)
      reset = reset_for(current + cost)
      write = function()
        local value = int(finish) .. ':' .. int(previous) .. ':' .. int(current + cost)
        redis.call('SET', key, value, 'PX', ttl_ms(finish + period - now))
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
    -- One sorted-set member per admitted unit, scored by its time, so the
    -- window's total is ZCARD and the k-th oldest unit one ZRANGE away.
    redis.call('ZREMRANGEBYSCORE', key, '-inf', int(now - period))
    local total = redis.call('ZCARD', key)
    local last = nil
    if total > 0 then
      last = tonumber(redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')[2])
    end
    remaining = math.max(capacity - total, 0)
    reset = 0
    if last then reset = math.max(last + period - now, 0) end
    before = {remaining, reset}
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
          local score = int(at)
          local seq = redis.call('ZCOUNT', key, score, score)
          local batch = {}
          for j = 1, cost do
            batch[#batch + 1] = score
            batch[#batch + 1] = score .. ':' .. int(seq + j)
            if #batch >= 1000 or j == cost then
              redis.call('ZADD', key, unpack(batch))
              batch = {}
            end
          end
          redis.call('PEXPIRE', key, ttl_ms(at + period - now))
        end
      end
    else
      allowed = false
      -- The request fits once the (cost - remaining) oldest units have left.
      local freeing = redis.call('ZRANGE', key, cost - remaining - 1, cost - remaining - 1, 'WITHSCORES')
      retry = tonumber(freeing[2]) + period - now
    end

  else
    return redis.error_reply('unknown algorithm ' .. tostring(alg))
  end

  if not allowed then admitted = false end
  writes[i] = write
  results[i] = {allowed, remaining, reset, retry, before}
end

for i = 1, #KEYS do
  local r = results[i]
  local remaining, reset = r[2], r[3]
  if r[1] and not admitted then
    -- Nothing is charged: report this limit as it stands.
    remaining, reset = r[5][1], r[5][2]
  end
  out[#out + 1] = r[1] and 1 or 0
  out[#out + 1] = remaining
  out[#out + 1] = reset
  out[#out + 1] = r[4]
end

if admitted and charge then
  for i = 1, #KEYS do
    if writes[i] then writes[i]() end
  end
end
return out
