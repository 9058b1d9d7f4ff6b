#!/usr/bin/env bash
# make bench-load: builds m2mauth, and for each signing algorithm starts a
# throwaway server (SQLite in a temporary directory), creates an API and a
# client through the CLI, loads the server with `m2mauth bench run` (wrk)
# and prints the report, then stops the server.
#
# Settings (environment variables):
#   ALGS         signing algorithms, in turn (default "EdDSA RS256")
#   SCENARIOS    bench run scenarios (default: bench run's own set)
#   DURATION     measured seconds per scenario (default 10s)
#   WARMUP       unmeasured seconds before each scenario (default 2s)
#   CONNECTIONS  wrk connections (default 16)
#   THREADS      wrk threads (default 2)
#   ADDR         the server's address (default 127.0.0.1:18080)
#   METRICS_ADDR its metrics listener (default 127.0.0.1:18090)
#   BIN          measure this m2mauth binary instead of building one
#                (e.g. bin/m2mauth from make build, the production build)
#   OUT          directory for the reports (default: a temporary one, printed)
set -euo pipefail
cd "$(dirname "$0")/../.."

ALGS="${ALGS:-EdDSA RS256}"
SCENARIOS="${SCENARIOS:-}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNECTIONS="${CONNECTIONS:-16}"
THREADS="${THREADS:-2}"
ADDR="${ADDR:-127.0.0.1:18080}"
METRICS_ADDR="${METRICS_ADDR:-127.0.0.1:18090}"
GO="${GO:-go}"
# A throwaway server and its own client: none of the caller's settings.
unset M2MAUTH_SERVER M2MAUTH_CLIENT_ID M2MAUTH_CLIENT_SECRET M2MAUTH_ENV M2MAUTH_DATABASE M2MAUTH_MASTER_KEY M2MAUTH_DATA_DIR

if ! command -v wrk >/dev/null 2>&1; then
  echo "bench-load: wrk is not installed (Debian/Ubuntu: apt-get install wrk; Fedora: dnf install wrk; macOS: brew install wrk)" >&2
  exit 1
fi
command -v curl >/dev/null 2>&1 || { echo "bench-load: curl is needed" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/m2mauth-bench-load.XXXXXX")"
OUT="${OUT:-$work}"
mkdir -p "$OUT"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work/data-"* "$work/m2mauth"
}
trap cleanup EXIT

if [ -n "${BIN:-}" ]; then
  bin="$BIN"
else
  bin="$work/m2mauth"
  echo "bench-load: building $bin"
  "$GO" build -o "$bin" ./cmd/m2mauth
fi
echo "bench-load: $("$bin" version 2>/dev/null | head -n 1)"

scenario_flags=()
for s in $SCENARIOS; do scenario_flags+=(--scenario "$s"); done

for alg in $ALGS; do
  data="$work/data-$alg"
  mkdir -p "$data"
  "$bin" serve --addr "$ADDR" --issuer "http://$ADDR" --data-dir "$data" --signing-alg "$alg" \
    --metrics-addr "$METRICS_ADDR" >"$work/server-$alg.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    curl -fsS -o /dev/null "http://$ADDR/.well-known/jwks.json" 2>/dev/null && break
    kill -0 "$server_pid" 2>/dev/null || { echo "bench-load: the server stopped:" >&2; tail -n 20 "$work/server-$alg.log" >&2; exit 1; }
    sleep 0.1
  done
  curl -fsS -o /dev/null "http://$ADDR/.well-known/jwks.json" \
    || { echo "bench-load: the server did not come up on $ADDR" >&2; exit 1; }

  export M2MAUTH_DATA_DIR="$data"
  "$bin" api create --identifier https://bench.example.com --name Bench --scopes "bench:read" >/dev/null
  eval "$("$bin" client create --name bench --audience https://bench.example.com --scopes bench:read \
    --introspect https://bench.example.com --export)"
  unset M2MAUTH_DATA_DIR

  echo
  echo "## m2mauth, $alg (SQLite)"
  echo
  "$bin" bench run --url "http://$ADDR" --metrics "http://$METRICS_ADDR/metrics" \
    --duration "$DURATION" --warmup "$WARMUP" --connections "$CONNECTIONS" --threads "$THREADS" \
    "${scenario_flags[@]}" --out "$OUT/load-$alg.md"
  unset M2MAUTH_CLIENT_ID M2MAUTH_CLIENT_SECRET

  kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
done
echo
echo "bench-load: reports in $OUT (load-<alg>.md)"
