#!/usr/bin/env bash
# compare.sh: m2mauth (RS256, EdDSA; SQLite) against node-oidc-provider 9
# (RS256, ES256) under the same wrk load, interleaved: each round starts
# each server in turn, runs `m2mauth bench run --scenario token` against it
# (CPU and RSS from /proc/<pid>), and stops it. Needs wrk, Node.js and npm.
#
# Settings: ROUNDS (2), DURATION (10s), WARMUP (2s), CONNECTIONS (16),
# THREADS (2), PORT (m2mauth, 18080), NODE_PORT (18115), BIN (an m2mauth
# binary to measure instead of a `go build` one), OUT (report directory).
set -euo pipefail
cd "$(dirname "$0")/../.."
unset M2MAUTH_SERVER M2MAUTH_CLIENT_ID M2MAUTH_CLIENT_SECRET M2MAUTH_ENV M2MAUTH_DATABASE M2MAUTH_MASTER_KEY M2MAUTH_DATA_DIR

ROUNDS="${ROUNDS:-2}"
DURATION="${DURATION:-10s}"
WARMUP="${WARMUP:-2s}"
CONNECTIONS="${CONNECTIONS:-16}"
THREADS="${THREADS:-2}"
PORT="${PORT:-18080}"
NODE_PORT="${NODE_PORT:-18115}"
GO="${GO:-go}"
for tool in wrk node npm curl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "compare: $tool is not installed" >&2; exit 1; }
done

work="$(mktemp -d "${TMPDIR:-/tmp}/m2mauth-compare.XXXXXX")"
OUT="${OUT:-$work}"
mkdir -p "$OUT"
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$work/data" "$work/m2mauth"
}
trap cleanup EXIT

if [ -n "${BIN:-}" ]; then bin="$BIN"; else bin="$work/m2mauth"; "$GO" build -o "$bin" ./cmd/m2mauth; fi
(cd scripts/bench/node-oidc-provider && [ -d node_modules/oidc-provider ] || npm install --no-audit --no-fund >/dev/null)

wait_up() { # url
  for _ in $(seq 1 150); do
    curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 1
}

stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }

bench() { # name, then bench run flags
  local name="$1"; shift
  echo "compare: $name" >&2
  "$bin" bench run --scenario token --scope bench:read --duration "$DURATION" --warmup "$WARMUP" \
    --connections "$CONNECTIONS" --threads "$THREADS" --pid "$pid" --out "$OUT/$name.md" "$@" >/dev/null
}

for round in $(seq 1 "$ROUNDS"); do
  for target in m2mauth:RS256 node:RS256 m2mauth:EdDSA node:ES256; do
    server="${target%%:*}"; alg="${target#*:}"; name="$server-$alg-$round"
    if [ "$server" = m2mauth ]; then
      rm -rf "$work/data"; mkdir -p "$work/data"
      "$bin" serve --addr "127.0.0.1:$PORT" --data-dir "$work/data" --signing-alg "$alg" >"$work/$name.log" 2>&1 &
      pid=$!
      wait_up "http://127.0.0.1:$PORT/.well-known/jwks.json" || { echo "compare: m2mauth did not start" >&2; cat "$work/$name.log" >&2; exit 1; }
      export M2MAUTH_DATA_DIR="$work/data"
      "$bin" api create --identifier https://bench.example.com --name Bench --scopes bench:read >/dev/null
      eval "$("$bin" client create --name bench --audience https://bench.example.com --scopes bench:read --export)"
      unset M2MAUTH_DATA_DIR
      bench "$name" --url "http://127.0.0.1:$PORT"
      unset M2MAUTH_CLIENT_ID M2MAUTH_CLIENT_SECRET
    else
      (cd scripts/bench/node-oidc-provider && exec env ALG="$alg" PORT="$NODE_PORT" node server.mjs) >"$work/$name.log" 2>&1 &
      pid=$!
      wait_up "http://127.0.0.1:$NODE_PORT/jwks" || { echo "compare: node-oidc-provider did not start" >&2; cat "$work/$name.log" >&2; exit 1; }
      bench "$name" --url "http://127.0.0.1:$NODE_PORT" --token-path /token --client-id bench --client-secret bench-secret
    fi
    stop
  done
done

echo
echo "| run | tokens/s | p50 ms | p90 ms | p99 ms | max ms | non-2xx | socket errors | server CPU s / 1k tokens | server peak RSS MB |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for round in $(seq 1 "$ROUNDS"); do
  for target in m2mauth-RS256 node-RS256 m2mauth-EdDSA node-ES256; do
    sed -n "s/^| token |/| $target ($round) |/p" "$OUT/$target-$round.md"
  done
done
echo "compare: reports in $OUT" >&2
