#!lua name=dropline
--[[
Dropline's reservation step: the only code that changes a drop's stock, holds, per-buyer counts,
waitlist and decisions. Loaded with FUNCTION LOAD REPLACE; each call is atomic.

Every key of one drop shares the hash tag {drop:<id>}, so a call touches one Redis Cluster slot.
KEYS (in this order, all `dl:{drop:<id>}:<name>`):
  1 meta       hash  state (open|closed), limit, hold_ms, waitlist (0|1), cap, catalog, version, wl_seq
  2 stock      hash  sku -> units for sale now
  3 held       hash  sku -> units reserved, waiting for payment
  4 sold       hash  sku -> units confirmed
  5 total      hash  sku -> units ever put on sale (opening stock + restocks)
  6 buyers     hash  buyer -> units held + sold + waitlisted (the per-buyer limit counts these)
  7 decisions  hash  order_id -> first decision; h SEP order_id -> hold lifecycle; t SEP trigger_id ->
                     trigger applied (ids never contain control characters, so these cannot collide)
  8 holds      hash  order_id -> sku SEP qty SEP buyer   (active holds)
  9 expiry     zset  order_id scored by hold expiry (ms)
 10 offsets    hash  <topic-letter><partition> -> last consumed Kafka offset applied here
 11 waitlist   zset  all score 0, member sku SEP seq(12 digits) SEP order_id: lex order = FIFO per SKU
 12 waiting    hash  sku -> waitlisted orders
 13 wlinfo     hash  order_id -> sku SEP qty SEP buyer SEP member
 14 outbox     list  outcomes not caused by a Kafka message (expiry, promotion, close), until published
 15 stats      hash  status name -> decisions made

Statuses are dropline.v1.ReservationStatus numbers.
]]

local SEP = '\31'
local RESERVED, SOLD_OUT, LIMIT_EXCEEDED, DUPLICATE, DROP_NOT_OPEN, UNKNOWN_SKU, INVALID, WAITLISTED, CONFIRMED, RELEASED, EXPIRED =
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
local NAMES = { 'RESERVED', 'SOLD_OUT', 'LIMIT_EXCEEDED', 'DUPLICATE', 'DROP_NOT_OPEN', 'UNKNOWN_SKU',
  'INVALID', 'WAITLISTED', 'CONFIRMED', 'RELEASED', 'EXPIRED' }
local UNSEEN_DROP_TTL = 86400
local CLOSED_DROP_TTL = 7 * 86400

local function split(s)
  local out, start = {}, 1
  while true do
    local i = string.find(s, SEP, start, true)
    if not i then
      out[#out + 1] = string.sub(s, start)
      return out
    end
    out[#out + 1] = string.sub(s, start, i - 1)
    start = i + 1
  end
end

local function join(...)
  return table.concat({ ... }, SEP)
end

local function keyset(keys)
  return {
    meta = keys[1], stock = keys[2], held = keys[3], sold = keys[4], total = keys[5], buyers = keys[6],
    decisions = keys[7], holds = keys[8], expiry = keys[9], offsets = keys[10], waitlist = keys[11],
    waiting = keys[12], wlinfo = keys[13], outbox = keys[14], stats = keys[15],
  }
end

local function load_state(K)
  local m = redis.call('HMGET', K.meta, 'state', 'limit', 'hold_ms', 'waitlist', 'cap', 'version')
  return {
    state = m[1] or 'none',
    limit = tonumber(m[2]) or 0,
    hold_ms = tonumber(m[3]) or 0,
    waitlist = m[4] == '1',
    cap = tonumber(m[5]) or 0,
    version = tonumber(m[6]) or 0,
  }
end

local function stock_of(K, sku)
  return tonumber(redis.call('HGET', K.stock, sku)) or 0
end

-- Holds `qty` of `sku` for order `id` until now + hold window. Returns remaining stock, expiry.
local function reserve(K, st, now, id, buyer, sku, qty)
  local remaining = redis.call('HINCRBY', K.stock, sku, -qty)
  redis.call('HINCRBY', K.held, sku, qty)
  local expires = now + st.hold_ms
  redis.call('HSET', K.holds, id, join(sku, qty, buyer))
  redis.call('ZADD', K.expiry, expires, id)
  return remaining, expires
end

local function emit(K, id, buyer, sku, qty, status, remaining, expires, now, reason)
  redis.call('RPUSH', K.outbox, join(id, buyer, sku, qty, status, remaining, expires, now, reason))
  redis.call('HINCRBY', K.stats, NAMES[status], 1)
end

-- Returned stock goes to the oldest waitlisted order of the SKU first (strict FIFO: an order
-- that wants more than is back waits, and so do the ones behind it).
local function promote(K, st, now, sku)
  while true do
    local avail = stock_of(K, sku)
    if avail <= 0 then return end
    local first = redis.call('ZRANGEBYLEX', K.waitlist, '[' .. sku .. SEP, '[' .. sku .. SEP .. '\255', 'LIMIT', 0, 1)
    if #first == 0 then return end
    local member = first[1]
    local id = string.sub(member, #sku + 15)
    local info = split(redis.call('HGET', K.wlinfo, id))
    local qty, buyer = tonumber(info[2]), info[3]
    if qty > avail then return end
    redis.call('ZREM', K.waitlist, member)
    redis.call('HDEL', K.wlinfo, id)
    redis.call('HINCRBY', K.waiting, sku, -1)
    local remaining, expires = reserve(K, st, now, id, buyer, sku, qty)
    emit(K, id, buyer, sku, qty, RESERVED, remaining, expires, now, 'promoted from the waitlist')
  end
end

-- Ends an active hold and returns its units to stock. Returns sku, qty, buyer, remaining or nil.
local function release_hold(K, id)
  local h = redis.call('HGET', K.holds, id)
  if not h then return nil end
  local f = split(h)
  local sku, qty, buyer = f[1], tonumber(f[2]), f[3]
  redis.call('HDEL', K.holds, id)
  redis.call('ZREM', K.expiry, id)
  redis.call('HINCRBY', K.held, sku, -qty)
  local remaining = redis.call('HINCRBY', K.stock, sku, qty)
  redis.call('HINCRBY', K.buyers, buyer, -qty)
  return sku, qty, buyer, remaining
end

-- Takes an order off the waitlist. Returns sku, qty, buyer or nil.
local function leave_waitlist(K, id)
  local w = redis.call('HGET', K.wlinfo, id)
  if not w then return nil end
  local f = split(w)
  -- The member (sku SEP seq SEP order_id) contains SEP itself: it is everything from field 4 on.
  local sku, qty, buyer, member = f[1], tonumber(f[2]), f[3], table.concat(f, SEP, 4)
  redis.call('ZREM', K.waitlist, member)
  redis.call('HDEL', K.wlinfo, id)
  redis.call('HINCRBY', K.waiting, sku, -1)
  redis.call('HINCRBY', K.buyers, buyer, -qty)
  return sku, qty, buyer
end

local function result(status, sku, qty, remaining, expires, now, reason)
  return { status, sku, qty, remaining, expires, now, reason }
end

local function decide_order(K, st, now, src, off, id, buyer, sku, qty, pre, why)
  local prev = redis.call('HGET', K.decisions, id)
  if prev then
    local d = split(prev)
    return result(DUPLICATE, d[2], tonumber(d[3]), stock_of(K, d[2]), 0, now,
      'order ' .. id .. ' was already decided: ' .. NAMES[tonumber(d[1])])
  end
  local status, remaining, expires, reason = 0, 0, 0, ''
  if st.state ~= 'open' then
    status = DROP_NOT_OPEN
    reason = st.state == 'closed' and 'the drop is closed' or 'the drop is not open'
  elseif pre ~= 0 then
    status, reason = pre, why
  elseif not redis.call('HGET', K.stock, sku) then
    status, reason = UNKNOWN_SKU, 'no SKU ' .. sku .. ' in this drop'
  else
    local avail = stock_of(K, sku)
    local have = tonumber(redis.call('HGET', K.buyers, buyer)) or 0
    remaining = avail
    if st.limit > 0 and have + qty > st.limit then
      status = LIMIT_EXCEEDED
      reason = 'the limit is ' .. st.limit .. ' per buyer and you already have ' .. have
    elseif avail >= qty then
      status = RESERVED
      redis.call('HINCRBY', K.buyers, buyer, qty)
      remaining, expires = reserve(K, st, now, id, buyer, sku, qty)
    else
      local waiting = tonumber(redis.call('HGET', K.waiting, sku)) or 0
      if st.waitlist and (st.cap == 0 or waiting < st.cap) then
        status = WAITLISTED
        local seq = redis.call('HINCRBY', K.meta, 'wl_seq', 1)
        local member = sku .. SEP .. string.format('%012d', seq) .. SEP .. id
        redis.call('ZADD', K.waitlist, 0, member)
        redis.call('HSET', K.wlinfo, id, join(sku, qty, buyer, member))
        redis.call('HINCRBY', K.waiting, sku, 1)
        redis.call('HINCRBY', K.buyers, buyer, qty)
        reason = 'sold out; you are number ' .. (waiting + 1) .. ' on the waitlist'
      else
        status = SOLD_OUT
        if avail > 0 then reason = 'only ' .. avail .. ' left' end
      end
    end
  end
  redis.call('HSET', K.decisions, id, join(status, sku, qty, remaining, expires, now, src, off, reason))
  redis.call('HINCRBY', K.stats, NAMES[status], 1)
  return result(status, sku, qty, remaining, expires, now, reason)
end

-- A Kafka message applied before (offset at or below the recorded one) changes nothing and
-- answers what it answered the first time.
local function replay_order(K, now, src, off, id)
  local prev = redis.call('HGET', K.decisions, id)
  if not prev then
    return result(DUPLICATE, '', 0, 0, 0, now, 'replayed order; its decision is no longer stored')
  end
  local d = split(prev)
  if d[7] == src and d[8] == tostring(off) then
    return result(tonumber(d[1]), d[2], tonumber(d[3]), tonumber(d[4]), tonumber(d[5]), tonumber(d[6]), d[9])
  end
  return result(DUPLICATE, d[2], tonumber(d[3]), stock_of(K, d[2]), 0, now,
    'order ' .. id .. ' was already decided: ' .. NAMES[tonumber(d[1])])
end

-- A hold action that changed nothing still gets its answer recorded, by Kafka position, so a
-- redelivery repeats it (decisions field a SEP src SEP offset).
local function answer(K, src, off, r)
  redis.call('HSET', K.decisions, 'a' .. SEP .. src .. SEP .. off, join(r[1], r[2], r[3], r[4], r[6], r[7]))
  return r
end

local function hold_action(K, st, now, src, off, id, confirm)
  local status, sku, qty, remaining, reason = 0, '', 0, 0, ''
  local h = redis.call('HGET', K.holds, id)
  if h then
    local f = split(h)
    sku, qty = f[1], tonumber(f[2])
    if confirm then
      redis.call('HDEL', K.holds, id)
      redis.call('ZREM', K.expiry, id)
      redis.call('HINCRBY', K.held, sku, -qty)
      redis.call('HINCRBY', K.sold, sku, qty)
      status, remaining = CONFIRMED, stock_of(K, sku)
    else
      local _
      _, _, _, remaining = release_hold(K, id)
      status, reason = RELEASED, 'cancelled at checkout'
    end
  elseif redis.call('HGET', K.wlinfo, id) then
    if confirm then
      local f = split(redis.call('HGET', K.wlinfo, id))
      return answer(K, src, off, result(INVALID, f[1], tonumber(f[2]), stock_of(K, f[1]), 0, now,
        'order ' .. id .. ' is waitlisted; there is no hold to confirm yet'))
    end
    sku, qty = leave_waitlist(K, id)
    status, remaining, reason = RELEASED, stock_of(K, sku), 'left the waitlist'
  else
    local done = redis.call('HGET', K.decisions, 'h' .. SEP .. id)
    if done then
      local f = split(done)
      local was = tonumber(f[1])
      if was == EXPIRED and confirm then
        return answer(K, src, off, result(EXPIRED, f[5], tonumber(f[6]), stock_of(K, f[5]), 0, now,
          'the hold had already expired when payment was confirmed'))
      end
      return answer(K, src, off, result(DUPLICATE, f[5], tonumber(f[6]), stock_of(K, f[5]), 0, now,
        'the hold of order ' .. id .. ' was already ' .. NAMES[was]))
    end
    return answer(K, src, off, result(INVALID, '', 0, 0, 0, now, 'order ' .. id .. ' has no hold in this drop'))
  end
  redis.call('HSET', K.decisions, 'h' .. SEP .. id, join(status, src, off, reason, sku, qty, remaining, now))
  redis.call('HINCRBY', K.stats, NAMES[status], 1)
  if status == RELEASED then promote(K, st, now, sku) end
  return result(status, sku, qty, remaining, 0, now, reason)
end

local function replay_hold_action(K, now, src, off, id)
  local done = redis.call('HGET', K.decisions, 'h' .. SEP .. id)
  if done then
    local f = split(done)
    if f[2] == src and f[3] == tostring(off) then
      return result(tonumber(f[1]), f[5], tonumber(f[6]), tonumber(f[7]), 0, tonumber(f[8]) or now, f[4])
    end
  end
  local a = redis.call('HGET', K.decisions, 'a' .. SEP .. src .. SEP .. off)
  if a then
    local f = split(a)
    return result(tonumber(f[1]), f[2], tonumber(f[3]), tonumber(f[4]), 0, tonumber(f[5]), f[6])
  end
  return result(DUPLICATE, '', 0, 0, 0, now, 'replayed hold action for order ' .. id)
end

-- Triggers answer 0 when applied, DUPLICATE when seen before, INVALID when refused.
local function open_drop(K, st, now, id, skus, settings, catalog)
  if st.state == 'open' then return result(DUPLICATE, '', 0, 0, 0, now, 'the drop is already open') end
  local s = split(settings)
  redis.call('HSET', K.meta, 'state', 'open', 'limit', s[1], 'hold_ms', s[2], 'waitlist', s[3], 'cap', s[4],
    'catalog', catalog, 'opened_at', now)
  redis.call('HINCRBY', K.meta, 'version', 1)
  for sku, n in string.gmatch(skus, '([^' .. SEP .. '=]+)=(%d+)') do
    if redis.call('HSETNX', K.total, sku, n) == 1 then
      redis.call('HSET', K.stock, sku, n)
      redis.call('HSETNX', K.held, sku, 0)
      redis.call('HSETNX', K.sold, sku, 0)
    end
  end
  for _, key in ipairs({ K.meta, K.stock, K.held, K.sold, K.total, K.buyers, K.decisions, K.holds, K.expiry,
    K.offsets, K.waitlist, K.waiting, K.wlinfo, K.outbox, K.stats }) do
    redis.call('PERSIST', key)
  end
  return result(0, '', 0, 0, 0, now, 'opened')
end

local function restock(K, st, now, sku, qty)
  if not redis.call('HGET', K.total, sku) then
    return result(INVALID, sku, qty, 0, 0, now, 'cannot restock ' .. sku .. ': no such SKU in this drop')
  end
  redis.call('HINCRBY', K.total, sku, qty)
  local remaining = redis.call('HINCRBY', K.stock, sku, qty)
  promote(K, st, now, sku)
  return result(0, sku, qty, remaining, 0, now, 'restocked')
end

local function close_drop(K, st, now)
  if st.state ~= 'open' then return result(DUPLICATE, '', 0, 0, 0, now, 'the drop is not open') end
  redis.call('HSET', K.meta, 'state', 'closed', 'closed_at', now)
  local members = redis.call('ZRANGE', K.waitlist, 0, -1)
  for _, member in ipairs(members) do
    local f = split(member)
    local id = f[3]
    local sku, qty, buyer = leave_waitlist(K, id)
    if sku then emit(K, id, buyer, sku, qty, SOLD_OUT, stock_of(K, sku), 0, now, 'the drop closed before stock came back') end
  end
  return result(0, '', 0, 0, 0, now, 'closed')
end

-- FCALL dropline_apply 15 <keys> now n [kind src offset id buyer sku qty extra1 extra2] * n
-- kinds: o order (extra1 = pre-decided status or 0, extra2 = its reason), O open (sku = "SKU=n" SEP ...,
-- extra1 = limit SEP hold_ms SEP waitlist SEP cap, extra2 = catalog bytes), R restock, C close,
-- c confirm, x cancel. Returns, per op: status, sku, qty, remaining, hold_expires_at_ms, decided_at_ms, reason.
local function apply(keys, args)
  local K = keyset(keys)
  local now = tonumber(args[1])
  local n = tonumber(args[2])
  local st = load_state(K)
  local last, touched = {}, {}
  local out = {}
  for i = 0, n - 1 do
    local b = 2 + i * 9
    local kind, src, off, id = args[b + 1], args[b + 2], tonumber(args[b + 3]), args[b + 4]
    local buyer, sku, qty = args[b + 5], args[b + 6], tonumber(args[b + 7]) or 0
    if last[src] == nil then last[src] = tonumber(redis.call('HGET', K.offsets, src)) or -1 end
    local replay = off <= last[src]
    local r
    if kind == 'o' then
      if replay then r = replay_order(K, now, src, off, id)
      else r = decide_order(K, st, now, src, off, id, buyer, sku, qty, tonumber(args[b + 8]) or 0, args[b + 9]) end
    elseif kind == 'c' or kind == 'x' then
      if replay then r = replay_hold_action(K, now, src, off, id)
      else r = hold_action(K, st, now, src, off, id, kind == 'c') end
    else
      local seen = redis.call('HGET', K.decisions, 't' .. SEP .. id)
      if replay or seen then
        r = result(DUPLICATE, '', 0, 0, 0, now, 'trigger ' .. id .. ' was already applied')
      else
        if kind == 'O' then r = open_drop(K, st, now, id, sku, args[b + 8], args[b + 9])
        elseif kind == 'R' then r = restock(K, st, now, sku, qty)
        elseif kind == 'C' then r = close_drop(K, st, now)
        else r = result(INVALID, '', 0, 0, 0, now, 'unknown operation ' .. tostring(kind)) end
        redis.call('HSET', K.decisions, 't' .. SEP .. id, join(r[1], src, off))
        st = load_state(K)
      end
    end
    if not replay then
      last[src] = off
      touched[src] = true
    end
    out[#out + 1] = r
  end
  for src, _ in pairs(touched) do redis.call('HSET', K.offsets, src, last[src]) end
  if st.state == 'none' then
    -- Orders for a drop that never opened: remember their decisions for a day, not forever.
    for _, key in ipairs({ K.decisions, K.offsets, K.stats }) do redis.call('EXPIRE', key, UNSEEN_DROP_TTL) end
  elseif st.state == 'closed' and redis.call('ZCARD', K.expiry) == 0 then
    for _, key in ipairs({ K.meta, K.stock, K.held, K.sold, K.total, K.buyers, K.decisions, K.holds, K.expiry,
      K.offsets, K.waitlist, K.waiting, K.wlinfo, K.stats }) do
      redis.call('EXPIRE', key, CLOSED_DROP_TTL)
    end
  end
  return { st.version, out }
end

-- FCALL dropline_sweep 15 <keys> now max_expire max_outbox
-- Expires due holds (returning their stock and promoting waitlisted orders), then returns
-- { state, active holds, outbox entries (oldest first, up to max_outbox) }. Entries stay in the
-- outbox until dropline_ack removes them, so an outcome is published at least once.
local function sweep(keys, args)
  local K = keyset(keys)
  local now, max_expire, max_outbox = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  local st = load_state(K)
  local due = redis.call('ZRANGEBYSCORE', K.expiry, '-inf', now, 'LIMIT', 0, max_expire)
  for _, id in ipairs(due) do
    local sku, qty, buyer, remaining = release_hold(K, id)
    if sku then
      redis.call('HSET', K.decisions, 'h' .. SEP .. id,
        join(EXPIRED, 'sweep', -1, 'payment window ended', sku, qty, remaining, now))
      emit(K, id, buyer, sku, qty, EXPIRED, remaining, 0, now, 'the payment window ended')
      promote(K, st, now, sku)
    end
  end
  local entries = redis.call('LRANGE', K.outbox, 0, max_outbox - 1)
  return { st.state, redis.call('ZCARD', K.expiry), entries }
end

-- FCALL dropline_ack 15 <keys> n [first]: the first n outbox entries were published. With
-- `first`, nothing is removed unless the outbox still starts with that entry (returns -1).
local function ack(keys, args)
  local K = keyset(keys)
  if args[2] and redis.call('LINDEX', K.outbox, 0) ~= args[2] then return -1 end
  redis.call('LTRIM', K.outbox, tonumber(args[1]), -1)
  return redis.call('LLEN', K.outbox)
end

redis.register_function('dropline_apply', apply)
redis.register_function('dropline_sweep', sweep)
redis.register_function('dropline_ack', ack)
redis.register_function { function_name = 'dropline_version', callback = function() return '1' end, flags = { 'no-writes' } }
