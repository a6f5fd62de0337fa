-- POST /api/v1/agents with a unique name per request; the token comes from BENCH_TOKEN.
local token = os.getenv("BENCH_TOKEN")
local run = os.getenv("BENCH_RUN")  -- distinct per wrk run: names never collide
local counter = 0

request = function()
  counter = counter + 1
  local body = string.format(
    '{"name": "bench-%s-%d", "provider": "echo", "model": "echo", "temperature": 0.5}', run, counter)
  return wrk.format("POST", "/api/v1/agents",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end
