-- wrk script of `m2mauth bench run` (embedded in the binary and written to a
-- temporary directory for each run). One script serves every scenario: the
-- Go side precomputes, per credential, the part of the request that varies
-- (an Authorization header value or a body) and writes them to a file of
-- fixed-width records, padded with spaces (a record ends with its last non-space); each request reads one record
-- picked uniformly at random, so memory stays flat for a million clients.
--
-- Arguments (after "--" on wrk's command line):
--   method path content-type kind records-file record-width record-count const
-- kind: "header"  the record is the Authorization header, const the body
--                 (never a secret: wrk's command line is public)
--       "body"    the record is the body (no Authorization header)
--       "static"  one request for every call: with no records, a GET
--                 without credentials; with two, the Authorization header
--                 and the body (introspection)

local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

local method, path, ctype, kind, file, width, count, const
local fixed

function init(args)
  method, path, ctype, kind = args[1], args[2], args[3], args[4]
  width, count, const = tonumber(args[6]), tonumber(args[7]), args[8] or ""
  math.randomseed(os.time() * 1000 + (id or 0) * 7919)
  if count > 0 then
    file = assert(io.open(args[5], "rb"))
  end
  if kind == "static" then
    local headers, body = {}, nil
    if count == 2 then
      headers["Authorization"] = file:read(width):match("^(.*%S)")
      body = file:read(width):match("^(.*%S)")
      file:close()
      file = nil
    end
    if body then headers["Content-Type"] = ctype end
    fixed = wrk.format(method, path, headers, body)
  end
end

local function record()
  file:seek("set", math.random(0, count - 1) * width)
  return file:read(width):match("^(.*%S)")
end

function request()
  if fixed then
    return fixed
  end
  if kind == "header" then
    return wrk.format(method, path, {["Authorization"] = record(), ["Content-Type"] = ctype}, const)
  end
  return wrk.format(method, path, {["Content-Type"] = ctype}, record())
end

-- done prints one line the Go side parses: latencies in microseconds.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'M2MAUTH_BENCH {"duration_us":%d,"requests":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
