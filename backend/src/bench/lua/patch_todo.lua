-- PATCH /todos/{id} over a rotating set of todos, each time with a new title, no If-Match.
--
-- wrk ... -s patch_todo.lua URL -- TOKEN ID [ID ...]
--
-- Rotating spreads the writes over many rows, as real users would, instead of making every
-- connection fight over one row; without If-Match every PATCH should succeed (200), so any
-- non-2xx is a real failure and not an expected 412.

local ids = {}
local counter = 0
local headers = {}

function init(args)
   headers["Authorization"] = "Bearer " .. args[1]
   headers["Content-Type"] = "application/json"
   for i = 2, #args do
      ids[#ids + 1] = args[i]
   end
   if #ids == 0 then
      error("patch_todo.lua needs at least one todo id after the token")
   end
end

function request()
   counter = counter + 1
   local id = ids[(counter % #ids) + 1]
   local body = string.format('{"title": "bench title %d"}', counter)
   return wrk.format("PATCH", "/todos/" .. id, headers, body)
end
