-- wrk script for tests/bench/purchases.mjs: POST /api/v1/tickets/purchase
-- with tok_ok, a fresh Idempotency-Key per request and the users' tokens in
-- turn; counts the 201 answers.
--   wrk -s purchases.lua URL -- TOKENS_FILE RUN_NONCE
local threads = {}
local counter = 1

function setup(thread)
   thread:set("tid", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   tokens = {}
   for line in io.lines(args[1]) do
      if #line > 0 then table.insert(tokens, line) end
   end
   nonce = args[2] or "run"
   n = 0
   ok = 0
   other = 0
   wrk.method = "POST"
   wrk.path = "/api/v1/tickets/purchase"
   wrk.body = '{"offer_id":1,"payment_token":"tok_ok"}'
end

function request()
   n = n + 1
   local headers = {
      ["Content-Type"] = "application/json",
      ["Authorization"] = "Bearer " .. tokens[(n % #tokens) + 1],
      ["Idempotency-Key"] = string.format("%s-%d-%d", nonce, tid, n),
   }
   return wrk.format(nil, nil, headers)
end

function response(status, headers, body)
   if status == 201 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
   local total_ok, total_other = 0, 0
   for _, t in ipairs(threads) do
      total_ok = total_ok + t:get("ok")
      total_other = total_other + t:get("other")
   end
   io.write(string.format("WRK ok=%d other=%d seconds=%.3f p50_ms=%.2f p99_ms=%.2f\n",
                          total_ok, total_other, summary.duration / 1e6,
                          latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
