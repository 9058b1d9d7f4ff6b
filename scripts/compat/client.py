"""Clients of the machine-token service (seed 000) and the banking platform
(seed 001), on the Python standard library only.

Usage: python3 client.py BASE_URL API_KEY SECRET_KEY BANK_ID BANK_SECRET
"""
import base64
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone


def post(url, body, headers):
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def machine(base, api_key, secret_key):
    # Seed 000's obtain_token(), with urllib instead of requests.
    payload = json.dumps({"apiKey": api_key, "secretKey": secret_key}).encode()
    status, body = post(base + "/v1/oauth/token/machine", payload, {"Content-Type": "application/json"})
    assert status == 200, (status, body)
    data = body["data"]
    expires_at = datetime.fromisoformat(data["expires"].replace("Z", "+00:00"))
    assert expires_at > datetime.now(timezone.utc), expires_at
    assert data["token"].count(".") == 2
    status, body = post(base + "/v1/oauth/token/machine", b"not json", {"Content-Type": "application/json"})
    assert status == 400 and body["errors"][0]["i18N"] == "INVALID_REQUEST", (status, body)
    print("client.py machine-token: ok, expires", data["expires"])


def banking(base, client_id, client_secret):
    # Seed 001: discovery, then Basic credentials plus the same in the form.
    with urllib.request.urlopen(base + "/.well-known/openid-configuration", timeout=10) as resp:
        token_endpoint = json.loads(resp.read())["token_endpoint"]
    basic = base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()
    form = urllib.parse.urlencode({
        "client_id": client_id, "client_secret": client_secret,
        "scope": "banking/read banking/write", "grant_type": "client_credentials",
    }).encode()
    status, body = post(token_endpoint, form, {
        "Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded",
    })
    assert status == 200, (status, body)
    assert body["token_type"] == "Bearer" and body["expires_in"] > 0, body
    assert body["scope"] == "banking/read banking/write", body
    header = f"{body['token_type']} {body['access_token']}"  # "Authorization: token_type access_token"
    assert header.startswith("Bearer ey")
    print("client.py banking: ok, scope", body["scope"])


if __name__ == "__main__":
    base, api_key, secret_key, bank_id, bank_secret = sys.argv[1:6]
    machine(base, api_key, secret_key)
    banking(base, bank_id, bank_secret)
