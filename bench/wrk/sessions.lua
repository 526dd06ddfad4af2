-- wrk script for bench/ratelimit_memory.py: every request carries a fresh
-- Mcp-Session-Id. Each thread stops once it has $BENCH_PER_THREAD answers,
-- so a run sends (about) threads x $BENCH_PER_THREAD calls.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
local body = f:read("*a")
f:close()
local prefix = os.getenv("BENCH_PREFIX") or "s"
local quota = tonumber(os.getenv("BENCH_PER_THREAD") or "0")
local same = os.getenv("BENCH_SAME_SESSION") == "1"

local threads = {}
local counter = 1
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local n, answered = 0, 0
local headers = {
  ["Content-Type"] = "application/json",
  ["Accept"] = "application/json, text/event-stream",
  ["Authorization"] = "Bearer bench-token",
}

function request()
  n = n + 1
  if same then
    headers["Mcp-Session-Id"] = prefix .. "-same"
  else
    headers["Mcp-Session-Id"] = string.format("%s-%d-%d", prefix, tid, n)
  end
  return wrk.format("POST", nil, headers, body)
end

function response(status, hdrs, resp_body)
  answered = answered + 1
  if quota > 0 and answered >= quota then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
