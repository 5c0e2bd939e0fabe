-- wrk script: POST /api/admin/charges with a fresh Idempotency-Key per request and a
-- random user among the seeded ones. Status counts are reported at the end.
local counter = 0
local thread_id = 0
local users = tonumber(os.getenv("BENCH_USERS") or "1000")
local token = os.getenv("BENCH_ADMIN_TOKEN")
local run = os.getenv("BENCH_RUN") or "run"
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  math.randomseed(thread_id * 7919)
end

function request()
  counter = counter + 1
  local body = string.format('{"userId": %d, "kind": "image"}', math.random(1, users))
  local headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("%s-%d-%d", run, thread_id, counter),
  }
  return wrk.format("POST", "/api/admin/charges", headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  for status, count in pairs(totals) do
    io.write(string.format("STATUS %d %d\n", status, count))
  end
  io.write(string.format("LATENCY p50=%d p99=%d\n", latency:percentile(50), latency:percentile(99)))
end
