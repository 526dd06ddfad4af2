"""Tool-name patterns: `*` in a `tools` key or a `hide` entry is a glob.

Under `default: allow`, `"delete_*": {"action": "deny"}` must refuse every
delete (it used to match nothing). An exact entry beats any pattern, and the
most specific pattern beats the others; the refusal names the entry
(`tools.delete_*`). tools/list answers lose what the patterns refuse or
hide. Two equally specific overlapping patterns with different rules stop
Envoy (see test_policy_config.py); a require rule that passes on absence
loads with a warning in the log.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from assertions import RATE_LIMITED, assert_policy_refusal, parse_json
from conftest import EnvoyPool, policy_for
from policy_proxy import JSON_HEADERS, PolicyProxy, call_message, mcp_policy_stats, new_marker
from recording_upstream import upstream_tools

DELETE_REASON = "no deletes, whatever the name"

PATTERNS: dict[str, Any] = {
    "version": "1",
    "default": "allow",
    "tools": {
        "delete_*": {"action": "deny", "reason": DELETE_REASON},
        # Exact name first: claude_code_session stays usable.
        "claude_code_*": {"action": "deny"},
        "claude_code_session": {},
        # More specific than "claude_code_*" (13 literal characters vs 12).
        "claude_code_*eck": {},
        "*t_note": {"action": "deny"},
        "read_*": {"limits": [{"counter": "reads", "window": "day", "max": 2, "scope": "grant"}]},
    },
    "hide": ["secret_*"],
}

# Refused tool name -> the rule the refusal names.
REFUSED = {
    "delete_everything": "tools.delete_*",
    "delete_": "tools.delete_*",
    "delete_x_made_up": "tools.delete_*",
    "claude_code_reply": "tools.claude_code_*",
    "edit_note": "tools.*t_note",
    "secret_tool": "hide",
    "secret_anything": "hide",
}
ALLOWED = ["claude_code_session", "claude_code_check", "claude_code", "Claude_Code_Session", "echo", "deletex"]


@pytest.fixture
def proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return envoys.proxy(policy_for(PATTERNS, mode), mode)


@pytest.mark.parametrize("tool", REFUSED.keys())
def test_pattern_refusals_never_reach_the_server(proxy: PolicyProxy, tool: str) -> None:
    marker = new_marker()
    response = proxy.call(tool, {"m": marker}, request_id=marker, marker=marker)
    error = assert_policy_refusal(response, request_id=marker, tool=tool)
    assert error["data"]["rule"] == REFUSED[tool], response.text
    if REFUSED[tool] == "tools.delete_*":
        assert DELETE_REASON in error["message"]
    proxy.assert_refused_and_alive(marker)


def test_escaped_name_is_matched_after_unescaping(proxy: PolicyProxy) -> None:
    """`delete\\u005fall` is `delete_all` to the server, so to the patterns too."""
    marker = new_marker()
    body = ('{"jsonrpc":"2.0","id":"%s","method":"tools/call","params":{"name":"delete\\u005fall","arguments":{}}}' % marker)
    response = proxy.post(body.encode(), marker=marker)
    error = assert_policy_refusal(response, request_id=marker, tool="delete_all")
    assert error["data"]["rule"] == "tools.delete_*"
    proxy.assert_refused_and_alive(marker)


@pytest.mark.parametrize("tool", ALLOWED)
def test_exact_and_more_specific_entries_let_calls_through(proxy: PolicyProxy, tool: str) -> None:
    marker = new_marker()
    response = proxy.call(tool, {"m": marker}, request_id=marker, marker=marker)
    message = proxy.assert_upstream_answered(response, marker, request_id=marker)
    assert message["result"]["structuredContent"]["name"] == tool


def test_pattern_counter_is_shared_by_every_matching_tool(proxy: PolicyProxy) -> None:
    grant = {"authorization": "Bearer patterns-" + new_marker()}
    for tool in ["read_notes", "read_anything"]:
        marker = new_marker()
        response = proxy.call(tool, {"m": marker}, request_id=marker, marker=marker, headers=grant)
        proxy.assert_upstream_answered(response, marker, request_id=marker)
    marker = new_marker()
    response = proxy.call("read_more", {"m": marker}, request_id=marker, marker=marker, headers=grant)
    assert_policy_refusal(response, request_id=marker, tool="read_more", code=RATE_LIMITED)
    proxy.assert_refused_and_alive(marker)


def test_tools_list_loses_what_patterns_refuse_or_hide(proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = proxy.post({"jsonrpc": "2.0", "id": marker, "method": "tools/list"}, marker=marker)
    proxy.assert_forwarded(marker)
    names = [tool["name"] for tool in parse_json(response.content)["result"]["tools"]]
    expected = [t["name"] for t in upstream_tools() if t["name"] not in REFUSED]
    assert names == expected
    assert {"claude_code_session", "claude_code_check", "read_notes"} <= set(names)
    assert not {"claude_code_reply", "delete_everything", "edit_note", "secret_tool"} & set(names)


def test_calls_are_counted_under_their_pattern(envoys: EnvoyPool) -> None:
    """One stats family per pattern entry: invented names add no stats."""
    envoy = envoys.envoy(PATTERNS)
    before = mcp_policy_stats(envoy)
    for i in range(3):
        httpx.post(envoy.url + "/mcp", json=call_message(f"delete_made_up_{i}", {}), headers=JSON_HEADERS, timeout=10)
    after = mcp_policy_stats(envoy)
    key = "mcp_policy_pattern_delete___denied"
    assert after[key] == before.get(key, 0) + 3, sorted(k for k in after if "pattern" in k)
    assert not any("made_up" in k for k in after)


def test_require_passing_on_absence_loads_with_a_warning(envoys: EnvoyPool) -> None:
    policy = {
        "version": "1",
        "default": "deny",
        "tools": {"echo": {"rules": [{"name": "not-loud", "require": [{"path": "args.mode", "op": "neq", "value": "loud"}]}]}},
    }
    envoy = envoys.envoy(policy)
    needle = "policy.tools.echo.rules[0].require: passes when args.mode is missing"
    deadline = time.monotonic() + 10
    while needle not in envoy.log_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    line = next((line for line in envoy.log_text().splitlines() if needle in line), None)
    assert line is not None, envoy.log_tail()
    assert "warn" in line.lower() and '"op": "exists", "value": true' in line, line
    # And it is true: the call without the argument is forwarded.
    marker = new_marker()
    response = httpx.post(envoy.url + "/mcp", json=call_message("echo", {"m": marker}, request_id=marker),
                          headers={**JSON_HEADERS, "x-test-marker": marker}, timeout=10)  # fmt: skip
    assert "result" in response.json(), response.text
