-- wrk script: POST the body in $BENCH_BODY with the MCP headers, and print
-- one machine-readable summary line (BENCH_JSON {...}) at the end.
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "application/json, text/event-stream"
wrk.headers["Authorization"] = "Bearer bench-token"
wrk.headers["Mcp-Session-Id"] = "bench-session"

-- Paced runs (BENCH_DELAY_MS set): each connection waits that long before
-- its next request, so every configuration sees about the same, moderate
-- rate and the latency measured is the proxy's, not a queue's.
local pace = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if pace and pace > 0 then
  function delay()
    return pace
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout))
end
