"""PolicyLayer's spellings, verbatim, enforce as their source says: the FAQ
`rate_limit: {"max", "window": 60}`, `all_tools`, `require` / `deny_if`
directly on a tool, capitalised risk names."""

from __future__ import annotations

import pytest

from conftest import EnvoyPool, policy_for
from policy_proxy import new_marker

POLICY = {
    "version": "1",
    "default": "deny",
    "hide": ["claude_code"],
    "all_tools": {"limits": [{"counter": "pl_all", "window": "week", "max": 1000, "scope": "grant"}]},
    "risk_actions": {"Destructive": "deny"},
    "tools": {
        "echo": {"rate_limit": {"max": 2, "window": 60}, "risk": "Read"},
        "claude_code_session": {
            "risk": "Read",
            "require": [{"path": "args.action", "op": "in", "value": ["list", "get", "cancel"]}],
            "deny_if": [{"path": "args.action", "op": "eq", "value": "cancel"}],
        },
        "claude_code_check": {},
    },
}


@pytest.fixture
def proxy(envoys: EnvoyPool, mode: str):
    return envoys.proxy(policy_for(POLICY, mode), mode, allowed_tool="claude_code_session",
                        allowed_arguments={"action": "list"})


def _refused(proxy, tool: str, arguments: dict, code: int) -> None:
    marker = new_marker()
    response = proxy.call(tool, {**arguments, "m": marker}, marker=marker)
    assert response.json()["error"]["code"] == code, response.text
    proxy.assert_refused_and_alive(marker)


def test_tool_level_deny_if_and_require(proxy) -> None:
    _refused(proxy, "claude_code_session", {"action": "cancel", "sessionId": "s"}, -31001)
    _refused(proxy, "claude_code_session", {"action": "drop"}, -31001)
    _refused(proxy, "claude_code_session", {}, -31001)


def test_hidden_and_unclassified_destructive(proxy) -> None:
    _refused(proxy, "claude_code", {"prompt": "x"}, -31001)
    # Listed but never classified: the worst is assumed, and Destructive is denied.
    _refused(proxy, "claude_code_check", {"action": "poll", "sessionId": "s"}, -31001)


def test_faq_rate_limit_of_two_a_minute_per_grant(envoys: EnvoyPool, mode: str) -> None:
    proxy = envoys.proxy(policy_for(POLICY, mode), mode, allowed_tool="claude_code_session",
                         allowed_arguments={"action": "list"})
    grant = {"authorization": "Bearer pl-" + new_marker()}
    for _ in range(2):
        marker = new_marker()
        response = proxy.call("echo", {"m": marker}, request_id=marker, marker=marker, headers=grant)
        proxy.assert_upstream_answered(response, marker, marker)
    marker = new_marker()
    refused = proxy.call("echo", {"m": marker}, marker=marker, headers=grant)
    error = refused.json()["error"]
    assert error["code"] == -31002 and error["data"]["counter"] == "tools.echo.rate_limit", refused.text
    proxy.assert_refused_and_alive(marker)
