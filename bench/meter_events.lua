-- wrk: POST /v1/meter_events, batches of BENCH_BATCH events (1,000 by default), each event with
-- an identifier of its own (a nonce per run, the thread, a counter), a customer taken in turn
-- from BENCH_CUSTOMERS, a timestamp in the minute before the run started (a live stream: events
-- a few seconds old) and a `tokens` value: every event is new, so each request takes the whole
-- ingestion path (claim, store, rollups, commit).
local key = os.getenv("BENCH_KEY")
local batch = tonumber(os.getenv("BENCH_BATCH") or "1000")
local customers = {}
for line in io.lines(os.getenv("BENCH_CUSTOMERS")) do customers[#customers + 1] = line end
local nonce = io.open("/proc/sys/kernel/random/uuid"):read("*l")
local now = tonumber(os.getenv("BENCH_NOW"))
local thread_id = 0
local counter = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
end

function request()
  local parts = {}
  for i = 1, batch do
    counter = counter + 1
    parts[i] = string.format(
      '{"identifier":"%s-%d-%d","event_name":"api_call","customer":"%s","timestamp":%d,"properties":{"tokens":%d,"model":"m%d"}}',
      nonce, id, counter, customers[(counter % #customers) + 1], now - (counter % 60), counter % 1000, counter % 4)
  end
  local body = '{"events":[' .. table.concat(parts, ",") .. ']}'
  return wrk.format("POST", "/v1/meter_events", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
  }, body)
end

function response(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. ": " .. body:sub(1, 300) .. "\n")
  end
end
