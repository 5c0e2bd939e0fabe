-- wrk script: POST /api/admin/charges with a fresh Idempotency-Key per request, a random
-- user among the seeded ones and a random kind (ttp, edit, image; default cost).
-- BENCH_ADMIN_TOKEN, BENCH_USERS, BENCH_RUN (unique per run: keys never repeat) and
-- BENCH_SEED come from bench/run.py. Status counts, the number of replayed answers
-- (must be 0) and the p50/p99 latency (microseconds) are written at the end.
local counter = 0
local users = tonumber(os.getenv("BENCH_USERS") or "1000")
local token = os.getenv("BENCH_ADMIN_TOKEN")
local run = os.getenv("BENCH_RUN") or "run"
local kinds = { "ttp", "ttp", "ttp", "ttp", "ttp", "edit", "edit", "edit", "image", "image" }
local threads = {}

-- thread_id is a global set per thread by setup(): a chunk-level `local` would hide it.
function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  replayed = 0
  math.randomseed(tonumber(os.getenv("BENCH_SEED") or "1") * 7919 + thread_id)
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"userId": %d, "kind": "%s"}', math.random(1, users), kinds[math.random(#kinds)]
  )
  local headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = string.format("%s-%d-%d", run, thread_id, counter),
  }
  return wrk.format("POST", "/api/admin/charges", headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if headers["Idempotent-Replayed"] or headers["idempotent-replayed"] then
    replayed = replayed + 1
  end
end

function done(summary, latency, requests)
  local totals = {}
  local replays = 0
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
    replays = replays + thread:get("replayed")
  end
  for status, count in pairs(totals) do
    io.write(string.format("STATUS %d %d\n", status, count))
  end
  io.write(string.format("REPLAYED %d\n", replays))
  io.write(string.format("LATENCY p50=%d p99=%d\n", latency:percentile(50), latency:percentile(99)))
end
