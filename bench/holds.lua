-- wrk script: a hold's life, POST /api/admin/holds (a fresh Idempotency-Key, a random
-- seeded user and kind, the kind's default cost) then POST .../settle of a hold this
-- thread made (cost 0.5: the rest goes back), alternating as holds come back. Same
-- environment and output as charges.lua (settles are the 200s).
local counter = 0
local users = tonumber(os.getenv("BENCH_USERS") or "1000")
local token = os.getenv("BENCH_ADMIN_TOKEN")
local run = os.getenv("BENCH_RUN") or "run"
local kinds = { "ttp", "ttp", "ttp", "ttp", "ttp", "edit", "edit", "edit", "image", "image" }
local threads = {}

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  replayed = 0
  pending = {}
  math.randomseed(tonumber(os.getenv("BENCH_SEED") or "1") * 7919 + thread_id)
end

function request()
  counter = counter + 1
  local headers = {
    ["Authorization"] = "Bearer " .. token,
    ["Content-Type"] = "application/json",
  }
  local hold_id = table.remove(pending)
  if hold_id then
    return wrk.format("POST", "/api/admin/holds/" .. hold_id .. "/settle", headers, '{"cost": 0.5}')
  end
  headers["Idempotency-Key"] = string.format("%s-%d-%d", run, thread_id, counter)
  local body = string.format(
    '{"userId": %d, "kind": "%s"}', math.random(1, users), kinds[math.random(#kinds)]
  )
  return wrk.format("POST", "/api/admin/holds", headers, body)
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if headers["Idempotent-Replayed"] or headers["idempotent-replayed"] then
    replayed = replayed + 1
  end
  if status == 201 then
    local hold_id = string.match(body, '"holdId":(%d+)')
    if hold_id then
      table.insert(pending, hold_id)
    end
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
