-- wrk script: GET /api/users/me/usage with a random valid API key per request.
-- BENCH_KEYS names a file of keys, one a line (loaded once per thread, in init);
-- BENCH_HEADER, when set, is the header they go in instead of X-Api-Key (Cookie, with
-- a file of session cookies);
-- BENCH_PATH, when set, is the path to get instead (the usage history, with its query);
-- BENCH_SEED varies the random sequence between runs. Status counts and the p50/p99
-- latency (microseconds) are written at the end for bench/run.py to read.
local keys = {}
local threads = {}
local path = os.getenv("BENCH_PATH") or "/api/users/me/usage"
local header = os.getenv("BENCH_HEADER") or "X-Api-Key"

function setup(thread)
  thread:set("thread_id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  for line in io.lines(os.getenv("BENCH_KEYS")) do
    if #line > 0 then
      keys[#keys + 1] = line
    end
  end
  math.randomseed(tonumber(os.getenv("BENCH_SEED") or "1") * 7919 + thread_id)
end

function request()
  return wrk.format("GET", path, { [header] = keys[math.random(#keys)] })
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
