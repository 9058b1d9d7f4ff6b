"""private_key_jwt with Authlib's PrivateKeyJWT (Debian python3-authlib,
for /usr/bin/python3) and requests, through OAuth2Session.

Authlib 1.2 signs the assertion with aud = the token_endpoint given to
PrivateKeyJWT, or the URL the request goes to when none is given (the
token endpoint URL: RFC 7523's original wording), and exp = iat + 3600 s.
m2mauth accepts the token endpoint URL only for a client registered with
accept_token_endpoint_audience, and an assertion living at most
--max-assertion-lifetime (5 min by default).

Usage: M2MAUTH_ADMIN_TOKEN=… /usr/bin/python3 authlib-client.py BASE_URL AUDIENCE SCOPE MAX_LIFETIME
MAX_LIFETIME is the server's --max-assertion-lifetime in seconds: from
3600 on, every request is untouched Authlib's; below, an untouched one
must be refused and the others use 60 s assertions (ShortPrivateKeyJWT).
"""
import base64
import json
import os
import sys
import urllib.parse

import authlib
import requests
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.jose import JsonWebKey
from authlib.jose import jwt
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign


class ShortPrivateKeyJWT(PrivateKeyJWT):
    """PrivateKeyJWT whose assertions live 60 s instead of Authlib's 3600 s.
    Authlib 1.2 has no option for it: sign() passes expires_in through
    private_key_jwt_sign to sign_jwt_bearer_assertion."""

    def sign(self, auth, token_endpoint):
        return private_key_jwt_sign(auth.client_secret, client_id=auth.client_id, token_endpoint=token_endpoint,
                                    claims=self.claims, alg=self.alg, expires_in=60)


def register(base, name, public_jwk, audience, scope, accept_token_endpoint_audience):
    resp = requests.post(base + "/admin/v1/clients", timeout=10, json={
        "name": name,
        "grants": [{"audience": audience, "scopes": [scope]}],
        "default_audience": audience,
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [public_jwk]},
        "accept_token_endpoint_audience": accept_token_endpoint_audience,
    }, headers={"Authorization": "Bearer " + os.environ["M2MAUTH_ADMIN_TOKEN"]})
    assert resp.status_code == 201, (resp.status_code, resp.text)
    body = resp.json()
    assert body["accept_token_endpoint_audience"] is accept_token_endpoint_audience, body
    return body["client_id"]


def claims(jwt):
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


class Capture:
    """A requests response hook keeping the claims of the client_assertion
    sent."""

    def __init__(self):
        self.assertion = None

    def __call__(self, resp, **_):
        form = urllib.parse.parse_qs(resp.request.body or "")
        if "client_assertion" in form:
            self.assertion = claims(form["client_assertion"][0])
        return resp


def fetch(token_endpoint, client_id, pem, auth):
    """One client-credentials request; returns (token or None, error or None, assertion claims)."""
    session = OAuth2Session(client_id, pem, token_endpoint_auth_method="private_key_jwt")
    session.register_client_auth_method(auth)
    capture = Capture()
    session.hooks["response"].append(capture)
    try:
        token = session.fetch_token(token_endpoint, grant_type="client_credentials")
        return token, None, capture.assertion
    except OAuthError as e:
        return None, e.error, capture.assertion


def main():
    base, audience, scope, max_lifetime = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    meta = requests.get(base + "/.well-known/openid-configuration", timeout=10).json()
    issuer, token_endpoint, jwks = meta["issuer"], meta["token_endpoint"], meta["jwks_uri"]
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"], meta

    key = JsonWebKey.generate_key("RSA", 2048, is_private=True)
    pem = key.as_pem(is_private=True)
    public_jwk = key.as_dict(is_private=False)
    switch_on = register(base, "authlib-switch-on", public_jwk, audience, scope, True)
    switch_off = register(base, "authlib-switch-off", public_jwk, audience, scope, False)
    server_keys = JsonWebKey.import_key_set(requests.get(jwks, timeout=10).json())

    def token_ok(name, client_id, auth, want_aud):
        token, err, sent = fetch(token_endpoint, client_id, pem, auth)
        assert token is not None, f"{name}: {err} (assertion aud {sent and sent['aud']!r})"
        assert sent["aud"] == want_aud and sent["iss"] == sent["sub"] == client_id, sent
        at = jwt.decode(token["access_token"], server_keys)
        at.validate()
        assert at["iss"] == issuer and at["aud"] == audience and at["sub"] == client_id, dict(at)
        assert at["scope"] == scope and token["token_type"] == "Bearer", dict(at)
        return at["jti"]

    def refused(name, client_id, auth):
        token, err, sent = fetch(token_endpoint, client_id, pem, auth)
        assert token is None and err == "invalid_client", f"{name}: want invalid_client, got {token or err}"
        return sent

    if max_lifetime >= 3600:
        # (a) untouched Authlib: aud = the token endpoint URL; the switch
        # is what makes it work. (b) PrivateKeyJWT(token_endpoint=issuer):
        # aud = the issuer identifier, accepted without the switch.
        auth, lifetime = PrivateKeyJWT, "Authlib's default 3600 s assertions"
    else:
        # Untouched Authlib's 3600 s assertion is over the server's limit,
        # with the switch on all the same; the same with 60 s passes below.
        sent = refused("default Authlib, switch on", switch_on, PrivateKeyJWT())
        assert sent["aud"] == token_endpoint and sent["exp"] - sent["iat"] == 3600, sent
        auth, lifetime = ShortPrivateKeyJWT, f"60 s assertions (Authlib's default 3600 s refused: over {max_lifetime} s)"
    jtis = {token_ok("aud token endpoint, switch on", switch_on, auth(), token_endpoint) for _ in range(2)}
    refused("aud token endpoint, switch off", switch_off, auth())
    jtis |= {token_ok("aud issuer, switch off", switch_off, auth(token_endpoint=issuer), issuer) for _ in range(2)}
    assert len(jtis) == 4, jtis

    print(f"Authlib {authlib.__version__} PrivateKeyJWT RS256, {lifetime}: aud = token endpoint URL: "
          "token with accept_token_endpoint_audience, invalid_client without; aud = issuer (token_endpoint=issuer): token")

if __name__ == "__main__":
    main()
