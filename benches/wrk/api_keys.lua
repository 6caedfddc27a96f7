-- wrk script for benches/compare.sh: every request carries one of USERS api
-- keys (x-api-key: k_bench_<n>), cycling, like the k6 scripts. The requests
-- are formatted once at start-up so the loop costs wrk nothing extra.
--
--   USERS=1000 wrk -t1 -c64 -d10s -s benches/wrk/api_keys.lua http://127.0.0.1:18080/api/items/1

local users = tonumber(os.getenv("USERS") or "1000")
local header = os.getenv("KEY_HEADER") or "x-api-key"
local prefix = os.getenv("KEY_PREFIX") or "k_bench_"
local requests = {}
local next_user = 0

function init(args)
  for u = 0, users - 1 do
    local headers = {}
    if header ~= "" then
      headers[header] = prefix .. u
    end
    requests[u] = wrk.format("GET", nil, headers)
  end
end

function request()
  local r = requests[next_user]
  next_user = (next_user + 1) % users
  return r
end
