-- wrk script of benchmarks/orders_http.py: one request body per thread, a clean stop,
-- and every status counted. Run with one connection per thread (-t N -c N), so a
-- thread's body is its connection's body (scenario b: one account per connection).
--
-- Environment (read by the main thread in `setup`, handed to each thread):
--   WRK_METHOD   GET or POST (default POST)
--   WRK_BODIES   file of request bodies, one a line; thread i (1-based) sends line
--                ((i - 1) % lines) + 1 on every request (absent: no body)
--   WRK_SECONDS  seconds to run; at that deadline each thread stops right after its
--                connection's response, so no request is left unanswered: the 2xx
--                counted are exactly the requests the server completed. Pass wrk a
--                -d a few seconds longer, as a backstop only.
--   WRK_OUT      file the results are written to, as JSON (by `done`); each thread
--                creates WRK_OUT.stopped.<i> when it stops, so the caller can end wrk
--                (SIGINT) as soon as all have, instead of waiting out -d
--
-- The rate is computed here, from the first request sent to the last response read
-- (CLOCK_MONOTONIC via LuaJIT's ffi), not from wrk's -d, which includes the backstop.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } wrk_timespec;
int clock_gettime(int clk_id, wrk_timespec *tp);
]]
local timespec = ffi.new("wrk_timespec")
local function now()
  ffi.C.clock_gettime(1, timespec) -- CLOCK_MONOTONIC: one clock for every thread
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

-- main thread ----------------------------------------------------------------------

local threads = {}
local bodies = {}
local shared_deadline = nil

local function read_bodies(path)
  if path == nil or path == "" then
    return
  end
  for line in io.lines(path) do
    if line ~= "" then
      bodies[#bodies + 1] = line
    end
  end
  assert(#bodies > 0, "WRK_BODIES has no body: " .. path)
end

function setup(thread)
  if #threads == 0 then
    read_bodies(os.getenv("WRK_BODIES"))
    -- All threads share one deadline, counted from the first setup (they start at once).
    shared_deadline = now() + assert(tonumber(os.getenv("WRK_SECONDS")), "WRK_SECONDS unset")
  end
  threads[#threads + 1] = thread
  local index = #threads
  thread:set("thread_index", index)
  thread:set("deadline", shared_deadline)
  thread:set("method", os.getenv("WRK_METHOD") or "POST")
  if #bodies > 0 then
    thread:set("body", bodies[((index - 1) % #bodies) + 1])
  end
end

-- each thread ------------------------------------------------------------------------

-- Read back by `done` with thread:get (globals of the thread's own Lua state).
sent = 0
answered = 0
ok = 0
counts = {} -- status -> responses
first_sent = 0
last_answered = 0

local request_bytes = nil
local verifying = false

function init(args)
  local headers = { ["Host"] = wrk.host .. ":" .. tostring(wrk.port) }
  if body ~= nil then
    headers["Content-Type"] = "application/json"
  end
  request_bytes = wrk.format(method, wrk.path, headers, body)
  -- wrk calls request() once on its first thread, before the run, to check the script
  -- (script_verify_request): that call sends nothing and is not counted.
  verifying = thread_index == 1
end

function request()
  if verifying then
    verifying = false
    return request_bytes
  end
  if sent == 0 then
    first_sent = now()
  end
  sent = sent + 1
  return request_bytes
end

function response(status, headers, response_body)
  answered = answered + 1
  if status >= 200 and status < 300 then
    ok = ok + 1
  end
  counts[status] = (counts[status] or 0) + 1
  local t = now()
  last_answered = t
  if t >= deadline then
    -- Tell the caller this thread is done: once all are, it ends wrk with SIGINT
    -- (wrk would otherwise sleep out its whole -d), and `done` still runs.
    local flag = io.open(os.getenv("WRK_OUT") .. ".stopped." .. tostring(thread_index), "w")
    if flag ~= nil then
      flag:close()
    end
    wrk.thread:stop()
  end
end

-- main thread, at the end ------------------------------------------------------------

function done(summary, latency, requests)
  local total = { sent = 0, answered = 0, ok = 0 }
  local by_status = {}
  local per_thread = {}
  local started, finished = nil, nil
  for i, thread in ipairs(threads) do
    local t_sent, t_answered, t_ok = thread:get("sent"), thread:get("answered"), thread:get("ok")
    total.sent = total.sent + t_sent
    total.answered = total.answered + t_answered
    total.ok = total.ok + t_ok
    per_thread[#per_thread + 1] = string.format(
      '{"thread": %d, "sent": %d, "answered": %d, "ok": %d}', i, t_sent, t_answered, t_ok
    )
    for code, n in pairs(thread:get("counts")) do
      by_status[code] = (by_status[code] or 0) + n
    end
    local first, last = thread:get("first_sent"), thread:get("last_answered")
    if first > 0 and (started == nil or first < started) then
      started = first
    end
    if last > 0 and (finished == nil or last > finished) then
      finished = last
    end
  end
  local status_parts = {}
  for code, n in pairs(by_status) do
    status_parts[#status_parts + 1] = string.format('"%s": %d', code, n)
  end
  local errors = summary.errors
  local out = assert(io.open(assert(os.getenv("WRK_OUT"), "WRK_OUT unset"), "w"))
  out:write(string.format(
    '{"sent": %d, "answered": %d, "ok": %d, "seconds": %.6f, "statuses": {%s}, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "wrk_requests": %d, '
      .. '"threads": [%s]}\n',
    total.sent, total.answered, total.ok, (finished or 0) - (started or 0),
    table.concat(status_parts, ", "),
    errors.connect, errors.read, errors.write, errors.status, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    summary.requests, table.concat(per_thread, ", ")
  ))
  out:close()
end
