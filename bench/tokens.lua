-- wrk script: every request carries its own pre-minted bearer token (tokens are single-use).
-- Arguments (after --): TOKEN_FILE THREADS METHOD. Thread k sends lines k, k+THREADS, ... of the file;
-- with an empty TOKEN_FILE it sends requests without a token. done() prints one JSON line.
local threads, counter = {}, 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

-- Globals of a thread's Lua state, read back by done() through thread:get.
statuses, exhausted = {}, 0
local tokens, index, method = {}, 0, "POST"

function init(args)
  local path, nthreads = args[1], tonumber(args[2] or "1")
  method = args[3] or "POST"
  if path ~= nil and path ~= "" then
    local line_no = 0
    for line in io.lines(path) do
      if line_no % nthreads == id then tokens[#tokens + 1] = line end
      line_no = line_no + 1
    end
  end
end

function request()
  local headers = {["Content-Type"] = "application/json"}
  if #tokens > 0 then
    index = index + 1
    if index > #tokens then
      -- Out of tokens: the replayed token answers 401, which the bench reports as invalid.
      exhausted = exhausted + 1
      index = #tokens
    end
    headers["Authorization"] = "Bearer " .. tokens[index]
  end
  if method == "GET" then return wrk.format("GET", nil, headers, nil) end
  return wrk.format("POST", nil, headers, "{}")
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts, out_of_tokens = {}, 0
  for _, thread in ipairs(threads) do
    out_of_tokens = out_of_tokens + thread:get("exhausted")
    for code, n in pairs(thread:get("statuses")) do
      counts[code] = (counts[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(counts) do parts[#parts + 1] = string.format('"%d": %d', code, n) end
  local e = summary.errors
  io.write(string.format(
    '\n{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "errors": %d, '
      .. '"exhausted": %d, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, out_of_tokens, table.concat(parts, ", ")))
end
