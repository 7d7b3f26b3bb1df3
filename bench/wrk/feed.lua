-- wrk script for `feed bench serving` (bench/serving.py): POST /v1/feed with a rotating member list.
--
-- Environment (read once per wrk thread; bench/serving.py sets them):
--   FEED_WRK_MEMBERS  comma-separated member ids, sent in this order, round robin (required)
--   FEED_WRK_RATE     requests/s for the whole run (all threads); 0 or unset = closed loop (no delay)
--   FEED_WRK_THREADS  the -t value, so each thread paces RATE / THREADS (default 1)
--   FEED_WRK_K        k per request (default 50)
--   FEED_WRK_DEVICE   device_type (default mobile_app)
--   FEED_WRK_LOG      when set, one line per response is written to FEED_WRK_LOG .. "." .. thread id:
--                     sched_ms  sent_ms  done_ms  status  member_id  fallbacks  timings_ms
--                     (CLOCK_MONOTONIC milliseconds; fallbacks / timings_ms are the response's JSON
--                     fragments, "-" when absent; sched_ms is the slot the pacer gave the request, = sent_ms
--                     in a closed loop)
--
-- Pacing: wrk calls delay() before every request of every connection. Each thread keeps one fixed schedule
-- (slot i at start + i / rate) and each call claims the next slot, so with enough connections requests leave
-- at the scheduled times whatever the response times (open loop). When every connection is busy a slot is
-- late; the lag (sent_ms - sched_ms) is logged so the bench can report latency corrected for coordinated
-- omission (wrk itself measures from the send, not from the slot).
--
-- done() prints one line "FEED_WRK_JSON {...}" with wrk's own counts and latency percentiles (ms).

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } feed_timespec;
int clock_gettime(int clk_id, feed_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local ts = ffi.new("feed_timespec")

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000.0 + tonumber(ts.tv_nsec) / 1e6
end

local function parse_members(text)
  local out = {}
  for id in string.gmatch(text or "", "%d+") do
    out[#out + 1] = id
  end
  return out
end

local members = parse_members(os.getenv("FEED_WRK_MEMBERS"))
local rate = tonumber(os.getenv("FEED_WRK_RATE") or "0") or 0
local n_threads = tonumber(os.getenv("FEED_WRK_THREADS") or "1") or 1
local k = tonumber(os.getenv("FEED_WRK_K") or "50") or 50
local device = os.getenv("FEED_WRK_DEVICE") or "mobile_app"
local log_prefix = os.getenv("FEED_WRK_LOG")
local headers = { ["Content-Type"] = "application/json" }

local threads = {}  -- main state: the threads setup() saw
feed_thread_id = 1  -- global: setup() overwrites it in each thread's state (thread:set sets globals)
local counter = 0
local log_file = nil
local interval_ms = 0
local next_slot = nil
local slots = {}  -- FIFO of slots claimed by delay() and not yet sent
local slot_head, slot_tail = 1, 0
local inflight = {}  -- member id -> {sched, sent} (ids rotate through hundreds: no collisions in flight)

function setup(thread)
  threads[#threads + 1] = thread
  thread:set("feed_thread_id", #threads)
end

function init(args)
  if #members == 0 then
    error("FEED_WRK_MEMBERS is empty: give the member ids to request")
  end
  -- threads start on different members so they do not request the same member at once
  counter = ((feed_thread_id - 1) * math.floor(#members / math.max(n_threads, 1))) % #members
  if rate > 0 then
    interval_ms = 1000.0 * n_threads / rate
  end
  if log_prefix and log_prefix ~= "" then
    log_file = assert(io.open(log_prefix .. "." .. feed_thread_id, "w"))
    log_file:setvbuf("line")
  end
end

if rate > 0 then
  function delay()
    local now = now_ms()
    if next_slot == nil then
      next_slot = now
    end
    local slot = next_slot
    next_slot = next_slot + interval_ms
    slot_tail = slot_tail + 1
    slots[slot_tail] = slot
    local wait = slot - now
    if wait < 0 then
      return 0
    end
    return math.floor(wait + 0.5)
  end
end

function request()
  counter = counter + 1
  local member = members[(counter - 1) % #members + 1]
  local now = now_ms()
  local sched = now
  if slot_head <= slot_tail then
    sched = slots[slot_head]
    slots[slot_head] = nil
    slot_head = slot_head + 1
  end
  inflight[member] = { sched, now }
  local body = string.format('{"member_id": %s, "k": %d, "device_type": "%s"}', member, k, device)
  return wrk.format("POST", "/v1/feed", headers, body)
end

function response(status, hdrs, body)
  if log_file == nil then
    return
  end
  local done = now_ms()
  local member = body and string.match(body, '"member_id"%s*:%s*(%d+)') or nil
  local fallbacks = body and string.match(body, '"fallbacks"%s*:%s*(%b[])') or nil
  local timings = body and string.match(body, '"timings_ms"%s*:%s*(%b{})') or nil
  local sent = inflight[member or ""]
  if sent ~= nil then
    inflight[member] = nil
  else
    sent = { -1, -1 }  -- an error body without the member id: the send time is unknown
  end
  log_file:write(string.format(
    "%.3f\t%.3f\t%.3f\t%d\t%s\t%s\t%s\n",
    sent[1], sent[2], done, status, member or "-", fallbacks or "-", timings or "-"
  ))
end

local function ms(us)
  return us / 1000.0
end

function done(summary, latency, requests)
  local e = summary.errors
  local out = {
    duration_s = summary.duration / 1e6,
    requests = summary.requests,
    bytes = summary.bytes,
    errors = {
      connect = e.connect, read = e.read, write = e.write, timeout = e.timeout, status = e.status,
    },
    latency_ms = {
      min = ms(latency.min), mean = ms(latency.mean), stdev = ms(latency.stdev), max = ms(latency.max),
      p50 = ms(latency:percentile(50)), p90 = ms(latency:percentile(90)),
      p95 = ms(latency:percentile(95)), p99 = ms(latency:percentile(99)),
      p999 = ms(latency:percentile(99.9)),
    },
    rate = rate,
    threads = #threads,
  }
  local parts = {}
  local function encode(v)
    if type(v) == "table" then
      local items = {}
      for key, val in pairs(v) do
        items[#items + 1] = string.format('"%s": %s', key, encode(val))
      end
      table.sort(items)
      return "{" .. table.concat(items, ", ") .. "}"
    elseif type(v) == "number" then
      if v ~= v or v == math.huge or v == -math.huge then
        return "null"
      end
      if v == math.floor(v) and math.abs(v) < 1e15 then
        return string.format("%d", v)
      end
      return string.format("%.4f", v)
    end
    return string.format('"%s"', tostring(v))
  end
  parts[#parts + 1] = encode(out)
  io.write("FEED_WRK_JSON " .. table.concat(parts) .. "\n")
end
