-- Mixed authenticated traffic for the load scenario (bench/load_bench.py).
--
--   wrk -t1 -c16 -d180s -s bench/load.lua http://127.0.0.1:PORT -- PLAN_FILE
--
-- PLAN_FILE holds one request per line: "PATH<TAB>API_KEY". Each wrk thread walks the plan
-- round-robin from a random start. At the end one JSON line is printed with the
-- request count, every answer outside 2xx (by status) and the latency percentiles.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  local plan = {}
  local file = assert(io.open(args[1], "r"))
  for line in file:lines() do
    local path, key = line:match("^(%S+)\t(%S+)$")
    if path then
      plan[#plan + 1] = wrk.format("GET", path, { ["x-api-key"] = key })
    end
  end
  file:close()
  assert(#plan > 0, "empty load plan")
  requests_plan = plan
  position = math.random(#plan)
  non2xx = 0
  by_status = {}
end

function request()
  position = position % #requests_plan + 1
  return requests_plan[position]
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    by_status[status] = (by_status[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local bad = 0
  local statuses = {}
  for _, thread in ipairs(threads) do
    bad = bad + thread:get("non2xx")
    for status, count in pairs(thread:get("by_status")) do
      statuses[#statuses + 1] = string.format('"%d": %d', status, count)
    end
  end
  local errors = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "non2xx": %d, "by_status": {%s}, '
      .. '"connect": %d, "read": %d, "write": %d, "timeout": %d, '
      .. '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, bad, table.concat(statuses, ", "),
    errors.connect, errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean
  ))
end
