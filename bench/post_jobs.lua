-- wrk scenario: POST /api/email/ with a job of N recipients, with an API key, optionally pausing
-- between a response and the next request on each connection (wrk's delay()), which paces the rate.
-- Each pause is drawn between 0.5 and 1.5 times PAUSE_MS, so that connections do not fire in step.
-- RECIPIENTS=0 sends GET /healthz instead: the floor of the path through nginx and gunicorn.
--
--   wrk -t2 -c8 -d10s -s bench/post_jobs.lua http://127.0.0.1:PORT -- API_KEY [RECIPIENTS=100] [PAUSE_MS=0]
--
-- done() prints one JSON line of figures for bench/load.py (latencies in microseconds).

local pause = 0

function init(args)
   local key, count = args[1], tonumber(args[2] or "100")
   pause = tonumber(args[3] or "0")
   local recipients = {}
   for i = 1, count do
      recipients[i] = string.format('"load%d@example%d.com"', i, i % 10)
   end
   wrk.headers["Authorization"] = "Bearer " .. key
   if count == 0 then
      wrk.path = "/healthz"
      return
   end
   wrk.method = "POST"
   wrk.path = "/api/email/"
   wrk.headers["Content-Type"] = "application/json"
   wrk.body = '{"recipients": [' .. table.concat(recipients, ", ") ..
      '], "subject": "Load", "content": "Hello from wrk.", "template": "default"}'
end

function delay()
   return pause * (0.5 + math.random())
end

function done(summary, latency, requests)
   local errors = summary.errors
   io.write(string.format(
      '{"requests": %d, "duration_us": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
      '"status_errors": %d, "timeouts": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, ' ..
      '"mean_us": %.0f}\n',
      summary.requests, summary.duration, errors.connect, errors.read, errors.write, errors.status,
      errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
      latency.mean))
end
