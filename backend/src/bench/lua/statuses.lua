-- Appended to a run's script by `--status-counts`: count the responses of each status.
--
-- Each wrk thread counts in its own Lua state; done() runs in the main state and collects the
-- counts through the thread handles kept by setup(), printing one `bench-status CODE COUNT`
-- line each for the Python side. Off by default: a response() hook makes wrk hand every
-- response to Lua, which costs client CPU on a machine where the client shares the cores.

local bench_threads = {}
bench_statuses = {}

function setup(thread)
   bench_threads[#bench_threads + 1] = thread
end

function response(status, headers, body)
   bench_statuses[status] = (bench_statuses[status] or 0) + 1
end

function done(summary, latency, requests)
   for _, thread in ipairs(bench_threads) do
      local counts = thread:get("bench_statuses") or {}
      for status, count in pairs(counts) do
         io.write(string.format("bench-status %d %d\n", status, count))
      end
   end
end
