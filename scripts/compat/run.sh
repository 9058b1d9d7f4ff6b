#!/usr/bin/env bash
# Runs the compatibility clients (Node.js with axios, an Express resource
# server with jsonwebtoken + jwks-rsa, Python on the standard library)
# against a freshly started m2mauth. Needs node, npm and python3; installs
# the npm packages from package-lock.json.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_for() { for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "compat: $1 did not come up" >&2; return 1; }

(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$root" && go build -o "$work/m2mauth" ./cmd/m2mauth)

port="$(free_port)"
base="http://127.0.0.1:$port"
"$work/m2mauth" serve --addr "127.0.0.1:$port" --data-dir "$work/data" --log-level warn > "$work/server.log" 2>&1 &
pids+=($!)
wait_for "$base/readyz"

m2m() { "$work/m2mauth" "$@" --data-dir "$work/data"; }
m2m api create --identifier https://api.example.com --name Orders --scopes "orders:read" > /dev/null
m2m api create --identifier https://api.bank.example --name Banking --scopes "banking/read banking/write" > /dev/null
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
atm_json="$(m2m client create --name atm --audience https://api.example.com --scopes orders:read --refresh-tokens --json)"
machine_json="$(m2m client create --name machine --audience https://api.example.com --scopes orders:read --json)"
bank_json="$(m2m client create --name bank --audience https://api.bank.example --scopes "banking/read banking/write" --json)"

echo "== Node.js (axios): ATM surface, seed 002"
atm_out="$(node "$here/atm-client.js" "$base" "$(field client_id <<<"$atm_json")" "$(field client_secret <<<"$atm_json")")"
head -n 1 <<<"$atm_out"            # the result line; the last line is the token, not printed
token="$(tail -n 1 <<<"$atm_out")"

echo "== Node.js (axios): machine-token surface, seed 000"
node "$here/machine-client.js" "$base" "$(field client_id <<<"$machine_json")" "$(field client_secret <<<"$machine_json")"

echo "== Python (standard library): seeds 000 and 001"
python3 "$here/client.py" "$base" "$(field client_id <<<"$machine_json")" "$(field client_secret <<<"$machine_json")" \
  "$(field client_id <<<"$bank_json")" "$(field client_secret <<<"$bank_json")"

echo "== Express + jsonwebtoken + jwks-rsa resource server, seed 003"
rsport="$(free_port)"
node "$here/resource-server.js" "$rsport" "$base" https://api.example.com > "$work/rs.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q listening "$work/rs.log" && break; sleep 0.1; done
ok="$(curl -s -w ' %{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$rsport/api/data")"
case "$ok" in *'"message":"Authenticated successfully"'*' 200') echo "resource server accepted the token: $ok" ;; *) echo "compat: resource server refused a valid token: $ok" >&2; exit 1 ;; esac
# A forgery: the same token with its subject changed, signature kept.
forged="$(python3 - "$token" <<'PY'
import base64, json, sys
h, p, s = sys.argv[1].split(".")
claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
claims["sub"] = "someone-else"
p = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
print(f"{h}.{p}.{s}")
PY
)"
bad="$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $forged" "http://127.0.0.1:$rsport/api/data")"
[ "$bad" = 401 ] || { echo "compat: resource server accepted a forged token ($bad)" >&2; exit 1; }
none="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$rsport/api/data")"
[ "$none" = 401 ] || { echo "compat: resource server accepted no token ($none)" >&2; exit 1; }
echo "resource server refused a forged token and a missing one: ok"

echo "compat: 4 passed, 0 failed"
