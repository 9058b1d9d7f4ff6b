#!/usr/bin/env bash
# Runs the compatibility clients against freshly started m2mauth servers:
#   - Node.js with axios (machine-token and ATM surfaces), an Express
#     resource server with jsonwebtoken + jwks-rsa, Python on the standard
#     library;
#   - private_key_jwt with openid-client 5 (ES256) and 6 (RS256), and
#     Python Authlib's PrivateKeyJWT (Debian's python3-authlib and
#     python3-requests, for /usr/bin/python3), against a server with the
#     default --max-assertion-lifetime (5 min) and one allowing Authlib's
#     default 3600 s assertions;
#   - sender-constrained tokens with openid-client 6: DPoP against a server
#     demanding nonces, and tls_client_auth over mutual TLS (certificates
#     from openssl), each used at examples/resource-server.
# Needs node (20 or later), npm, python3 and /usr/bin/python3 with authlib
# and requests; installs the npm packages from package-lock.json. Prints
# one line per client result, then "compat: N passed, M failed"; exits 1
# when any failed.
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

die() { echo "compat: $*" >&2; exit 1; }
[ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] \
  || die "Node.js $(node --version) is too old: openid-client 6 needs 20 or later"
/usr/bin/python3 -c 'import authlib, requests' 2>/dev/null \
  || die "/usr/bin/python3 cannot import authlib and requests: apt-get install python3-authlib python3-requests"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
wait_for() { for _ in $(seq 1 100); do curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; die "$1 did not come up"; }

(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
(cd "$root" && go build -o "$work/m2mauth" ./cmd/m2mauth)

# start_server NAME [serve flags…]: starts a server with its own data
# directory and creates the APIs.
start_server() {
  local name="$1" port
  shift
  port="$(free_port)"
  "$work/m2mauth" serve --addr "127.0.0.1:$port" --data-dir "$work/$name" --log-level warn "$@" > "$work/$name.log" 2>&1 &
  pids+=($!)
  wait_for "http://127.0.0.1:$port/readyz"
  "$work/m2mauth" api create --identifier https://api.example.com --name Orders --scopes "orders:read" --data-dir "$work/$name" > /dev/null
  "$work/m2mauth" api create --identifier https://api.bank.example --name Banking --scopes "banking/read banking/write" --data-dir "$work/$name" > /dev/null
}

# admin_token NAME: an admin API token, from the credentials the server
# wrote to <data-dir>/admin.json on first start.
admin_token() {
  python3 - "$work/$1/admin.json" <<'PY'
import base64, json, sys, urllib.request
d = json.load(open(sys.argv[1]))
basic = base64.b64encode(f"{d['client_id']}:{d['client_secret']}".encode()).decode()
req = urllib.request.Request(d["server"] + "/admin/v1/token", data=b"grant_type=client_credentials",
                             headers={"Authorization": "Basic " + basic})
print(json.load(urllib.request.urlopen(req, timeout=10))["access_token"])
PY
}

passed=0
failed=()
# check NAME COMMAND…: runs one client. Each line it prints on stdout is a
# result ("PASS NAME: line"); on failure everything it printed follows
# "FAIL NAME", indented, and the run goes on to the next client.
check() {
  local name="$1" out rc=0
  shift
  out="$("$@" 2>&1)" || rc=$?
  if [ "$rc" -eq 0 ]; then
    while IFS= read -r line; do echo "PASS $name: $line"; done <<<"$out"
    passed=$((passed + 1))
  else
    echo "FAIL $name (exit $rc):"
    sed 's/^/    /' <<<"$out"
    failed+=("$name")
  fi
}

server_url() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["server"])' "$work/$1/admin.json"; }
start_server default
base="$(server_url default)"
start_server long --max-assertion-lifetime 1h
long_base="$(server_url long)"

m2m() { "$work/m2mauth" "$@" --data-dir "$work/default"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)[sys.argv[1]])" "$1"; }
atm_json="$(m2m client create --name atm --audience https://api.example.com --scopes orders:read --refresh-tokens --json)"
machine_json="$(m2m client create --name machine --audience https://api.example.com --scopes orders:read --json)"
bank_json="$(m2m client create --name bank --audience https://api.bank.example --scopes "banking/read banking/write" --json)"

check "axios ATM surface (seed 002)" node "$here/atm-client.js" "$base" \
  "$(field client_id <<<"$atm_json")" "$(field client_secret <<<"$atm_json")" "$work/atm-token"
check "axios machine-token surface (seed 000)" node "$here/machine-client.js" "$base" \
  "$(field client_id <<<"$machine_json")" "$(field client_secret <<<"$machine_json")"
check "python stdlib (seeds 000, 001)" python3 "$here/client.py" "$base" \
  "$(field client_id <<<"$machine_json")" "$(field client_secret <<<"$machine_json")" \
  "$(field client_id <<<"$bank_json")" "$(field client_secret <<<"$bank_json")"

# The resource server (seed 003) checks the ATM client's token, a forgery
# of it (subject changed, signature kept) and no token. It is started here,
# not inside check's subshell, so that cleanup stops it.
rsport="$(free_port)"
node "$here/resource-server.js" "$rsport" "$base" https://api.example.com > "$work/rs.log" 2>&1 &
pids+=($!)
resource_server() {
  local token ok forged bad none
  [ -s "$work/atm-token" ] || { echo "no token: the ATM client failed"; return 1; }
  token="$(cat "$work/atm-token")"
  for _ in $(seq 1 100); do grep -qs listening "$work/rs.log" && break; sleep 0.1; done
  ok="$(curl -s -w ' %{http_code}' -H "Authorization: Bearer $token" "http://127.0.0.1:$rsport/api/data")"
  case "$ok" in *'"message":"Authenticated successfully"'*' 200') ;; *) echo "refused a valid token: $ok"; return 1 ;; esac
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
  [ "$bad" = 401 ] || { echo "accepted a forged token ($bad)"; return 1; }
  none="$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$rsport/api/data")"
  [ "$none" = 401 ] || { echo "accepted no token ($none)"; return 1; }
  echo "Express + jsonwebtoken + jwks-rsa: valid token accepted (200), forged and missing token refused (401)"
}
check "resource server (seed 003)" resource_server

# private_key_jwt: each client makes its key pair and registers its public
# key through the admin API.
M2MAUTH_ADMIN_TOKEN="$(admin_token default)"
export M2MAUTH_ADMIN_TOKEN
check "openid-client 5" node "$here/openid-client-5.js" "$base" https://api.example.com orders:read
check "openid-client 6" node "$here/openid-client-6.mjs" "$base" https://api.example.com orders:read
# 300: the default --max-assertion-lifetime, in seconds.
check "Authlib, 5 min assertion limit" /usr/bin/python3 "$here/authlib-client.py" "$base" https://api.example.com orders:read 300
M2MAUTH_ADMIN_TOKEN="$(admin_token long)"
check "Authlib, 1 h assertion limit" /usr/bin/python3 "$here/authlib-client.py" "$long_base" https://api.example.com orders:read 3600

# Sender-constrained tokens with openid-client 6 (its DPoP and mTLS
# support), used at examples/resource-server in its --require-dpop and
# --require-mtls modes.
go -C "$root" build -o "$work/resource-server" ./examples/resource-server
# wait_port PORT: until something listens on it (the APIs answer 401).
wait_port() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; die "port $1 did not open"; }

start_server dpop --dpop-nonces
dpop_base="$(server_url dpop)"
rs_dpop="$(free_port)"
"$work/resource-server" --addr "127.0.0.1:$rs_dpop" --issuer "$dpop_base" --audience https://api.example.com --require-dpop > "$work/rs-dpop.log" 2>&1 &
pids+=($!)
wait_port "$rs_dpop"
M2MAUTH_ADMIN_TOKEN="$(admin_token dpop)"
check "openid-client 6, DPoP" node "$here/openid-client-6-sender.mjs" dpop "$dpop_base" "http://127.0.0.1:$rs_dpop/api/data" https://api.example.com orders:read

# A private CA, the server's certificate (127.0.0.1) and a client's, whose
# URI SAN is a SPIFFE ID.
pki="$work/pki"
mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/ca.key" -out "$pki/ca.pem" \
  -subj "/CN=m2mauth compat CA" -days 2 -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
issue_cert() {
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "$2" 2>/dev/null
  printf '%s\n' "$3" "extendedKeyUsage=$4" > "$pki/$1.ext"
  openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial -days 2 \
    -extfile "$pki/$1.ext" -out "$pki/$1.pem" 2>/dev/null
}
issue_cert server /CN=127.0.0.1 subjectAltName=IP:127.0.0.1 serverAuth
spiffe=spiffe://example.org/ns/compat/sa/billing
issue_cert client /CN=billing "subjectAltName=URI:$spiffe" clientAuth

mtls_port="$(free_port)"
mtls_base="https://127.0.0.1:$mtls_port"
"$work/m2mauth" serve --addr "127.0.0.1:$mtls_port" --issuer "$mtls_base" --data-dir "$work/mtls" --log-level warn \
  --tls-cert "$pki/server.pem" --tls-key "$pki/server.key" --tls-client-ca "$pki/ca.pem" > "$work/mtls.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do curl -fs --cacert "$pki/ca.pem" -o /dev/null "$mtls_base/readyz" && break; sleep 0.1; done
SSL_CERT_FILE="$pki/ca.pem" "$work/m2mauth" api create --identifier https://api.example.com --name Orders --scopes "orders:read" --data-dir "$work/mtls" > /dev/null
rs_mtls="$(free_port)"
# The resource server reads the issuer's discovery and JWKS over HTTPS:
# Go's SSL_CERT_FILE makes it trust the private CA.
SSL_CERT_FILE="$pki/ca.pem" "$work/resource-server" --addr "127.0.0.1:$rs_mtls" --issuer "$mtls_base" --audience https://api.example.com \
  --require-mtls --tls-cert "$pki/server.pem" --tls-key "$pki/server.key" > "$work/rs-mtls.log" 2>&1 &
pids+=($!)
wait_port "$rs_mtls"
M2MAUTH_ADMIN_TOKEN="$(python3 - "$work/mtls/admin.json" "$pki/ca.pem" <<'PY'
import base64, json, ssl, sys, urllib.request
d = json.load(open(sys.argv[1]))
basic = base64.b64encode(f"{d['client_id']}:{d['client_secret']}".encode()).decode()
req = urllib.request.Request(d["server"] + "/admin/v1/token", data=b"grant_type=client_credentials",
                             headers={"Authorization": "Basic " + basic})
ctx = ssl.create_default_context(cafile=sys.argv[2])
print(json.load(urllib.request.urlopen(req, timeout=10, context=ctx))["access_token"])
PY
)"
check "openid-client 6, mTLS" node "$here/openid-client-6-sender.mjs" mtls "$mtls_base" "https://127.0.0.1:$rs_mtls/api/data" \
  https://api.example.com orders:read "$pki/client.pem" "$pki/client.key" "$pki/ca.pem" "$spiffe"

echo "compat: ${passed} passed, ${#failed[@]} failed"
if [ "${#failed[@]}" -gt 0 ]; then
  printf 'compat: FAILED: %s\n' "${failed[@]}" >&2
  exit 1
fi
