-- POST a fixed JSON body: `POST /todos` and `POST /auth/login`.
--
-- wrk ... -s post_json.lua URL -- BODY [TOKEN]
--
-- The request is static (no request() function), so wrk formats it once after init() and the
-- client costs as little per request as for a plain GET: the figures compare with the ceiling.
-- The body is JSON-encoded by the Python side, which knows how to quote.

function init(args)
   wrk.method = "POST"
   wrk.body = args[1]
   wrk.headers["Content-Type"] = "application/json"
   if args[2] ~= nil and args[2] ~= "" then
      wrk.headers["Authorization"] = "Bearer " .. args[2]
   end
end
