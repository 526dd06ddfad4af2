"""What the filter decided is visible: Prometheus stats, audit lines, access logs.

- `/stats/prometheus` carries `mcp_policy_calls_<outcome>` and per-tool
  counters for tools named in the policy (others under `_unlisted`);
- each refused call writes one audit line (a JSON object) to Envoy's log,
  with the grant's fingerprint, never the credential;
- the access log prints the decision from filter state.
"""

from __future__ import annotations

import json
import re
import time

import httpx
import pytest

from conftest import EnvoyPool
from policy_proxy import JSON_HEADERS, call_message, mcp_policy_stats, new_marker

POLICY = {
    "version": "1",
    "default": "deny",
    "tools": {
        "echo": {},
        "claude_code_session": {"limits": [{"counter": "obs_rate", "window": "day", "max": 1, "scope": "grant"}]},
    },
}
SECRET = "Bearer obs-secret-credential-123"


def _wait_for_log(envoy, needle: str, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = envoy.log_text()
        if needle in text:
            return text
        time.sleep(0.1)
    pytest.fail(f"{needle!r} not in the Envoy log:\n{envoy.log_tail()}")


@pytest.fixture(scope="module")
def obs_envoy(envoys: EnvoyPool):
    return envoys.envoy(POLICY)


def _post(envoy, body, **headers) -> httpx.Response:
    return httpx.post(envoy.url + "/mcp", json=body, headers={**JSON_HEADERS, **headers}, timeout=10)


def _post_raw(envoy, body: bytes, path: str) -> httpx.Response:
    return httpx.post(envoy.url + path, content=body, headers=JSON_HEADERS, timeout=10)


def test_decisions_are_counted_onmcp_policy_stats(obs_envoy) -> None:
    before = mcp_policy_stats(obs_envoy)
    _post(obs_envoy, call_message("echo", {"m": new_marker()}))
    _post(obs_envoy, call_message("claude_code", {"prompt": "x"}))
    after = mcp_policy_stats(obs_envoy)
    assert after["mcp_policy_calls_allowed"] == before.get("mcp_policy_calls_allowed", 0) + 1
    assert after["mcp_policy_calls_denied"] == before.get("mcp_policy_calls_denied", 0) + 1
    assert after["mcp_policy_tool_echo_allowed"] == before.get("mcp_policy_tool_echo_allowed", 0) + 1
    # claude_code is not named in the policy: counted under _unlisted.
    assert after["mcp_policy_tool__unlisted_denied"] == before.get("mcp_policy_tool__unlisted_denied", 0) + 1
    assert "mcp_policy_tool_claude_code_denied" not in after


def test_refused_call_writes_an_audit_line_without_the_credential(obs_envoy) -> None:
    request_id = "obs-" + new_marker()
    headers = {"authorization": SECRET, "mcp-session-id": "obs-session-1", "x-request-id": request_id}
    first = _post(obs_envoy, call_message("claude_code_session", {"action": "list"}), **headers)
    assert "result" in first.json()
    refused = _post(obs_envoy, call_message("claude_code_session", {"action": "list"}), **headers)
    assert refused.json()["error"]["code"] == -31002
    text = _wait_for_log(obs_envoy, request_id)
    lines = [line for line in text.splitlines() if "mcp-policy audit " in line and request_id in line]
    assert len(lines) == 1, lines
    audit = json.loads(lines[0].split("mcp-policy audit ", 1)[1])
    assert audit["request_id"] == request_id
    assert audit["tool"] == "claude_code_session"
    assert audit["decision"] == "rate_limited"
    assert audit["rule"] == "limits.obs_rate"
    # The session id is a bearer value on many servers: logged as its keyed hash.
    assert re.fullmatch(r"[0-9a-f]{16}", audit["session"])
    assert "obs-session-1" not in lines[0]
    assert re.fullmatch(r"[0-9a-f]{16}", audit["grant"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", audit["time"])
    assert "obs-secret-credential" not in obs_envoy.log_text()


def test_access_log_prints_the_decision(obs_envoy) -> None:
    marker = new_marker()
    _post(obs_envoy, call_message("claude_code_reply", {"sessionId": marker, "prompt": "x"}))
    # Envoy flushes access logs on a timer (up to ~10 s).
    text = _wait_for_log(obs_envoy, "mcp_tool=claude_code_reply", timeout=20.0)
    line = next(line for line in text.splitlines() if "mcp_tool=claude_code_reply" in line)
    assert "mcp_decision=denied" in line and "mcp_rule=default" in line and " 200 " in line


def test_access_log_has_a_decision_for_unreadable_and_plumbing_requests(obs_envoy) -> None:
    marker = new_marker()
    # Unreadable (not JSON): refused 400, logged as invalid with its status.
    bad = _post_raw(obs_envoy, b'{"jsonrpc": "2.0", "x": "' + marker.encode() + b'"', path="/mcp?bad=" + marker)
    assert bad.status_code == 400
    text = _wait_for_log(obs_envoy, "bad=" + marker, timeout=20.0)
    line = next(line for line in text.splitlines() if "bad=" + marker in line)
    assert "mcp_decision=invalid" in line and "mcp_rule=http_400" in line, line
    # Protocol plumbing with no tool call: judged and passed.
    ping = _post_raw(obs_envoy, b'{"jsonrpc":"2.0","id":1,"method":"ping"}', path="/mcp?ping=" + marker)
    assert ping.status_code == 200
    text = _wait_for_log(obs_envoy, "ping=" + marker, timeout=20.0)
    line = next(line for line in text.splitlines() if "ping=" + marker in line)
    assert "mcp_decision=passed" in line, line
