"""The seed policy (envoy/seed-policy.json, verbatim) in front of the Claude Code catalog.

Default deny, only `claude_code_session` listed (10 calls a minute per
grant). An agent can connect and list tools, sees only claude_code_session,
can call it, and every other tool of the server is refused before it runs.
These tests call claude_code_session fewer than 10 times per Envoy.
"""

from __future__ import annotations

from typing import Any

import pytest

from assertions import assert_json_answer, assert_policy_refusal, parse_json
from policy_proxy import PolicyProxy, call_message, new_marker, to_bytes

CATALOG_CALLS: dict[str, dict[str, Any]] = {
    "claude_code": {"prompt": "refactor the billing module", "cwd": "/work", "maxTurns": 5},
    "claude_code_reply": {"sessionId": "s-1", "prompt": "now add tests"},
    "claude_code_check": {"action": "respond_permission", "sessionId": "s-1", "requestId": "r1", "decision": "allow"},
}


def test_initialize_works(seed_proxy: PolicyProxy) -> None:
    marker = new_marker()
    message = {"jsonrpc": "2.0", "id": 0, "method": "initialize",
               "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": marker, "version": "1"}}}  # fmt: skip
    response = seed_proxy.post(message, marker=marker)
    assert_json_answer(response, 200)
    assert response.headers.get("mcp-session-id")
    seed_proxy.assert_forwarded(marker, message)


def test_tools_list_shows_only_claude_code_session(seed_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = seed_proxy.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, marker=marker)
    names = [tool["name"] for tool in assert_json_answer(response, 200)["result"]["tools"]]
    assert names == ["claude_code_session"]
    seed_proxy.assert_forwarded(marker)


def test_tools_list_as_sse_shows_only_claude_code_session(seed_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = seed_proxy.post({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, path="/mcp?sse=1", marker=marker)
    data = [line[5:] for line in response.content.split(b"\n") if line.startswith(b"data:")]
    assert len(data) == 1, response.text
    assert [tool["name"] for tool in parse_json(data[0])["result"]["tools"]] == ["claude_code_session"]


def test_claude_code_session_reaches_the_server(seed_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = to_bytes(call_message("claude_code_session", {"action": "get", "sessionId": marker}, 5))
    response = seed_proxy.post(body, marker=marker)
    seed_proxy.assert_upstream_answered(response, marker, request_id=5)
    seed_proxy.assert_forwarded(marker, body)
    seed_proxy.allowed_calls += 1


@pytest.mark.parametrize("tool", CATALOG_CALLS.keys())
def test_every_other_catalog_tool_is_refused(seed_proxy: PolicyProxy, tool: str) -> None:
    marker = new_marker()
    response = seed_proxy.call(tool, {**CATALOG_CALLS[tool], "_m": marker}, request_id=marker, marker=marker)
    assert_policy_refusal(response, request_id=marker, tool=tool)
    seed_proxy.assert_refused_and_alive(marker)


@pytest.mark.parametrize("name", ["Claude_Code_Session", "claude_code_session "])
def test_near_misses_of_the_allowed_name_are_refused(seed_proxy: PolicyProxy, name: str) -> None:
    marker = new_marker()
    response = seed_proxy.call(name, {"action": "list", "_m": marker}, request_id=2, marker=marker)
    assert_policy_refusal(response, request_id=2, tool=name)
    seed_proxy.assert_refused_and_alive(marker)
