"""Envoy `jwt_authn` in front of the policy filter, for `make run` and the tests.

A policy that reads the caller's claims (`caller.claims.*`, or
`settings.grant_from: "claims..."`) needs verified claims in Envoy's dynamic
metadata. `make run` then generates an HMAC key, puts `jwt_authn` before the
filter (payload_in_metadata: jwt_payload, the filter's default
`caller_claims`), and prints a token per demo role. Standard library only:
HS256 needs no crypto package.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import yaml

import envoy_config  # demo/: the CLI-rendered bootstrap helpers

ISSUER = "https://mcp-policy.demo"
AUDIENCE = "mcp-server"
# Where the policy filter starts in the rendered bootstrap (demo/envoy_config.py).

# The demo's people: roles and scopes the example policy (envoy/examples/roles.json) reads.
ROLES: dict[str, dict[str, Any]] = {
    "admin": {"sub": "alice", "roles": ["admin", "ci"], "scope": "sessions:read sessions:poll"},
    "ci": {"sub": "ci-bot", "roles": ["ci"], "scope": "sessions:read"},
}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def uses_claims(policy_text: str) -> bool:
    """Whether the policy reads verified JWT claims (so it needs jwt_authn in front)."""
    try:
        policy = json.loads(policy_text)
    except ValueError:
        return False
    settings = policy.get("settings") if isinstance(policy, dict) else None
    grant_from = settings.get("grant_from") if isinstance(settings, dict) else None
    return "caller.claims" in policy_text or (isinstance(grant_from, str) and grant_from.startswith("claims"))


def hmac_jwks(secret: bytes, kid: str = "demo-hs256") -> str:
    return json.dumps({"keys": [{"kty": "oct", "kid": kid, "alg": "HS256", "k": b64url(secret)}]})


def hs256_token(secret: bytes, claims: dict[str, Any], *, issuer: str = ISSUER, kid: str = "demo-hs256",
                lifetime_s: int = 8 * 3600) -> str:  # fmt: skip
    now = int(time.time())
    payload = {"iss": issuer, "aud": AUDIENCE, "iat": now, "exp": now + lifetime_s, "jti": uuid.uuid4().hex, **claims}
    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def jwt_authn_filter(providers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A jwt_authn filter: a token, if present, must verify with one provider;
    token-less requests go on (the policy's require_caller or rules decide)."""
    requirements = [{"provider_name": name} for name in providers] + [{"allow_missing": {}}]
    return {
        "name": "envoy.filters.http.jwt_authn",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
            "providers": {name: {"payload_in_metadata": "jwt_payload", **p} for name, p in providers.items()},
            "rules": [{"match": {"prefix": "/"}, "requires": {"requires_any": {"requirements": requirements}}}],
        },
    }


def insert_before_policy_filter(config: str, http_filter: dict[str, Any]) -> str:
    """`config` (a rendered bootstrap) with `http_filter` placed just before the policy filter."""
    bootstrap = yaml.safe_load(config)
    filters = envoy_config.http_filters(bootstrap)
    index = next(i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.wasm")
    filters.insert(index, http_filter)
    return envoy_config.dump(bootstrap, header=f"mcp-policy render envoy + {http_filter['name']} before the policy filter")


def with_demo_jwt(config: str, secret: bytes) -> str:
    provider = {"issuer": ISSUER, "audiences": [AUDIENCE], "local_jwks": {"inline_string": hmac_jwks(secret)}}
    return insert_before_policy_filter(config, jwt_authn_filter({"demo": provider}))
