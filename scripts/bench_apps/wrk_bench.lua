-- wrk script for scripts/bench.py: GET or POST /api/v1/agents with a bearer token.
--   BENCH_METHOD  GET (list the agents) or POST (create one, a new name every request)
--   BENCH_TOKEN   the access token
--   BENCH_RUN     a label distinct per wrk run, so created names never collide
-- Every reply's status is checked; done() prints one BENCH_RESULT line of JSON.
local method = os.getenv("BENCH_METHOD") or "GET"
local token = os.getenv("BENCH_TOKEN") or ""
local run = os.getenv("BENCH_RUN") or "run"
local threads = {}
local counter = 0
local list_request = nil

non2xx = 0 -- global: done() reads it from every thread with thread:get

function setup(thread)
  table.insert(threads, thread)
  thread:set("thread_id", #threads)
end

function init(args)
  list_request = wrk.format("GET", "/api/v1/agents", { ["Authorization"] = "Bearer " .. token })
end

function request()
  if method == "GET" then
    return list_request
  end
  counter = counter + 1
  local body = string.format(
    '{"name": "bench-%s-%d-%d", "provider": "echo", "model": "echo", "temperature": 0.5}',
    run, thread_id or 0, counter)
  return wrk.format("POST", "/api/v1/agents",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token }, body)
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %.0f, "non2xx": %d, "p50_us": %.1f, ' ..
    '"p99_us": %.1f, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"timeouts": %d}\n',
    summary.requests, summary.duration, bad, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.timeout))
end
