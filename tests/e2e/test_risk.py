"""Risk categories: `risk_actions: {"destructive": "deny"}` in real Envoy.

A call's category comes from the policy (the tool's `risk`, `when` rules on
its arguments), else from the server's own annotations learned from
`tools/list` answers passing through, else, for a tool never seen listed,
`destructive`. The policy wins over the server both ways. Learned hints live
in shared data, so every worker decides the same once any worker saw a list.

The recording upstream announces `echo` and `read_notes` read-only,
`edit_note` as writing but not destructive, the Claude Code tools and
`delete_everything` destructive, and `secret_tool` without annotations
(MCP's defaults make that destructive).
"""

from __future__ import annotations

from typing import Any

import pytest

from assertions import assert_json_answer, assert_policy_refusal, parse_json
from conftest import EnvoyPool, policy_for
from policy_proxy import JSON_HEADERS, PolicyProxy, call_message, new_marker
from raw_http import jsonrpc_bytes, simultaneous_posts
from recording_upstream import MARKER_HEADER, upstream_tools

DESTRUCTIVE_RULE = "risk_actions.destructive"

RISK_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "allow",
    "tools": {
        "wipe": {"risk": "destructive"},  # unknown to the server; the policy says enough
        "read_notes": {"risk": "destructive"},  # the server says read-only: the policy wins
        "delete_everything": {"risk": "read"},  # the server says destructive: the policy wins
        "claude_code_session": {
            "risk": "read",
            "rules": [{"name": "cancel-is-destructive", "when": [{"path": "args.action", "op": "eq", "value": "cancel"}], "risk": "destructive"}],
        },
    },
    "risk_actions": {"destructive": "deny"},
}

# What each tool of the upstream's catalog is, under RISK_POLICY, once listed.
ALLOWED_ONCE_LISTED = {"echo", "edit_note", "delete_everything", "claude_code_session"}
REFUSED_ONCE_LISTED = {"read_notes", "claude_code", "claude_code_reply", "claude_code_check", "secret_tool", "Claude_Code_Session"}


@pytest.fixture
def risk_proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    """RISK_POLICY; tests here list tools first (listing is idempotent), so hints are known."""
    proxy = envoys.proxy(policy_for(RISK_POLICY, mode), mode)
    _list_tools(proxy)
    return proxy


def _list_tools(proxy: PolicyProxy, path: str = "/mcp") -> list[str]:
    marker = new_marker()
    response = proxy.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, path=path, marker=marker)
    if path.endswith("sse=1"):
        data = [line[5:] for line in response.content.split(b"\n") if line.startswith(b"data:")]
        assert len(data) == 1, response.text
        message = parse_json(data[0])
    else:
        message = assert_json_answer(response, 200)
    proxy.assert_forwarded(marker)
    return [tool["name"] for tool in message["result"]["tools"]]


def assert_risk_refused(proxy: PolicyProxy, tool: str, arguments: Any = None, *, source: str) -> None:
    marker = new_marker()
    response = proxy.call(tool, arguments or {}, request_id=marker, marker=marker)
    error = assert_policy_refusal(response, request_id=marker, tool=tool)
    assert error["data"]["rule"] == DESTRUCTIVE_RULE, response.text
    assert f"classified destructive ({source})" in error["data"]["reason"], response.text
    proxy.assert_refused_and_alive(marker)


def assert_allowed(proxy: PolicyProxy, tool: str, arguments: Any = None) -> None:
    marker = new_marker()
    response = proxy.call(tool, arguments or {}, request_id=marker, marker=marker)
    proxy.assert_upstream_answered(response, marker, request_id=marker)


def test_policy_risk_refuses_a_tool_the_server_never_listed(risk_proxy: PolicyProxy) -> None:
    assert_risk_refused(risk_proxy, "wipe", source="by policy")


def test_when_rule_classifies_by_arguments(risk_proxy: PolicyProxy) -> None:
    assert_allowed(risk_proxy, "claude_code_session", {"action": "list"})
    assert_risk_refused(risk_proxy, "claude_code_session", {"action": "cancel", "sessionId": "s-1"}, source="by policy")
    # Written with an escape, still cancel.
    marker = new_marker()
    body = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"claude_code_session","arguments":{"action":"\\u0063ancel"}}}'
    response = risk_proxy.post(body, marker=marker)
    assert assert_policy_refusal(response, request_id=7, tool="claude_code_session")["data"]["rule"] == DESTRUCTIVE_RULE
    risk_proxy.assert_refused_and_alive(marker)


@pytest.mark.parametrize("tool", sorted(ALLOWED_ONCE_LISTED - set(RISK_POLICY["tools"])))
def test_server_annotations_allow_read_and_write_tools(risk_proxy: PolicyProxy, tool: str) -> None:
    assert_allowed(risk_proxy, tool)


@pytest.mark.parametrize("tool", sorted(REFUSED_ONCE_LISTED - set(RISK_POLICY["tools"])))
def test_server_annotations_refuse_destructive_tools(risk_proxy: PolicyProxy, tool: str) -> None:
    assert_risk_refused(risk_proxy, tool, source="by the server's annotations")


def test_never_listed_tools_are_assumed_destructive(risk_proxy: PolicyProxy) -> None:
    assert_risk_refused(
        risk_proxy, "never_listed_tool", source="by default: the server never listed it, so the worst is assumed"
    )


def test_policy_risk_wins_over_the_server_both_ways(risk_proxy: PolicyProxy) -> None:
    assert_risk_refused(risk_proxy, "read_notes", source="by policy")  # server: read-only
    assert_allowed(risk_proxy, "delete_everything")  # server: destructive


def test_tools_list_drops_exactly_the_tools_that_would_be_refused(risk_proxy: PolicyProxy) -> None:
    catalog = {tool["name"] for tool in upstream_tools()}
    assert catalog == ALLOWED_ONCE_LISTED | REFUSED_ONCE_LISTED, "test design: classify every upstream tool"
    assert set(_list_tools(risk_proxy)) == ALLOWED_ONCE_LISTED


def test_learned_hints_are_shared_by_all_workers(envoys: EnvoyPool, mode: str) -> None:
    """Four workers, fresh state: unknown tools are refused everywhere; one list teaches every worker."""
    proxy = envoys.proxy(policy_for(RISK_POLICY, mode), mode, concurrency=4, label="fresh-hints")

    def fire(tools: list[str]) -> list[tuple[str, str, Any]]:
        markers = [new_marker() for _ in tools]
        requests = [([*JSON_HEADERS.items(), (MARKER_HEADER, m)], jsonrpc_bytes(call_message(t, {}, m))) for t, m in zip(tools, markers)]
        return list(zip(tools, markers, simultaneous_posts(proxy.port, requests)))

    def outcome(result: Any) -> str:
        if isinstance(result, str) or result.status != 200:
            return f"broken: {result if isinstance(result, str) else result.status}"
        message = result.json()
        if "result" in message:
            return "allowed"
        if message.get("error", {}).get("data", {}).get("rule") == DESTRUCTIVE_RULE:
            return "refused"
        return f"other: {result.text[:200]}"

    since = proxy.upstream.count()
    refused_markers = []
    before = fire(["echo", "edit_note"] * 12)  # never listed: destructive, on every worker
    assert [outcome(r) for _, _, r in before] == ["refused"] * len(before)
    refused_markers += [m for _, m, _ in before]

    _list_tools(proxy, path="/mcp?sse=1")  # one list, on one worker, as an event stream

    after = fire(["echo", "edit_note", "claude_code_reply", "secret_tool"] * 10)
    expected = {"echo": "allowed", "edit_note": "allowed", "claude_code_reply": "refused", "secret_tool": "refused"}
    wrong = [(tool, outcome(r)) for tool, _, r in after if outcome(r) != expected[tool]]
    assert not wrong, wrong
    refused_markers += [m for tool, m, _ in after if expected[tool] == "refused"]
    proxy.assert_still_serves()
    proxy.assert_outcomes_since(since, [m for tool, m, _ in after if expected[tool] == "allowed"], refused_markers)
    workers = proxy.envoy.worker_connections()
    assert len([w for w, n in workers.items() if n > 0]) == 4, f"not every worker got calls: {workers}"
