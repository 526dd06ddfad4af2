"""One credential, one budget: the grant is the canonical `scheme token`.

Servers normalise a credential before checking it: the scheme's case
(`bearer`, `BEARER`), whitespace around the value (over HTTP/2 Envoy passes
it to the filter; every HTTP/1 upstream parser strips it). Each respelling of
one token must spend the same budget: under a limit of 3, no mix of
spellings gets a 4th call through, over HTTP/1.1 or HTTP/2, in either header
mode. Shapes no conforming client sends (a second word, two spaces, a tab, a
comma, two Authorization headers) are refused with 400/-32600 and never
counted; the upstream sees nothing of them, and the filter still serves.
`settings.require_grant` refuses calls without any grant.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from assertions import assert_http_error, assert_policy_refusal, parse_json
from conftest import EnvoyPool, policy_for
from policy_proxy import JSON_HEADERS, PolicyProxy, call_message, new_marker
from raw_http import H2Request, RawResponse, h2_exchange, http1_exchange, http1_request, jsonrpc_bytes
from recording_upstream import MARKER_HEADER

INVALID_REQUEST = -32600
RATE_LIMITED = -31002
MAX = 3

CAPPED: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "tools": {
        "echo": {"limits": [{"counter": "per_grant", "window": "day", "max": MAX, "scope": "grant"}]},
        "claude_code_session": {},
    },
}

PROTOCOLS = ["http1", "h2"]


@pytest.fixture
def capped(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return envoys.proxy(policy_for(CAPPED, mode), mode, allowed_tool="claude_code_session",
                        allowed_arguments={"action": "list"})  # fmt: skip


def send(port: int, protocol: str, authorizations: list[str], marker: str, request_id: int = 1) -> RawResponse:
    """One echo call carrying exactly these Authorization values (one header each)."""
    body = jsonrpc_bytes(call_message("echo", {"m": marker}, request_id))
    headers = [*JSON_HEADERS.items(), (MARKER_HEADER, marker)] + [("authorization", a) for a in authorizations]
    if protocol == "h2":
        [answer] = h2_exchange(port, [H2Request(headers=headers, body_parts=[body])], validate_headers=False)
    else:
        [answer] = http1_exchange(port, http1_request("POST", "/mcp", headers, body))
    return answer


def token() -> str:
    """A token of this test only: its budget starts full."""
    return "tok-" + uuid.uuid4().hex


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_respellings_of_one_token_share_one_budget(capped: PolicyProxy, protocol: str) -> None:
    t = token()
    spellings = [f"Bearer {t}", f"bearer {t}", f"BEARER {t}", f"bEaReR {t}", f"Bearer {t} "]
    if protocol == "h2":
        spellings += [f"Bearer {t}\t", f" Bearer {t}  ", f"\tbearer {t}"]
    forwarded, limited = [], []
    for index, spelling in enumerate(spellings):
        marker = new_marker()
        answer = send(capped.port, protocol, [spelling], marker, request_id=index)
        message = parse_json(answer.body)
        if "result" in message:
            capped.assert_forwarded(marker)
            forwarded.append(spelling)
        else:
            assert_policy_refusal(answer, request_id=index, tool="echo", code=RATE_LIMITED)
            capped.assert_not_forwarded(marker)
            limited.append(spelling)
    assert len(forwarded) == MAX, f"forwarded {forwarded!r}"
    assert limited == spellings[MAX:]
    capped.assert_still_serves()


MALFORMED = {
    "second-word": ["Bearer {t} anything"],
    "two-spaces": ["Bearer  {t}"],
    "tab-inside": ["Bearer\t{t}"],
    "comma-list": ["Bearer {t}, Bearer {t}"],
    "trailing-comma": ["Bearer {t},"],
    "scheme-only": ["Bearer"],
    "bare-token": ["{t}"],
    "duplicate-header": ["Bearer {t}", "Bearer {t}"],
    "duplicate-differing": ["Bearer {t}", "Bearer other"],
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("shape", MALFORMED)
def test_malformed_credentials_are_refused_and_never_counted(capped: PolicyProxy, protocol: str, shape: str) -> None:
    t = token()
    marker = new_marker()
    answer = send(capped.port, protocol, [v.format(t=t) for v in MALFORMED[shape]], marker)
    error = assert_http_error(answer, 400, INVALID_REQUEST, null_id=True)
    assert "authorization" in error["message"].lower(), error
    capped.assert_refused_and_alive(marker)
    # The refused call took nothing: the token still has its whole budget.
    for index in range(MAX):
        ok = new_marker()
        message = parse_json(send(capped.port, protocol, [f"Bearer {t}"], ok, request_id=index).body)
        assert "result" in message, message
    assert_policy_refusal(send(capped.port, protocol, [f"Bearer {t}"], new_marker(), request_id=9),
                          request_id=9, tool="echo", code=RATE_LIMITED)  # fmt: skip


def test_a_malformed_credential_does_not_refuse_other_messages(capped: PolicyProxy) -> None:
    """Only calls are counted; initialize, ping, tools/list pass as without the header."""
    marker = new_marker()
    response = capped.post({"jsonrpc": "2.0", "id": 5, "method": "ping"}, marker=marker,
                           headers={"authorization": "Bearer a b"})  # fmt: skip
    capped.assert_upstream_answered(response, marker, request_id=5)


def test_require_grant_refuses_calls_without_one(envoys: EnvoyPool, mode: str) -> None:
    policy = policy_for({**CAPPED, "settings": {"require_grant": True}}, mode)
    proxy = envoys.proxy(policy, mode, allowed_tool="claude_code_session", allowed_arguments={"action": "list"})
    marker = new_marker()
    response = proxy.call("claude_code_session", {"action": "list"}, request_id=4, marker=marker)
    assert_policy_refusal(response, request_id=4, tool="claude_code_session", reason="require_grant")
    proxy.assert_not_forwarded(marker)
    marker = new_marker()
    response = proxy.call("claude_code_session", {"action": "list"}, request_id=5, marker=marker,
                          headers={"authorization": f"Bearer {token()}"})  # fmt: skip
    proxy.assert_upstream_answered(response, marker, request_id=5)


def test_a_custom_grant_header_is_trimmed_and_must_be_single(envoys: EnvoyPool, mode: str) -> None:
    policy = policy_for({**CAPPED, "settings": {"grant_header": "x-api-key"}}, mode)
    proxy = envoys.proxy(policy, mode, allowed_tool="claude_code_session", allowed_arguments={"action": "list"})
    t = token()
    results = []
    for index, value in enumerate([t, f" {t}", f"{t} ", t, t]):
        h2 = H2Request(headers=[*JSON_HEADERS.items(), (MARKER_HEADER, new_marker()), ("x-api-key", value)],
                       body_parts=[jsonrpc_bytes(call_message("echo", {}, index))])  # fmt: skip
        [answer] = h2_exchange(proxy.port, [h2], validate_headers=False)
        results.append("result" in parse_json(answer.body))
    assert results == [True, True, True, False, False]
    for values in ([t, t], [f"{t} x"], [f"{t},{t}"]):
        marker = new_marker()
        headers = [*JSON_HEADERS.items(), (MARKER_HEADER, marker)] + [("x-api-key", v) for v in values]
        body = jsonrpc_bytes(call_message("echo", {}, 1))
        [answer] = http1_exchange(proxy.port, http1_request("POST", "/mcp", headers, body))
        error = assert_http_error(answer, 400, INVALID_REQUEST, null_id=True)
        assert "x-api-key" in error["message"], error
        proxy.assert_refused_and_alive(marker)
