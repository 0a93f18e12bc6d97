#!lua name=dropline
--[[
Dropline's reservation step: the only code that changes a drop's stock, holds, per-buyer counts,
waitlist and decisions. Loaded with FUNCTION LOAD REPLACE; each call is atomic.

Every key of one drop shares the hash tag {drop:<id>}, so a call touches one Redis Cluster slot.
KEYS (in this order, all `dl:<namespace>:{drop:<id>}:<name>`):
  1 meta       hash  state (open|closed), limit, hold_ms, waitlist (0|1), cap, catalog, version, wl_seq,
                     holds (active holds), exp_seq (last expiry tag)
  2 stock      hash  sku -> units for sale now
  3 held       hash  sku -> units reserved, waiting for payment
  4 sold       hash  sku -> units confirmed
  5 total      hash  sku -> units ever put on sale (opening stock + restocks)
  6 buyers     hash  buyer -> units held + sold + waitlisted (the per-buyer limit counts these)
  7 decisions  hash  order_id -> the order's record: its first decision, its buyer and, for orders
                     that reserved or waitlisted, where its answers go (buyer SEP channel SEP display
                     name SEP origin SEP platform message id). A RESERVED record IS the hold while no
                     lifecycle record says otherwise.
                     h SEP order_id -> hold lifecycle: how the hold ended (CONFIRMED, RELEASED, EXPIRED,
                     REFUND_DUE), or RESERVED for a hold a promotion from the waitlist made;
                     t SEP trigger_id -> trigger applied; a SEP stream SEP offset -> a hold action's
                     answer (ids never contain control characters, so these cannot collide)
  8 holds      hash  expiry tag -> the order ids (SEP-joined) of the holds one call made: they share
                     one expiry time, so a call adds one entry here and one to `expiry`
  9 expiry     zset  expiry tag scored by the expiry time (ms) of its holds
 10 offsets    hash  <topic-letter><partition> -> last consumed Kafka offset applied here
 11 waitlist   zset  all score 0, member sku SEP seq(12 digits) SEP order_id: lex order = FIFO per SKU
 12 waiting    hash  sku -> waitlisted orders
 13 wlinfo     hash  order_id -> sku SEP qty SEP buyer SEP member
 14 outbox     list  outcomes not caused by a Kafka message (expiry, promotion, close), until published
 15 stats      hash  status name -> decisions made

Statuses are dropline.v1.ReservationStatus numbers.
]]

local SEP = '\31'
local RESERVED, SOLD_OUT, LIMIT_EXCEEDED, DUPLICATE, DROP_NOT_OPEN, UNKNOWN_SKU, INVALID, WAITLISTED, CONFIRMED, RELEASED, EXPIRED, REFUND_DUE =
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
local NAMES = { 'RESERVED', 'SOLD_OUT', 'LIMIT_EXCEEDED', 'DUPLICATE', 'DROP_NOT_OPEN', 'UNKNOWN_SKU',
  'INVALID', 'WAITLISTED', 'CONFIRMED', 'RELEASED', 'EXPIRED', 'REFUND_DUE' }
-- Status numbers as record text (formatting a Lua number is a float conversion; these are constants).
local STATUS_TEXT = { '1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11', '12' }
local UNSEEN_DROP_TTL = 86400
-- Waitlisted orders promoted per call; the sweeps promote the rest, so a restock of thousands of
-- units never blocks Redis in one call.
local PROMOTE_CHUNK = 100
-- Waitlisted orders answered per call when a drop closes; the sweeps answer the rest, so a long
-- waitlist never blocks Redis in one call.
local CLOSE_CHUNK = 100
local CLOSED_DROP_TTL = 7 * 86400

-- Hash access of one call. Inside dropline_apply every hash field read is cached and every write is
-- kept and written back once at the end (HSET/HDEL with many fields per key): a batch of orders
-- costs a few Redis commands per key instead of about ten per order. Outside it (sweep), these
-- go straight to Redis. Values are kept as Redis returns them: strings (false = deleted).
local cache = nil
-- The holds one call makes, grouped by expiry time (a call's holds share one unless the drop
-- reopens with another payment window inside the call): { at, text of at, ids } in order. Written
-- at the end of the call as one `holds` field and one `expiry` member per group (`flush_tags`).
local tags = nil
-- Promotions this call may still make (PROMOTE_CHUNK at the start of every call).
local promote_left = 0

local function hget(key, field)
  if not cache then
    local v = redis.call('HGET', key, field)
    if v then return v end
    return nil
  end
  local c = cache[key]
  if not c then c = { vals = {}, dirty = {} }; cache[key] = c end
  local v = c.vals[field]
  if v == nil then
    v = redis.call('HGET', key, field)
    c.vals[field] = v
  end
  if v == false then return nil end
  return v
end

-- Inside the cache numbers stay numbers (a counter changed by several orders of a batch is
-- formatted once, when written back).
local function hset(key, field, value)
  if not cache then redis.call('HSET', key, field, value); return end
  local c = cache[key]
  if not c then c = { vals = {}, dirty = {} }; cache[key] = c end
  c.vals[field] = value
  c.dirty[field] = true
end

local function hdel(key, field)
  if not cache then redis.call('HDEL', key, field); return end
  local c = cache[key]
  if not c then c = { vals = {}, dirty = {} }; cache[key] = c end
  c.vals[field] = false
  c.dirty[field] = true
end

local function hincr(key, field, delta)
  if not cache then return redis.call('HINCRBY', key, field, delta) end
  local v = (tonumber(hget(key, field)) or 0) + delta
  hset(key, field, v)
  return v
end

local function hsetnx(key, field, value)
  if not cache then return redis.call('HSETNX', key, field, value) end
  if hget(key, field) ~= nil then return 0 end
  hset(key, field, value)
  return 1
end

-- Inside dropline_apply, decisions per status are counted here and added with one HINCRBY each
-- at the end; elsewhere straight away.
local counts = nil

local function count(K, status)
  if not counts then redis.call('HINCRBY', K.stats, NAMES[status], 1); return end
  counts[status] = (counts[status] or 0) + 1
end

-- Fills the cache for many fields of one key with one HMGET (fields not yet cached).
local function prefetch(key, fields)
  local c = cache[key]
  if not c then c = { vals = {}, dirty = {} }; cache[key] = c end
  local want, seen = {}, {}
  for _, f in ipairs(fields) do
    if c.vals[f] == nil and not seen[f] then want[#want + 1] = f; seen[f] = true end
  end
  for i = 1, #want, 500 do
    local part = { unpack(want, i, math.min(i + 499, #want)) }
    local got = redis.call('HMGET', key, unpack(part))
    for j, f in ipairs(part) do c.vals[f] = got[j] end
  end
end

-- Writes back everything kept, 500 fields per command.
local function flush()
  for key, c in pairs(cache) do
    local sets, dels = {}, {}
    for f, _ in pairs(c.dirty) do
      local v = c.vals[f]
      if v == false then dels[#dels + 1] = f
      else
        if type(v) == 'number' then v = string.format('%d', v) end
        sets[#sets + 1] = f; sets[#sets + 1] = v
      end
    end
    for i = 1, #sets, 1000 do redis.call('HSET', key, unpack(sets, i, math.min(i + 999, #sets))) end
    for i = 1, #dels, 500 do redis.call('HDEL', key, unpack(dels, i, math.min(i + 499, #dels))) end
  end
  cache = nil
end

-- Adds the counted decisions to the stats hash.
local function flush_counts(K)
  for status, n in pairs(counts) do redis.call('HINCRBY', K.stats, NAMES[status], n) end
  counts = nil
end

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

-- Every call starts from a clean slate: straight to Redis, nothing left over from a failed call.
local function begin_call()
  cache, counts, tags, promote_left = nil, nil, {}, PROMOTE_CHUNK
end

local function load_state(K)
  local m
  if cache then
    m = { hget(K.meta, 'state'), hget(K.meta, 'limit'), hget(K.meta, 'hold_ms'), hget(K.meta, 'waitlist'),
      hget(K.meta, 'cap'), hget(K.meta, 'version') }
  else
    m = redis.call('HMGET', K.meta, 'state', 'limit', 'hold_ms', 'waitlist', 'cap', 'version')
  end
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
  return tonumber(hget(K.stock, sku)) or 0
end

-- The expiry group of holds made now (see `tags`); returns its expiry time as text.
local function tag_hold(K, st, now, id)
  local at = now + st.hold_ms
  local g = tags[#tags]
  if not g or g.at ~= at then
    g = { at = at, text = string.format('%d', at), ids = {} }
    tags[#tags + 1] = g
  end
  g.ids[#g.ids + 1] = id
  return g
end

-- Writes the call's expiry groups: one `holds` field (tag -> ids) and one `expiry` member each.
local function flush_tags(K)
  for _, g in ipairs(tags) do
    local tag = string.format('%012d', redis.call('HINCRBY', K.meta, 'exp_seq', 1))
    redis.call('HSET', K.holds, tag, table.concat(g.ids, SEP))
    redis.call('ZADD', K.expiry, g.at, tag)
  end
  tags = {}
end

-- Holds `qty` of `sku` for order `id` until now + hold window. Returns remaining stock, expiry
-- (number), expiry (text).
local function reserve(K, st, now, id, sku, qty)
  local remaining = hincr(K.stock, sku, -qty)
  hincr(K.held, sku, qty)
  hincr(K.meta, 'holds', 1)
  local g = tag_hold(K, st, now, id)
  return remaining, g.at, g.text
end

-- Where the answers of order `id` go ('' when it never reserved or waitlisted here): the order's
-- record from its 12th field on.
local function reply_to(K, id)
  local d = hget(K.decisions, id)
  if not d then return '' end
  local f = split(d)
  if #f < 12 then return '' end
  return table.concat(f, SEP, 12)
end

-- The active hold of order `id`: sku, qty, buyer, or nil. An order's RESERVED record is its hold
-- until a lifecycle record ends it; a promotion's hold is its lifecycle record (RESERVED).
local function active_hold(K, id)
  local h = hget(K.decisions, 'h' .. SEP .. id)
  local d = hget(K.decisions, id)
  if not d then return nil end
  local f = split(d)
  if h then
    local l = split(h)
    if l[1] ~= STATUS_TEXT[RESERVED] then return nil end
    return l[5], tonumber(l[6]), f[11] or ''
  end
  if f[1] ~= STATUS_TEXT[RESERVED] then return nil end
  return f[2], tonumber(f[3]), f[11] or ''
end

local function emit(K, id, buyer, sku, qty, status, remaining, expires, now, reason)
  redis.call('RPUSH', K.outbox, join(id, buyer, sku, qty, status, remaining, expires, now, reason, reply_to(K, id)))
  count(K, status)
end

-- Returned stock goes to the oldest waitlisted order of the SKU first (strict FIFO: an order
-- that wants more than is back waits, and so do the ones behind it). At most `promote_left` per
-- call: the sweeps go on where a call stopped.
local function promote(K, st, now, sku)
  -- A closed drop's waitlist is being answered SOLD_OUT (close_chunk): nobody is promoted.
  if st.state ~= 'open' then return end
  while promote_left > 0 do
    local avail = stock_of(K, sku)
    if avail <= 0 then return end
    local first = redis.call('ZRANGEBYLEX', K.waitlist, '[' .. sku .. SEP, '[' .. sku .. SEP .. '\255', 'LIMIT', 0, 1)
    if #first == 0 then return end
    local member = first[1]
    local id = string.sub(member, #sku + 15)
    local info = split(hget(K.wlinfo, id))
    local qty = tonumber(info[2])
    if qty > avail then return end
    promote_left = promote_left - 1
    redis.call('ZREM', K.waitlist, member)
    hdel(K.wlinfo, id)
    hincr(K.waiting, sku, -1)
    local remaining, expires = reserve(K, st, now, id, sku, qty)
    hset(K.decisions, 'h' .. SEP .. id, join(RESERVED, 'promote', -1, '', sku, qty, remaining, now))
    emit(K, id, info[3], sku, qty, RESERVED, remaining, expires, now, 'promoted from the waitlist')
  end
end

-- Every SKU with orders waiting, in byte order (a sweep goes on with promotions a call left).
local function promote_all(K, st, now)
  if st.state ~= 'open' then return end
  local from = '-'
  while promote_left > 0 do
    local first = redis.call('ZRANGEBYLEX', K.waitlist, from, '+', 'LIMIT', 0, 1)
    if #first == 0 then return end
    local sku = split(first[1])[1]
    promote(K, st, now, sku)
    from = '(' .. sku .. SEP .. '\255'
  end
end

-- A hold's units back to stock (and off the buyer's count). Returns the stock left.
local function units_back(K, sku, qty, buyer)
  hincr(K.meta, 'holds', -1)
  hincr(K.held, sku, -qty)
  local remaining = hincr(K.stock, sku, qty)
  hincr(K.buyers, buyer, -qty)
  return remaining
end

-- Ends order `id`'s active hold, its units back to stock. Returns sku, qty, buyer, remaining or
-- nil. The caller records how it ended (the lifecycle record), which is what ends it.
local function release_hold(K, id)
  local sku, qty, buyer = active_hold(K, id)
  if not sku then return nil end
  return sku, qty, buyer, units_back(K, sku, qty, buyer)
end

-- Takes an order off the waitlist. Returns sku, qty, buyer or nil.
local function leave_waitlist(K, id)
  local w = hget(K.wlinfo, id)
  if not w then return nil end
  local f = split(w)
  -- The member (sku SEP seq SEP order_id) contains SEP itself: it is everything from field 4 on.
  local sku, qty, buyer, member = f[1], tonumber(f[2]), f[3], table.concat(f, SEP, 4)
  redis.call('ZREM', K.waitlist, member)
  hdel(K.wlinfo, id)
  hincr(K.waiting, sku, -1)
  hincr(K.buyers, buyer, -qty)
  return sku, qty, buyer
end

-- pos: the place on the waitlist (WAITLISTED); who: the order's reply-to record (hold actions).
local function result(status, sku, qty, remaining, expires, now, reason, pos, who)
  return { status, sku, qty, remaining, expires, now, reason, pos or 0, who or '' }
end

-- nows, offs, qtys: the call's time and the order's offset and quantity as the arguments carry
-- them, so the record is built from strings and the only number formatted per order is the stock left.
local function decide_order(K, st, now, nows, src, offs, id, buyer, sku, qty, qtys, pre, why, who)
  local prev = hget(K.decisions, id)
  if prev then
    local d = split(prev)
    return result(DUPLICATE, d[2], tonumber(d[3]), stock_of(K, d[2]), 0, now,
      'order ' .. id .. ' was already decided: ' .. NAMES[tonumber(d[1])])
  end
  local status, remaining, expires, exps, reason, pos = 0, 0, 0, '0', '', 0
  if st.state ~= 'open' then
    status = DROP_NOT_OPEN
    reason = st.state == 'closed' and 'the drop is closed' or 'the drop is not open'
  elseif pre ~= 0 then
    status, reason = pre, why
  elseif not hget(K.stock, sku) then
    status, reason = UNKNOWN_SKU, 'no SKU ' .. sku .. ' in this drop'
  else
    -- While anyone waits for the SKU, stock goes to the line first (within this call's
    -- promotions); when the promotions ran out before the line did, a new order waits behind it.
    -- (A head that wants more than is left does not hold back units others can take.)
    local waiting = tonumber(hget(K.waiting, sku)) or 0
    local behind = false
    if waiting > 0 then
      promote(K, st, now, sku)
      waiting = tonumber(hget(K.waiting, sku)) or 0
      behind = waiting > 0 and promote_left == 0 and stock_of(K, sku) > 0
    end
    local avail = stock_of(K, sku)
    local have = tonumber(hget(K.buyers, buyer)) or 0
    remaining = avail
    if st.limit > 0 and have + qty > st.limit then
      status = LIMIT_EXCEEDED
      reason = 'the limit is ' .. st.limit .. ' per buyer and you already have ' .. have
    elseif not behind and avail >= qty then
      status = RESERVED
      hincr(K.buyers, buyer, qty)
      remaining, expires, exps = reserve(K, st, now, id, sku, qty)
    else
      if st.waitlist and (st.cap == 0 or waiting < st.cap) then
        status = WAITLISTED
        local seq = hincr(K.meta, 'wl_seq', 1)
        local member = sku .. SEP .. string.format('%012d', seq) .. SEP .. id
        redis.call('ZADD', K.waitlist, 0, member)
        hset(K.wlinfo, id, join(sku, qtys, buyer, member))
        hincr(K.waiting, sku, 1)
        hincr(K.buyers, buyer, qty)
        pos = waiting + 1
        reason = 'sold out; you are number ' .. pos .. ' on the waitlist'
      else
        status = SOLD_OUT
        if behind then reason = 'the last ' .. avail .. ' go to the waitlist'
        elseif avail > 0 then reason = 'only ' .. avail .. ' left' end
      end
    end
  end
  local record = STATUS_TEXT[status] .. SEP .. sku .. SEP .. qtys .. SEP .. remaining .. SEP .. exps .. SEP
    .. nows .. SEP .. src .. SEP .. offs .. SEP .. reason .. SEP .. (pos == 0 and '0' or pos) .. SEP .. buyer
  if (status == RESERVED or status == WAITLISTED) and who ~= '' then record = record .. SEP .. who end
  hset(K.decisions, id, record)
  count(K, status)
  return result(status, sku, qty, remaining, expires, now, reason, pos)
end

-- A Kafka message applied before (offset at or below the recorded one) changes nothing and
-- answers what it answered the first time.
local function replay_order(K, now, src, offs, id)
  local prev = hget(K.decisions, id)
  if not prev then
    return result(DUPLICATE, '', 0, 0, 0, now, 'replayed order; its decision is no longer stored')
  end
  local d = split(prev)
  if d[7] == src and d[8] == offs then
    return result(tonumber(d[1]), d[2], tonumber(d[3]), tonumber(d[4]), tonumber(d[5]), tonumber(d[6]), d[9],
      tonumber(d[10]) or 0)
  end
  return result(DUPLICATE, d[2], tonumber(d[3]), stock_of(K, d[2]), 0, now,
    'order ' .. id .. ' was already decided: ' .. NAMES[tonumber(d[1])])
end

-- A hold action that changed nothing still gets its answer recorded, by Kafka position, so a
-- redelivery repeats it (decisions field a SEP src SEP offset).
local function answer(K, src, off, r)
  hset(K.decisions, 'a' .. SEP .. src .. SEP .. off, join(r[1], r[2], r[3], r[4], r[6], r[7]))
  return r
end

-- A payment for a hold that already ended (expired or released): the units are taken again if the
-- SKU still has them and the buyer's limit allows (CONFIRMED, paid late), else REFUND_DUE. Never
-- oversells: units come only out of stock.
local function late_payment(K, st, now, src, off, id, sku, qty, was, who)
  local d = hget(K.decisions, id)
  local buyer = d and split(d)[11] or ''
  local avail = stock_of(K, sku)
  local have = 0
  if buyer ~= '' then have = tonumber(hget(K.buyers, buyer)) or 0 end
  local status, remaining, reason
  local late = 'paid after the hold was ' .. NAMES[was]
  if avail >= qty and (st.limit == 0 or have + qty <= st.limit) then
    hincr(K.stock, sku, -qty)
    hincr(K.sold, sku, qty)
    if buyer ~= '' then hincr(K.buyers, buyer, qty) end
    status, remaining, reason = CONFIRMED, avail - qty, late .. '; the units were still in stock'
  elseif avail < qty then
    status, remaining, reason = REFUND_DUE, avail, late .. ' and ' .. sku .. ' is sold out: refund due'
  else
    status, remaining = REFUND_DUE, avail
    reason = late .. ' and the buyer already has ' .. have .. ' of the limit of ' .. st.limit .. ': refund due'
  end
  hset(K.decisions, 'h' .. SEP .. id, join(status, src, off, reason, sku, qty, remaining, now))
  count(K, status)
  return result(status, sku, qty, remaining, 0, now, reason, 0, who)
end

local function hold_action(K, st, now, src, off, id, confirm)
  local status, sku, qty, remaining, reason = 0, '', 0, 0, ''
  local who = reply_to(K, id)
  local hsku, hqty, hbuyer = active_hold(K, id)
  if hsku then
    sku, qty = hsku, hqty
    if confirm then
      hincr(K.meta, 'holds', -1)
      hincr(K.held, sku, -qty)
      hincr(K.sold, sku, qty)
      status, remaining = CONFIRMED, stock_of(K, sku)
    else
      remaining = units_back(K, sku, qty, hbuyer)
      status, reason = RELEASED, 'cancelled at checkout'
    end
  elseif hget(K.wlinfo, id) then
    if confirm then
      local f = split(hget(K.wlinfo, id))
      return answer(K, src, off, result(INVALID, f[1], tonumber(f[2]), stock_of(K, f[1]), 0, now,
        'order ' .. id .. ' is waitlisted; there is no hold to confirm yet', 0, who))
    end
    sku, qty = leave_waitlist(K, id)
    status, remaining, reason = RELEASED, stock_of(K, sku), 'left the waitlist'
  else
    local done = hget(K.decisions, 'h' .. SEP .. id)
    if done then
      local f = split(done)
      local was = tonumber(f[1])
      if confirm and (was == EXPIRED or was == RELEASED) then
        -- The lifecycle record is replaced: the cancel it records keeps its answer for replays.
        if f[2] ~= 'sweep' then
          hset(K.decisions, 'a' .. SEP .. f[2] .. SEP .. f[3], join(f[1], f[5], f[6], f[7], f[8], f[4]))
        end
        return late_payment(K, st, now, src, off, id, f[5], tonumber(f[6]), was, who)
      end
      return answer(K, src, off, result(DUPLICATE, f[5], tonumber(f[6]), stock_of(K, f[5]), 0, now,
        'the hold of order ' .. id .. ' was already ' .. NAMES[was], 0, who))
    end
    return answer(K, src, off, result(INVALID, '', 0, 0, 0, now, 'order ' .. id .. ' has no hold in this drop', 0, who))
  end
  hset(K.decisions, 'h' .. SEP .. id, join(status, src, off, reason, sku, qty, remaining, now))
  count(K, status)
  if status == RELEASED then promote(K, st, now, sku) end
  return result(status, sku, qty, remaining, 0, now, reason, 0, who)
end

local function replay_hold_action(K, now, src, off, id)
  local who = reply_to(K, id)
  local done = hget(K.decisions, 'h' .. SEP .. id)
  if done then
    local f = split(done)
    if f[2] == src and f[3] == tostring(off) then
      return result(tonumber(f[1]), f[5], tonumber(f[6]), tonumber(f[7]), 0, tonumber(f[8]) or now, f[4], 0, who)
    end
  end
  local a = hget(K.decisions, 'a' .. SEP .. src .. SEP .. off)
  if a then
    local f = split(a)
    return result(tonumber(f[1]), f[2], tonumber(f[3]), tonumber(f[4]), 0, tonumber(f[5]), f[6], 0, who)
  end
  return result(DUPLICATE, '', 0, 0, 0, now, 'replayed hold action for order ' .. id, 0, who)
end

-- Triggers answer 0 when applied, DUPLICATE when seen before, INVALID when refused.
local function open_drop(K, st, now, id, skus, settings, catalog)
  if st.state == 'open' then return result(DUPLICATE, '', 0, 0, 0, now, 'the drop is already open') end
  local s = split(settings)
  hset(K.meta, 'state', 'open')
  hset(K.meta, 'limit', s[1])
  hset(K.meta, 'hold_ms', s[2])
  hset(K.meta, 'waitlist', s[3])
  hset(K.meta, 'cap', s[4])
  hset(K.meta, 'catalog', catalog)
  hset(K.meta, 'opened_at', now)
  hincr(K.meta, 'version', 1)
  for sku, n in string.gmatch(skus, '([^' .. SEP .. '=]+)=(%d+)') do
    if hsetnx(K.total, sku, n) == 1 then
      hset(K.stock, sku, n)
      hsetnx(K.held, sku, 0)
      hsetnx(K.sold, sku, 0)
    end
  end
  for _, key in ipairs({ K.meta, K.stock, K.held, K.sold, K.total, K.buyers, K.decisions, K.holds, K.expiry,
    K.offsets, K.waitlist, K.waiting, K.wlinfo, K.outbox, K.stats }) do
    redis.call('PERSIST', key)
  end
  return result(0, '', 0, 0, 0, now, 'opened')
end

local function restock(K, st, now, sku, qty)
  if not hget(K.total, sku) then
    return result(INVALID, sku, qty, 0, 0, now, 'cannot restock ' .. sku .. ': no such SKU in this drop')
  end
  hincr(K.total, sku, qty)
  local remaining = hincr(K.stock, sku, qty)
  promote(K, st, now, sku)
  return result(0, sku, qty, remaining, 0, now, 'restocked')
end

-- A closed drop's waitlisted orders are answered SOLD_OUT, at most `n` per call, oldest first;
-- close does the first chunk (CLOSE_CHUNK), each sweep the next (what its budget has left).
local function close_chunk(K, now, n)
  if n <= 0 then return end
  local members = redis.call('ZRANGE', K.waitlist, 0, n - 1)
  for _, member in ipairs(members) do
    local f = split(member)
    local id = f[3]
    local sku, qty, buyer = leave_waitlist(K, id)
    if sku then emit(K, id, buyer, sku, qty, SOLD_OUT, stock_of(K, sku), 0, now, 'the drop closed before stock came back') end
  end
end

local function close_drop(K, st, now)
  if st.state ~= 'open' then return result(DUPLICATE, '', 0, 0, 0, now, 'the drop is not open') end
  hset(K.meta, 'state', 'closed')
  hset(K.meta, 'closed_at', now)
  close_chunk(K, now, CLOSE_CHUNK)
  return result(0, '', 0, 0, 0, now, 'closed')
end

-- Arguments per operation, the kind included (a slim wire: an order carries only what it needs).
local ARITY = { o = 8, v = 10, O = 7, R = 6, C = 4, c = 4, x = 4 }

-- A drop's keys are kept while it can still change, then given a TTL: a drop that never opened
-- keeps its decisions for a day; a closed drop with no hold left keeps everything for a week (its
-- outcomes are long published). Called by every call that can end the last hold: apply (a
-- confirm, a cancel) and the sweep (an expiry) — a closed drop gets no other call.
local function set_ttls(K, st)
  if st.state == 'none' then
    for _, key in ipairs({ K.decisions, K.offsets, K.stats }) do redis.call('EXPIRE', key, UNSEEN_DROP_TTL) end
  elseif st.state == 'closed' and (tonumber(redis.call('HGET', K.meta, 'holds')) or 0) == 0 then
    for _, key in ipairs({ K.meta, K.stock, K.held, K.sold, K.total, K.buyers, K.decisions, K.holds, K.expiry,
      K.offsets, K.waitlist, K.waiting, K.wlinfo, K.stats }) do
      redis.call('EXPIRE', key, CLOSED_DROP_TTL)
    end
  end
end

-- FCALL dropline_apply 15 <keys> now n [op] * n, each op `kind src offset id` then by kind:
--   o  order:          buyer sku qty who          (who: its reply-to record)
--   v  decided order:  buyer sku qty status reason who (the matcher already knows the answer)
--   O  open:           "SKU=n" SEP ... , limit SEP hold_ms SEP waitlist SEP cap, catalog bytes
--   R  restock:        sku qty
--   C  close;  c confirm;  x cancel (id: the order whose hold it is)
-- Returns { version, flat } with nine fields per op in flat: status, sku, qty, remaining,
-- hold_expires_at_ms, decided_at_ms, reason, waitlist position, reply-to record (hold actions).
local function apply(keys, args)
  local K = keyset(keys)
  local nows = args[1]
  local now = tonumber(nows)
  local n = tonumber(args[2])
  begin_call()
  -- Where each op's arguments start.
  local at, b = {}, 3
  for i = 1, n do
    at[i] = b
    b = b + (ARITY[args[b]] or 4)
  end
  -- Small batches go straight to Redis; larger ones through the write-back cache (it costs a few
  -- table allocations per call and saves about ten commands per order).
  if n >= 4 then
    cache, counts = {}, {}
    -- What the batch's orders will read, fetched in one go per key.
    local ids, buyers, skus = {}, {}, {}
    for i = 1, n do
      local p = at[i]
      local kind = args[p]
      if kind == 'o' or kind == 'v' then
        ids[#ids + 1] = args[p + 3]
        buyers[#buyers + 1] = args[p + 4]
        if args[p + 5] ~= '' then skus[#skus + 1] = args[p + 5] end
      end
    end
    prefetch(K.meta, { 'state', 'limit', 'hold_ms', 'waitlist', 'cap', 'version', 'holds' })
    if #ids > 0 then
      prefetch(K.decisions, ids)
      prefetch(K.buyers, buyers)
      prefetch(K.stock, skus)
      prefetch(K.held, skus)
    end
  end
  local st = load_state(K)
  local last, touched = {}, {}
  local flat = {}
  for i = 1, n do
    local p = at[i]
    local kind, src, offs, id = args[p], args[p + 1], args[p + 2], args[p + 3]
    local off = tonumber(offs)
    if last[src] == nil then last[src] = tonumber(hget(K.offsets, src)) or -1 end
    local replay = off <= last[src]
    local r
    if kind == 'o' or kind == 'v' then
      if replay then r = replay_order(K, now, src, offs, id)
      else
        local pre, why, who = 0, '', args[p + 7]
        if kind == 'v' then pre, why, who = tonumber(args[p + 7]) or 0, args[p + 8], args[p + 9] end
        r = decide_order(K, st, now, nows, src, offs, id, args[p + 4], args[p + 5], tonumber(args[p + 6]) or 0,
          args[p + 6], pre, why, who)
      end
    elseif kind == 'c' or kind == 'x' then
      if replay then r = replay_hold_action(K, now, src, off, id)
      else r = hold_action(K, st, now, src, off, id, kind == 'c') end
    else
      local seen = hget(K.decisions, 't' .. SEP .. id)
      if replay or seen then
        r = result(DUPLICATE, '', 0, 0, 0, now, 'trigger ' .. id .. ' was already applied')
      else
        if kind == 'O' then r = open_drop(K, st, now, id, args[p + 4], args[p + 5], args[p + 6])
        elseif kind == 'R' then r = restock(K, st, now, args[p + 4], tonumber(args[p + 5]) or 0)
        elseif kind == 'C' then r = close_drop(K, st, now)
        else r = result(INVALID, '', 0, 0, 0, now, 'unknown operation ' .. tostring(kind)) end
        hset(K.decisions, 't' .. SEP .. id, join(r[1], src, off))
        st = load_state(K)
      end
    end
    if not replay then
      last[src] = off
      touched[src] = true
    end
    -- One flat reply: nine fields per operation.
    local f = #flat
    for j = 1, 9 do flat[f + j] = r[j] end
  end
  for src, _ in pairs(touched) do hset(K.offsets, src, last[src]) end
  if cache then flush(); flush_counts(K) end
  flush_tags(K)
  set_ttls(K, st)
  return { st.version, flat }
end

-- FCALL dropline_sweep 15 <keys> now max_expire max_outbox [n [stream settled] * n]
-- Expires due holds (returning their stock and promoting waitlisted orders), goes on with
-- promotions an earlier call left and with a closed drop's waitlist — max_expire is the budget of
-- the whole call: every hold looked at, every promotion and every answer to a closed drop's
-- waitlist spends one, so a call stays within ~2 ms of Redis time — then returns { state, active holds, outbox entries
-- (oldest first, up to max_outbox), waitlisted orders }. Entries stay in the outbox until
-- dropline_ack removes them, so an outcome is published at least once.
-- With settled offsets per source stream (outcomes published and acknowledged up to there), a
-- due hold whose decision came from a later offset of such a stream is left for a later sweep:
-- its RESERVED is not out yet (a replay after a crash, a re-send after a broker failure), and its
-- EXPIRED must not overtake it.
local function sweep(keys, args)
  begin_call()
  local K = keyset(keys)
  local now, max_expire, max_outbox = tonumber(args[1]), tonumber(args[2]), tonumber(args[3])
  local settled = {}
  for i = 1, (tonumber(args[4]) or 0) do
    settled[args[3 + 2 * i]] = tonumber(args[4 + 2 * i])
  end
  local st = load_state(K)
  -- The call's budget (promotions draw on it too).
  promote_left = max_expire
  local due = redis.call('ZRANGEBYSCORE', K.expiry, '-inf', now, 'LIMIT', 0, max_expire)
  for _, tag in ipairs(due) do
    if promote_left <= 0 then break end
    local ids = split(hget(K.holds, tag) or '')
    local rest = {}
    for _, id in ipairs(ids) do
      if promote_left <= 0 then rest[#rest + 1] = id
      elseif id ~= '' then
        promote_left = promote_left - 1
        local published = true
        local d = hget(K.decisions, id)
        if d then
          local f = split(d)
          local limit = settled[f[7]]
          if limit and tonumber(f[8]) and tonumber(f[8]) > limit then published = false end
        end
        if not published then rest[#rest + 1] = id
        else
          local sku, qty, buyer, remaining = release_hold(K, id)
          if sku then
            hset(K.decisions, 'h' .. SEP .. id,
              join(EXPIRED, 'sweep', -1, 'payment window ended', sku, qty, remaining, now))
            emit(K, id, buyer, sku, qty, EXPIRED, remaining, 0, now, 'the payment window ended')
            promote(K, st, now, sku)
          end
        end
      end
    end
    if #rest == 0 then
      hdel(K.holds, tag)
      redis.call('ZREM', K.expiry, tag)
    else
      hset(K.holds, tag, table.concat(rest, SEP))
    end
  end
  promote_all(K, st, now)
  if st.state == 'closed' then close_chunk(K, now, promote_left) end
  flush_tags(K)
  set_ttls(K, st)
  local entries = redis.call('LRANGE', K.outbox, 0, max_outbox - 1)
  return { st.state, tonumber(redis.call('HGET', K.meta, 'holds')) or 0, entries, redis.call('ZCARD', K.waitlist) }
end

-- FCALL dropline_ack 15 <keys> n [first]: the first n outbox entries were published. With
-- `first`, nothing is removed unless the outbox still starts with that entry (returns -1).
local function ack(keys, args)
  begin_call()
  local K = keyset(keys)
  if args[2] and redis.call('LINDEX', K.outbox, 0) ~= args[2] then return -1 end
  redis.call('LTRIM', K.outbox, tonumber(args[1]), -1)
  return redis.call('LLEN', K.outbox)
end

-- A split drop's shards trade stock (the rebalancing step). A transfer leaves the donor first
-- (dropline_take: stock and total go down, the transfer is journalled in the donor's meta), arrives
-- in the recipient once (dropline_give: idempotent by transfer id; waitlisted orders there are
-- promoted), then is forgotten (dropline_settle). Units in transit are in no shard's stock, so a
-- crash between the steps can delay units, never sell them twice; the journal lets the next
-- rebalance finish the transfer.

-- FCALL dropline_take 15 <donor keys> id sku units recipient -> units taken (0 if none)
local function take(keys, args)
  begin_call()
  local K = keyset(keys)
  local id, sku, want, recipient = args[1], args[2], tonumber(args[3]), args[4]
  local have = tonumber(redis.call('HGET', K.stock, sku)) or 0
  local units = math.min(have, want)
  if units <= 0 then return 0 end
  redis.call('HINCRBY', K.stock, sku, -units)
  redis.call('HINCRBY', K.total, sku, -units)
  redis.call('HSET', K.meta, 'xfer' .. SEP .. id, join(recipient, sku, units))
  return units
end

-- FCALL dropline_give 15 <recipient keys> id sku units now -> 1 when given now, 0 when given before
local function give(keys, args)
  begin_call()
  local K = keyset(keys)
  local id, sku, units, now = args[1], args[2], tonumber(args[3]), tonumber(args[4])
  if redis.call('HSETNX', K.decisions, 'x' .. SEP .. id, units) == 0 then return 0 end
  redis.call('HINCRBY', K.stock, sku, units)
  redis.call('HINCRBY', K.total, sku, units)
  local st = load_state(K)
  promote(K, st, now, sku)
  flush_tags(K)
  return 1
end

-- FCALL dropline_settle 15 <donor keys> id -> 1 when the journal entry was removed
local function settle(keys, args)
  local K = keyset(keys)
  return redis.call('HDEL', K.meta, 'xfer' .. SEP .. args[1])
end

-- FCALL_RO dropline_holds 15 <keys> max: the drop's active holds, soonest expiry first (at most
-- max), seven fields each in one flat reply: order id, sku, qty, buyer, expires at (ms), and the
-- source stream and offset of the order's decision. For operators and checks: it reads every tag.
local function active_holds(keys, args)
  begin_call()
  local K = keyset(keys)
  local max = tonumber(args[1]) or 100
  local out = {}
  local groups = redis.call('ZRANGE', K.expiry, 0, -1, 'WITHSCORES')
  for i = 1, #groups, 2 do
    for _, id in ipairs(split(redis.call('HGET', K.holds, groups[i]) or '')) do
      if #out >= max * 7 then return out end
      local sku, qty, buyer = nil, 0, ''
      if id ~= '' then sku, qty, buyer = active_hold(K, id) end
      if sku then
        local f = split(redis.call('HGET', K.decisions, id))
        for _, v in ipairs({ id, sku, qty, buyer, tonumber(groups[i + 1]), f[7], f[8] }) do out[#out + 1] = v end
      end
    end
  end
  return out
end

redis.register_function('dropline_apply', apply)
redis.register_function('dropline_take', take)
redis.register_function('dropline_give', give)
redis.register_function('dropline_settle', settle)
redis.register_function('dropline_sweep', sweep)
redis.register_function('dropline_ack', ack)
redis.register_function { function_name = 'dropline_holds', callback = active_holds, flags = { 'no-writes' } }
redis.register_function { function_name = 'dropline_version', callback = function() return '2' end, flags = { 'no-writes' } }
