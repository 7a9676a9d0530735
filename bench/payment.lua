-- wrk: POST /v1/payments of 1 minor unit against a random invoice, each with its own
-- Idempotency-Key, so the request takes the full write path (auth, idempotency, row lock, payment,
-- invoice, ledger, balance, audit, stored response, commit).
local invoices = {}
local key = os.getenv("BENCH_KEY")
for line in io.lines(os.getenv("BENCH_INVOICES")) do invoices[#invoices + 1] = line end
local counter = 0
local thread_id = 0
-- wrk's random numbers repeat from run to run: a nonce per run keeps the keys of this run from
-- being those of an earlier one (which would be answered from the idempotency store).
local nonce = io.open("/proc/sys/kernel/random/uuid"):read("*l")
-- With BENCH_RATE (requests a second, all connections together), each connection waits its turn.
local rate = tonumber(os.getenv("BENCH_RATE") or "")
local conns = tonumber(os.getenv("BENCH_CONNS") or "1")

function delay()
  if rate then
    return conns * 1000 / rate
  end
  return 0
end

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
    ["Idempotency-Key"] = "bench-" .. nonce .. "-" .. tostring(id) .. "-" .. tostring(counter),
  }
  return wrk.format("POST", "/v1/payments", headers, body)
end

function done(summary, latency, requests)
  local errors = summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
  io.stderr:write(string.format("non-2xx or socket errors: %d\n", errors))
end
