"""Policies that know who is calling: Envoy's jwt_authn verifies the token and
puts its payload in dynamic metadata; the filter reads the claims from there
(`caller.claims.*`), never from the token itself.

The test generates its keys (an RSA key for RS256 and an HMAC `oct` key for
HS256), serves them to jwt_authn as a local JWKS, and mints tokens for several
roles. Checked here: role- and scope-based rules, `require_caller`, each
caller's own tools/list, a budget keyed by the `sub` claim (two tokens of one
subject share it), expired and forged tokens stopped by jwt_authn before the
filter, audit lines naming the subject, and mTLS peer principals
(`caller.principal`) with certificates the test makes.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from assertions import RATE_LIMITED, assert_json_answer, assert_policy_refusal
from envoy_process import Envoy, EnvoyOptions, envoy_bin
from policy_proxy import PolicyProxy, new_marker
from test_demo import REPO, _free_port

import envoy_config  # noqa: E402  (demo/, on sys.path through envoy_process)
import jwt_demo  # noqa: E402
import yaml  # noqa: E402

RSA_ISSUER = "https://issuer.test/rsa"
HMAC_ISSUER = "https://issuer.test/hmac"
AUDIENCE = "mcp-server"
SPIFFE_CI = "spiffe://cluster.local/ns/ci/sa/agent"
SPIFFE_OTHER = "spiffe://cluster.local/ns/web/sa/frontend"


# -- keys and tokens ---------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def int_b64(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


class Keys:
    """An RSA key and an HMAC secret, with the JWKS jwt_authn trusts."""

    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rogue = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.secret = uuid.uuid4().bytes + uuid.uuid4().bytes

    def rsa_jwks(self) -> str:
        pub = self.rsa.public_key().public_numbers()
        key = {"kty": "RSA", "kid": "rsa-1", "alg": "RS256", "use": "sig", "n": int_b64(pub.n), "e": int_b64(pub.e)}
        return json.dumps({"keys": [key]})

    def hmac_jwks(self) -> str:
        return json.dumps({"keys": [{"kty": "oct", "kid": "hs-1", "alg": "HS256", "k": b64url(self.secret)}]})

    def token(self, claims: dict[str, Any], *, alg: str = "RS256", forged: bool = False, expired: bool = False) -> str:
        now = int(time.time())
        payload = {
            "iss": RSA_ISSUER if alg == "RS256" else HMAC_ISSUER,
            "aud": AUDIENCE,
            "iat": now - 1200,
            "exp": now - 600 if expired else now + 3600,  # past jwt_authn's 60 s clock skew
            "jti": uuid.uuid4().hex,
            **claims,
        }
        header = {"alg": alg, "typ": "JWT", "kid": "rsa-1" if alg == "RS256" else "hs-1"}
        signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}".encode()
        if alg == "RS256":
            key = self.rogue if forged else self.rsa
            signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        else:
            secret = b"not-the-secret" if forged else self.secret
            signature = hmac.new(secret, signing_input, hashlib.sha256).digest()
        return f"{signing_input.decode()}.{b64url(signature)}"


# -- certificates for mTLS --------------------------------------------------


def _cert(subject: str, issuer_key: Any, issuer_name: x509.Name | None, *, ca: bool, san: list[x509.GeneralName]) -> tuple[Any, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(issuer_key or key, hashes.SHA256())
    return key, cert


def _write(path: Path, key: Any, cert: x509.Certificate) -> tuple[str, str]:
    key_path, cert_path = path.with_suffix(".key"), path.with_suffix(".crt")
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(cert_path), str(key_path)


class Certificates:
    """A CA, a server certificate for 127.0.0.1, and client certificates with SPIFFE URI SANs."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.ca_key, self.ca = _cert("test-ca", None, None, ca=True, san=[])
        self.ca_path = str(directory / "ca.crt")
        Path(self.ca_path).write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        server_key, server = _cert("envoy", self.ca_key, self.ca.subject, ca=False, san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
        self.server = _write(directory / "server", server_key, server)
        self.clients: dict[str, tuple[str, str]] = {}
        for label, uri in [("ci", SPIFFE_CI), ("other", SPIFFE_OTHER)]:
            key, cert = _cert(label, self.ca_key, self.ca.subject, ca=False, san=[x509.UniformResourceIdentifier(uri)])
            self.clients[label] = _write(directory / f"client-{label}", key, cert)


# -- Envoy with jwt_authn (and optionally mTLS) in front of the filter -------



class IdentityEnvoy(Envoy):
    """The suite's Envoy with jwt_authn before the policy filter, and TLS with client certificates when asked."""

    def __init__(self, policy: dict, options: EnvoyOptions, workdir: Path, keys: Keys, certs: Certificates | None) -> None:
        super().__init__(policy, options, workdir)
        self.keys = keys
        self.certs = certs

    def bootstrap(self) -> str:
        config = super().bootstrap()
        providers = {
            "rsa": {"issuer": RSA_ISSUER, "audiences": [AUDIENCE], "local_jwks": {"inline_string": self.keys.rsa_jwks()}},
            "hmac": {"issuer": HMAC_ISSUER, "audiences": [AUDIENCE], "local_jwks": {"inline_string": self.keys.hmac_jwks()}},
        }
        # A token, if present, must verify with one provider; token-less
        # requests reach the filter (require_caller decides then).
        config = jwt_demo.insert_before_policy_filter(config, jwt_demo.jwt_authn_filter(providers))
        if self.certs is not None:
            cert, key = self.certs.server
            tls = {
                "name": "envoy.transport_sockets.tls",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                    "require_client_certificate": False,
                    "common_tls_context": {
                        "tls_certificates": [{"certificate_chain": {"filename": cert}, "private_key": {"filename": key}}],
                        "validation_context": {"trusted_ca": {"filename": self.certs.ca_path}},
                    },
                },
            }
            bootstrap = yaml.safe_load(config)
            bootstrap["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"] = tls
            config = envoy_config.dump(bootstrap, header="mcp-policy render envoy + jwt_authn + downstream TLS")
        return config


# -- the policy --------------------------------------------------------------


def roles_policy(mode: str) -> dict[str, Any]:
    return {
        "version": "1",
        "default": "deny",
        "settings": {"header_mode": mode, "require_caller": True, "grant_from": "claims.sub", "audit": "all"},
        "tools": {
            "echo": {},
            "claude_code_session": {
                "rules": [
                    {"name": "cancel-is-for-admins", "reason": "only admins may cancel sessions",
                     "deny_if": [{"path": "args.action", "op": "eq", "value": "cancel"},
                                 {"path": "caller.claims.realm.roles", "op": "not_contains", "value": "admin"}]},
                ],
                "limits": [{"counter": "sessions_per_subject", "window": "hour", "max": 3, "scope": "grant"}],
            },
            "claude_code": {"rules": [{"name": "admins-only", "reason": "autonomous sessions are for admins",
                                       "require": [{"path": "caller.claims.realm.roles", "op": "contains", "value": "admin"}]}]},
            "claude_code_check": {"rules": [{"name": "needs-poll-scope",
                                             "require": [{"path": "caller.claims.scope", "op": "contains_word", "value": "sessions:poll"}]}]},
        },
    }  # fmt: skip


def mesh_policy() -> dict[str, Any]:
    return {
        "version": "1",
        "default": "deny",
        "settings": {"header_mode": "hold", "audit": "all"},
        "tools": {
            "echo": {},
            "claude_code_session": {"rules": [{"name": "ci-agents-only", "reason": "only the CI service account",
                                               "require": [{"path": "caller.principal", "op": "eq", "value": SPIFFE_CI}]}]},
        },
    }  # fmt: skip


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def identity_envoys(upstream: Any, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Any:
    workdir = tmp_path_factory.mktemp("identity")
    started: dict[str, Envoy] = {}

    def get(name: str, policy: dict, *, mode: str, certs: Certificates | None = None) -> Envoy:
        if name not in started:
            options = EnvoyOptions(upstream_port=upstream.port, allow_on_headers_stop_iteration=True if mode == "hold" else None)
            started[name] = IdentityEnvoy(policy, options, workdir / name, keys, certs).start()
        return started[name]

    yield get
    for envoy in started.values():
        envoy.stop()


@pytest.fixture
def proxy(identity_envoys: Any, upstream: Any, mode: str) -> PolicyProxy:
    envoy = identity_envoys(f"roles-{mode}", roles_policy(mode), mode=mode)
    return PolicyProxy(envoy, upstream, mode, "echo", {"text": "still serving"})


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def people(keys: Keys) -> dict[str, str]:
    """Tokens per role: admin (RS256), ci (HS256), contractor without roles (RS256)."""
    run = uuid.uuid4().hex[:8]  # fresh subjects: budgets never leak between tests
    return {
        "admin": keys.token({"sub": f"alice-{run}", "realm": {"roles": ["admin", "ci"]}, "scope": "sessions:read sessions:poll"}),
        "ci": keys.token({"sub": f"ci-bot-{run}", "realm": {"roles": ["ci"]}, "scope": "sessions:read"}, alg="HS256"),
        "contractor": keys.token({"sub": f"bob-{run}", "scope": "sessions:read"}),
    }


def listed(proxy: PolicyProxy, headers: dict[str, str], *, sse: bool = False) -> list[str]:
    extra = {"x-test-sse": "1"} if sse else {}
    response = proxy.post({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}, headers={**headers, **extra})
    assert response.status_code == 200, response.text
    text = response.text
    if sse:
        text = next(line[len("data: "):] for line in text.splitlines() if line.startswith("data: "))
    return [t["name"] for t in json.loads(text)["result"]["tools"]]


# -- tests ---------------------------------------------------------------------


def test_roles_decide_who_may_cancel(proxy: PolicyProxy, keys: Keys) -> None:
    tokens = people(keys)
    marker = new_marker()
    response = proxy.call("claude_code_session", {"action": "cancel", "sessionId": "s1"}, request_id=3,
                          headers=bearer(tokens["ci"]), marker=marker)  # fmt: skip
    error = assert_policy_refusal(response, request_id=3, tool="claude_code_session", reason="only admins may cancel sessions")
    assert error["data"]["rule"] == "tools.claude_code_session.rules.cancel-is-for-admins"
    proxy.client.headers.update(bearer(tokens["ci"]))
    proxy.assert_refused_and_alive(marker)
    # A caller without any roles claim is refused too (a missing claim does not contain "admin").
    marker = new_marker()
    response = proxy.call("claude_code_session", {"action": "cancel", "sessionId": "s1"}, request_id=4,
                          headers=bearer(tokens["contractor"]), marker=marker)  # fmt: skip
    assert_policy_refusal(response, request_id=4, tool="claude_code_session")
    proxy.assert_refused_and_alive(marker)
    # The admin may cancel; the CI bot may list.
    for who, action in [("admin", "cancel"), ("ci", "list")]:
        marker = new_marker()
        response = proxy.call("claude_code_session", {"action": action, "sessionId": "s1"}, request_id=marker,
                              headers=bearer(tokens[who]), marker=marker)  # fmt: skip
        proxy.assert_upstream_answered(response, marker, marker)


def test_role_and_scope_rules_refuse_whatever_the_arguments(proxy: PolicyProxy, keys: Keys) -> None:
    tokens = people(keys)
    proxy.client.headers.update(bearer(tokens["admin"]))
    for who, tool, rule in [("ci", "claude_code", "admins-only"), ("ci", "claude_code_check", "needs-poll-scope"),
                            ("contractor", "claude_code", "admins-only")]:  # fmt: skip
        marker = new_marker()
        response = proxy.call(tool, {"prompt": "x", "action": "poll", "sessionId": "s"}, request_id=5,
                              headers=bearer(tokens[who]), marker=marker)  # fmt: skip
        error = assert_policy_refusal(response, request_id=5, tool=tool)
        assert error["data"]["rule"] == f"tools.{tool}.rules.{rule}"
        proxy.assert_refused_and_alive(marker)
    for tool, args in [("claude_code", {"prompt": "fix it"}), ("claude_code_check", {"action": "poll", "sessionId": "s"})]:
        marker = new_marker()
        response = proxy.call(tool, args, request_id=marker, headers=bearer(tokens["admin"]), marker=marker)
        proxy.assert_upstream_answered(response, marker, marker)


def test_no_identity_is_refused_when_required(proxy: PolicyProxy, keys: Keys) -> None:
    marker = new_marker()
    response = proxy.call("echo", {"text": "hi"}, request_id=9, marker=marker)
    error = assert_policy_refusal(response, request_id=9, tool="echo", check_tool_in_message=False)
    assert error["data"]["rule"] == "settings.require_caller"
    assert "verified caller identity" in error["message"]
    proxy.client.headers.update(bearer(people(keys)["ci"]))
    proxy.assert_refused_and_alive(marker)
    # Plumbing still works without identity: clients can connect.
    response = proxy.post({"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers={"authorization": ""})
    assert response.status_code == 200


@pytest.mark.parametrize("kind", ["expired", "forged-rsa", "forged-hmac", "alg-none", "garbage"])
def test_bad_tokens_are_stopped_by_jwt_authn(proxy: PolicyProxy, keys: Keys, kind: str) -> None:
    claims = {"sub": "mallory", "realm": {"roles": ["admin"]}, "scope": "sessions:poll"}
    token = {
        "expired": lambda: keys.token(claims, expired=True),
        "forged-rsa": lambda: keys.token(claims, forged=True),
        "forged-hmac": lambda: keys.token(claims, alg="HS256", forged=True),
        "alg-none": lambda: b64url(b'{"alg":"none","typ":"JWT"}') + "." + keys.token(claims).split(".")[1] + ".",
        "garbage": lambda: "not.a.jwt",
    }[kind]()
    marker = new_marker()
    response = proxy.call("claude_code_session", {"action": "cancel", "sessionId": "s"}, request_id=1,
                          headers=bearer(token), marker=marker)  # fmt: skip
    assert response.status_code == 401, response.text
    proxy.client.headers.update(bearer(people(keys)["ci"]))
    proxy.assert_refused_and_alive(marker)
    assert not proxy.upstream.matching(marker), "jwt_authn let a bad token's request reach the upstream"


def test_each_caller_sees_its_own_tools(proxy: PolicyProxy, keys: Keys) -> None:
    tokens = people(keys)
    for sse in (False, True):
        assert sorted(listed(proxy, bearer(tokens["admin"]), sse=sse)) == ["claude_code", "claude_code_check", "claude_code_session", "echo"]
        assert sorted(listed(proxy, bearer(tokens["ci"]), sse=sse)) == ["claude_code_session", "echo"]
        assert sorted(listed(proxy, {}, sse=sse)) == ["claude_code_session", "echo"]


def test_two_tokens_of_one_subject_share_a_budget(proxy: PolicyProxy, keys: Keys) -> None:
    run = uuid.uuid4().hex[:8]
    first = keys.token({"sub": f"ci-{run}", "realm": {"roles": ["ci"]}})
    second = keys.token({"sub": f"ci-{run}", "realm": {"roles": ["ci"]}}, alg="HS256")  # another token, same subject
    other = keys.token({"sub": f"other-{run}"})
    for i, token in enumerate([first, second, first]):
        marker = new_marker()
        response = proxy.call("claude_code_session", {"action": "list"}, request_id=marker, headers=bearer(token), marker=marker)
        proxy.assert_upstream_answered(response, marker, marker)
    marker = new_marker()
    response = proxy.call("claude_code_session", {"action": "list"}, request_id=8, headers=bearer(second), marker=marker)
    assert_policy_refusal(response, request_id=8, tool="claude_code_session", code=RATE_LIMITED)
    proxy.client.headers.update(bearer(other))
    proxy.assert_refused_and_alive(marker)
    marker = new_marker()
    response = proxy.call("claude_code_session", {"action": "list"}, request_id=marker, headers=bearer(other), marker=marker)
    proxy.assert_upstream_answered(response, marker, marker)


def test_audit_and_access_log_name_the_subject_never_the_token(proxy: PolicyProxy, keys: Keys) -> None:
    run = uuid.uuid4().hex[:8]
    token = keys.token({"sub": f"auditor-{run}", "realm": {"roles": ["ci"]}})
    marker = new_marker()
    proxy.call("claude_code", {"prompt": "x"}, request_id=2, headers=bearer(token), marker=marker)
    deadline = time.monotonic() + 5
    while f'"subject":"auditor-{run}"' not in proxy.envoy.log_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    log = proxy.envoy.log_text()
    lines = [line for line in log.splitlines() if f"auditor-{run}" in line and "mcp-policy audit" in line]
    assert lines, "no audit line with the subject"
    assert token not in log and token.split(".")[2] not in log


# -- mTLS: caller.principal ---------------------------------------------------


@pytest.fixture(scope="module")
def mesh(identity_envoys: Any, upstream: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Envoy, Certificates]:
    certs = Certificates(tmp_path_factory.mktemp("certs"))
    envoy = identity_envoys("mesh", mesh_policy(), mode="hold", certs=certs)
    return envoy, certs


def tls_post(envoy: Envoy, certs: Certificates, client: str | None, body: dict, marker: str, extra: dict[str, str] | None = None) -> httpx.Response:
    context = ssl.create_default_context(cafile=certs.ca_path)
    if client is not None:
        context.load_cert_chain(*certs.clients[client])
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream", "x-test-marker": marker, **(extra or {})}
    with httpx.Client(verify=context, timeout=15.0) as c:
        return c.post(f"https://127.0.0.1:{envoy.port}/mcp", json=body, headers=headers)


def test_mtls_principal_decides(mesh: tuple[Envoy, Certificates], upstream: Any) -> None:
    envoy, certs = mesh
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "claude_code_session", "arguments": {"action": "list"}}}
    marker = new_marker()
    response = tls_post(envoy, certs, "ci", call, marker)
    assert "result" in assert_json_answer(response, 200), response.text
    upstream.wait_for(marker)
    for client in ["other", None]:
        marker = new_marker()
        response = tls_post(envoy, certs, client, call, marker)
        error = assert_policy_refusal(response, request_id=1, tool="claude_code_session")
        assert error["data"]["rule"] == "tools.claude_code_session.rules.ci-agents-only"
        # Still serving, and the refused call never arrived.
        ok = new_marker()
        echo = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}
        assert "result" in assert_json_answer(tls_post(envoy, certs, client, echo, ok), 200)
        upstream.wait_for(ok)
        assert not upstream.matching(marker)
    listing = {"jsonrpc": "2.0", "id": 3, "method": "tools/list"}
    names = lambda client: sorted(t["name"] for t in assert_json_answer(tls_post(envoy, certs, client, listing, new_marker()), 200)["result"]["tools"])  # noqa: E731
    assert names("ci") == ["claude_code_session", "echo"]
    assert names("other") == ["echo"]


def test_headers_cannot_impersonate_a_verified_identity(mesh: tuple[Envoy, Certificates], proxy: PolicyProxy, keys: Keys, upstream: Any) -> None:
    """A client-chosen header naming the CI principal or carrying admin claims changes nothing."""
    envoy, certs = mesh
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "claude_code_session", "arguments": {"action": "list"}}}
    spoof = {
        "x-forwarded-client-cert": f"By=spiffe://cluster.local/ns/mcp/sa/server;URI={SPIFFE_CI}",
        "x-jwt-payload": b64url(json.dumps({"sub": "root", "realm": {"roles": ["admin"]}}).encode()),
    }
    marker = new_marker()
    response = tls_post(envoy, certs, "other", call, marker, spoof)
    assert_policy_refusal(response, request_id=1, tool="claude_code_session")
    ok = new_marker()
    echo = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "x"}}}
    assert "result" in assert_json_answer(tls_post(envoy, certs, "other", echo, ok), 200)
    upstream.wait_for(ok)
    assert not upstream.matching(marker)
    # Same on the JWT Envoy: a CI token plus a forged payload header is still the CI bot.
    marker = new_marker()
    response = proxy.call("claude_code", {"prompt": "x"}, request_id=6, headers={**bearer(people(keys)["ci"]), **spoof}, marker=marker)
    assert_policy_refusal(response, request_id=6, tool="claude_code")
    proxy.client.headers.update(bearer(people(keys)["ci"]))
    proxy.assert_refused_and_alive(marker)


# -- make run with a claims policy --------------------------------------------


def test_make_run_puts_jwt_authn_in_front_of_a_claims_policy() -> None:
    """POLICY_FILE=envoy/examples/roles.json make run: tokens per role printed, admin may cancel, ci may not."""
    ports = {"ENVOY_PORT": _free_port(), "ENVOY_ADMIN_PORT": _free_port(), "DEMO_PORT": _free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "ENVOY_BIN": envoy_bin(),
           "POLICY_FILE": str(REPO / "envoy" / "examples" / "roles.json")}  # fmt: skip
    process = subprocess.Popen([sys.executable, str(REPO / "demo" / "run.py")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
    output: list[str] = []
    try:
        assert process.stdout is not None
        for line in process.stdout:
            output.append(line)
            if "Ctrl-C stops" in line:
                break
        text = "".join(output)
        tokens = dict(re.findall(r"^  (ADMIN|CI)=(\S+)", text, re.MULTILINE))
        assert set(tokens) == {"ADMIN", "CI"}, text
        url = f"http://127.0.0.1:{ports['ENVOY_PORT']}/mcp"
        base = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}  # fmt: skip
        first = httpx.post(url, headers={**base, **bearer(tokens["ADMIN"])}, json=init)
        assert first.status_code == 200, first.text
        session = {**base, "mcp-session-id": first.headers["mcp-session-id"]}
        httpx.post(url, headers=session, json={"jsonrpc": "2.0", "method": "notifications/initialized"})

        def send(token: str | None, body: dict) -> dict:
            response = httpx.post(url, headers={**session, **(bearer(token) if token else {})}, json=body)
            assert response.status_code == 200, response.text
            data = response.text
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                data = next(line[6:] for line in data.splitlines() if line.startswith("data: "))
            return json.loads(data)

        names = lambda token: sorted(t["name"] for t in send(token, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"})["result"]["tools"])  # noqa: E731
        assert names(tokens["ADMIN"]) == ["claude_code", "claude_code_check", "claude_code_session"]
        assert names(tokens["CI"]) == ["claude_code_session"]
        cancel = {"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                  "params": {"name": "claude_code_session", "arguments": {"action": "cancel", "sessionId": "s-1"}}}  # fmt: skip
        assert send(tokens["CI"], cancel)["error"]["data"]["rule"] == "tools.claude_code_session.rules.cancel-is-for-admins"
        assert "result" in send(tokens["ADMIN"], cancel)
        assert send(None, cancel)["error"]["data"]["rule"] == "settings.require_caller"
        tampered = httpx.post(url, headers={**session, **bearer(tokens["CI"] + "x")}, json=cancel)
        assert tampered.status_code == 401
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(20) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
