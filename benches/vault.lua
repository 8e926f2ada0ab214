-- wrk script for benches/vault_load.sh. MODE (environment) picks the request:
--   reveal: POST /v1/secrets/bench%2Fdb/reveal as an agent (the bench removes the
--           approval obligation from the reveal policy first), paced by DELAY_MS
--           per connection so that the offered rate is fixed;
--   put:    PUT /v1/secrets/bench%2Fput-N (a new version of one of 64 names) as
--           an admin, unpaced.
-- Counts non-2xx answers and prints the latency percentiles for vault_load.sh.

local token = os.getenv("WRIT_TOKEN")
local mode = os.getenv("MODE") or "reveal"
local delay_ms = tonumber(os.getenv("DELAY_MS") or "0")
if token == nil or token == "" then
    error("WRIT_TOKEN is not set")
end

wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

local threads = {}
local counter = 0

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    answers = 0
    not_ok = 0
end

function request()
    if mode == "put" then
        counter = counter + 1
        local path = string.format("/v1/secrets/bench%%2Fput-%d", counter % 64)
        return wrk.format("PUT", path, nil, '{"value":"a 64-byte value ........................................."}')
    end
    return wrk.format("POST", "/v1/secrets/bench%2Fdb/reveal", nil, "{}")
end

function delay()
    return delay_ms
end

function response(status, headers, body)
    answers = answers + 1
    if status < 200 or status > 299 then
        not_ok = not_ok + 1
    end
end

function done(summary, latency, requests)
    local answers_total, not_ok_total = 0, 0
    for _, thread in ipairs(threads) do
        answers_total = answers_total + thread:get("answers")
        not_ok_total = not_ok_total + thread:get("not_ok")
    end
    io.write(string.format("lua answers: %d\n", answers_total))
    io.write(string.format("lua not 2xx: %d\n", not_ok_total))
    io.write(string.format("lua p50 us: %d\n", latency:percentile(50)))
    io.write(string.format("lua p99 us: %d\n", latency:percentile(99)))
    io.write(string.format("lua max us: %d\n", latency.max))
end
