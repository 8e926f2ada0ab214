-- wrk script for benches/load.sh: every request is `POST /v1/authorize` with an
-- agent's API key (from WRIT_TOKEN), asking to read a work item of its own
-- workspace, which the default policies allow.
--
-- Each thread counts the answers that are not 200 and the 200s whose body is not
-- an allow; `done` prints the totals on lines `load.sh` reads back.

local token = os.getenv("WRIT_TOKEN")
if token == nil or token == "" then
    error("WRIT_TOKEN is not set")
end

wrk.method = "POST"
wrk.path = "/v1/authorize"
wrk.body = '{"action":"read","resource":{"type":"WorkItem","id":"w1"}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. token

local threads = {}

function setup(thread)
    table.insert(threads, thread)
end

function init(args)
    answers = 0
    not_ok = 0
    not_allow = 0
end

function response(status, headers, body)
    answers = answers + 1
    if status ~= 200 then
        not_ok = not_ok + 1
    elseif not string.find(body, '"decision":"allow"', 1, true) then
        not_allow = not_allow + 1
    end
end

function done(summary, latency, requests)
    local answers_total, not_ok_total, not_allow_total = 0, 0, 0
    for _, thread in ipairs(threads) do
        answers_total = answers_total + thread:get("answers")
        not_ok_total = not_ok_total + thread:get("not_ok")
        not_allow_total = not_allow_total + thread:get("not_allow")
    end
    io.write(string.format("lua answers: %d\n", answers_total))
    io.write(string.format("lua not 200: %d\n", not_ok_total))
    io.write(string.format("lua 200 but not allow: %d\n", not_allow_total))
    io.write(string.format("lua p50 us: %d\n", latency:percentile(50)))
    io.write(string.format("lua p99 us: %d\n", latency:percentile(99)))
    io.write(string.format("lua p99.9 us: %d\n", latency:percentile(99.9)))
    io.write(string.format("lua max us: %d\n", latency.max))
end
