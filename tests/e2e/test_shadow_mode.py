"""Shadow mode: a policy (or one tool) in `mode: "shadow"` refuses nothing.

Each call it would refuse reaches the upstream, and is counted
(`mcp_policy_calls_would_*`), audited and put in filter state as
`would_deny` / `would_rate_limit` / `would_need_approval` with its rule;
its limits count in shadow budgets that never take from enforced ones.
"""

from __future__ import annotations

import json
import time

import pytest

from conftest import EnvoyPool, policy_for
from policy_proxy import mcp_policy_stats, new_marker

SHADOW_POLICY = {
    "version": "1",
    "default": "deny",
    "settings": {"mode": "shadow", "audit": "all"},
    "tools": {
        "echo": {"limits": [{"counter": "shadow_e2e", "window": "day", "max": 1, "scope": "grant"}]},
        "claude_code": {"action": "deny", "reason": "no autonomous sessions"},
        "claude_code_reply": {"action": "approve"},
    },
}

# One tool shadowed, the rest enforced; the two tools share one counter.
MIXED_POLICY = {
    "version": "1",
    "default": "deny",
    "tools": {
        "echo": {"limits": [{"counter": "mixed_e2e", "window": "day", "max": 2, "scope": "grant"}]},
        "claude_code_session": {
            "mode": "shadow",
            "limits": [{"counter": "mixed_e2e", "window": "day", "max": 2, "scope": "grant"}],
        },
        "claude_code": {"action": "deny", "mode": "shadow"},
        "claude_code_check": {"action": "deny"},
    },
}


def _audit(envoy, request_id: str) -> dict:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for line in envoy.log_text().splitlines():
            if "mcp-policy audit " in line and request_id in line:
                return json.loads(line.split("mcp-policy audit ", 1)[1])
        time.sleep(0.1)
    pytest.fail(f"no audit line for {request_id}:\n{envoy.log_tail()}")


def _forwarded(proxy, tool: str, arguments: dict, grant: str) -> str:
    marker = new_marker()
    response = proxy.call(tool, {**arguments, "m": marker}, request_id=marker, marker=marker,
                          headers={"authorization": grant, "x-request-id": marker})
    proxy.assert_upstream_answered(response, marker, marker)
    return marker


@pytest.mark.parametrize("mode", ["stream", "hold"])
def test_shadow_policy_refuses_nothing_and_records_what_it_would(envoys: EnvoyPool, mode: str) -> None:
    proxy = envoys.proxy(policy_for(SHADOW_POLICY, mode), mode)
    grant = "Bearer shadow-" + new_marker()
    before = mcp_policy_stats(proxy.envoy)
    allowed = _forwarded(proxy, "echo", {}, grant)
    over = _forwarded(proxy, "echo", {}, grant)  # over the shadow budget of 1
    denied = _forwarded(proxy, "claude_code", {"prompt": "x"}, grant)
    unlisted = _forwarded(proxy, "claude_code_session", {"action": "cancel"}, grant)
    approval = _forwarded(proxy, "claude_code_reply", {"sessionId": "s", "prompt": "x"}, grant)
    after = mcp_policy_stats(proxy.envoy)

    def grew(name: str) -> int:
        return after.get(name, 0) - before.get(name, 0)

    assert grew("mcp_policy_calls_allowed") == 1
    assert grew("mcp_policy_calls_would_rate_limit") == 1
    assert grew("mcp_policy_calls_would_deny") == 2
    assert grew("mcp_policy_calls_would_need_approval") == 1
    assert grew("mcp_policy_calls_denied") == grew("mcp_policy_calls_rate_limited") == 0
    assert grew("mcp_policy_tool_claude_code_would_deny") == 1
    assert _audit(proxy.envoy, allowed)["decision"] == "allowed"
    line = _audit(proxy.envoy, over)
    assert line["decision"] == "would_rate_limit" and line["rule"] == "limits.shadow_e2e"
    line = _audit(proxy.envoy, denied)
    assert line["decision"] == "would_deny" and line["reason"] == "no autonomous sessions"
    assert _audit(proxy.envoy, unlisted)["rule"] == "default"
    assert _audit(proxy.envoy, approval)["decision"] == "would_need_approval"


def test_shadow_decision_reaches_the_access_log(envoys: EnvoyPool) -> None:
    proxy = envoys.proxy(policy_for(SHADOW_POLICY, "hold"), "hold")
    _forwarded(proxy, "claude_code", {"prompt": "access-log"}, "Bearer x")
    deadline = time.monotonic() + 20  # access logs flush on a timer
    while time.monotonic() < deadline:
        lines = [l for l in proxy.envoy.log_text().splitlines() if "mcp_tool=claude_code " in l + " "]
        if any("mcp_decision=would_deny" in l for l in lines):
            return
        time.sleep(0.2)
    pytest.fail("no access log line with mcp_decision=would_deny:\n" + proxy.envoy.log_tail())


@pytest.mark.parametrize("mode", ["stream", "hold"])
def test_shadowed_tool_beside_enforced_ones(envoys: EnvoyPool, mode: str) -> None:
    proxy = envoys.proxy(policy_for(MIXED_POLICY, mode), mode, allowed_budget=0)
    grant = "Bearer mixed-" + new_marker()
    # The shadowed tool spends its shadow budget of 2 and goes on.
    for _ in range(3):
        _forwarded(proxy, "claude_code_session", {"action": "list"}, grant)
    _forwarded(proxy, "claude_code", {"prompt": "x"}, grant)
    # The enforced budget of the same counter is whole: 2 calls, then refused.
    _forwarded(proxy, "echo", {}, grant)
    _forwarded(proxy, "echo", {}, grant)
    marker = new_marker()
    refused = proxy.call("echo", {"m": marker}, request_id=1, marker=marker, headers={"authorization": grant})
    assert refused.json()["error"]["code"] == -31002
    proxy.assert_not_forwarded(marker)
    # An enforced deny still refuses, and never reaches the server.
    marker = new_marker()
    refused = proxy.call("claude_code_check", {"action": "poll", "sessionId": marker}, marker=marker)
    assert refused.json()["error"]["code"] == -31001
    _forwarded(proxy, "claude_code_session", {"action": "get"}, "Bearer other-" + marker)
    proxy.assert_not_forwarded(marker)
