-- wrk: POST /v1/payments of 1 minor unit against a random invoice, each with its own
-- Idempotency-Key, so the request takes the full write path (auth, idempotency, row lock, payment,
-- invoice, ledger, balance, audit, stored response, commit).
local invoices = {}
local key = os.getenv("BENCH_KEY")
for line in io.lines(os.getenv("BENCH_INVOICES")) do invoices[#invoices + 1] = line end
local counter = 0
local thread_id = 0

function setup(thread)
  thread_id = thread_id + 1
  thread:set("id", thread_id)
end

function request()
  counter = counter + 1
  local invoice = invoices[math.random(#invoices)]
  local body = '{"invoice":"' .. invoice .. '","amount":1,"currency":"usd"}'
  local headers = {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "bench-" .. tostring(id) .. "-" .. tostring(counter) .. "-" .. tostring(math.random(1e9)),
  }
  return wrk.format("POST", "/v1/payments", headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.stderr:write(string.format("non-2xx or socket errors: %d\n", errors))
end
