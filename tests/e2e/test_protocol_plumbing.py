"""Under default deny, everything that is not a tool call still flows.

"Everything else is denied" is about tools: if initialize, notifications,
ping, listings or the client's answers to server requests were refused, no
agent could even connect. Each message must reach the server byte-identical.
"""

from __future__ import annotations

from typing import Any

import pytest

from policy_proxy import PolicyProxy, new_marker, to_bytes


def _request(method: str, params: dict[str, Any] | None, marker: str) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": marker, "method": method}
    if params is not None:
        message["params"] = params
    return message


REQUESTS: dict[str, dict[str, Any] | None] = {
    "initialize": {
        "protocolVersion": "2025-06-18",
        "capabilities": {"roots": {"listChanged": True}, "sampling": {}, "elicitation": {}},
        "clientInfo": {"name": "e2e", "version": "1"},
    },
    "ping": None,
    "tools/list": {},
    "resources/list": {"cursor": "c1"},
    "resources/templates/list": {},
    "resources/read": {"uri": "file:///etc/hostname"},
    "resources/subscribe": {"uri": "file:///x"},
    "resources/unsubscribe": {"uri": "file:///x"},
    "prompts/list": {},
    "prompts/get": {"name": "review", "arguments": {"code": "x"}},
    "completion/complete": {"ref": {"type": "ref/prompt", "name": "review"}, "argument": {"name": "code", "value": "x"}},
    "logging/setLevel": {"level": "debug"},
}


@pytest.mark.parametrize("method", REQUESTS.keys())
def test_requests_pass_unchanged(main_proxy: PolicyProxy, method: str) -> None:
    marker = new_marker()
    body = to_bytes(_request(method, REQUESTS[method], marker))
    response = main_proxy.post(body, marker=marker)
    main_proxy.assert_upstream_answered(response, marker, request_id=marker)
    main_proxy.assert_forwarded(marker, body)


NOTIFICATIONS = {
    "notifications/initialized": None,
    "notifications/cancelled": {"requestId": 3, "reason": "user"},
    "notifications/progress": {"progressToken": "t", "progress": 1, "total": 2},
    "notifications/roots/list_changed": None,
}


@pytest.mark.parametrize("method", NOTIFICATIONS.keys())
def test_notifications_pass_unchanged(main_proxy: PolicyProxy, method: str) -> None:
    marker = new_marker()
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": {**(NOTIFICATIONS[method] or {}), "_meta": {"m": marker}}}
    response = main_proxy.post(message, marker=marker)
    assert response.status_code == 202, response.text
    main_proxy.assert_forwarded(marker, message)


CLIENT_RESPONSES = {
    "roots-list-result": {"result": {"roots": [{"uri": "file:///work", "name": "work"}]}},
    "sampling-result": {"result": {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"}},
    "elicitation-result": {"result": {"action": "decline"}},
    "error": {"error": {"code": -32601, "message": "Method not found"}},
}


@pytest.mark.parametrize("answer", CLIENT_RESPONSES.values(), ids=CLIENT_RESPONSES.keys())
def test_client_responses_pass_unchanged(main_proxy: PolicyProxy, answer: dict[str, Any]) -> None:
    """Answers to server requests (sampling, roots, elicitation) are JSON-RPC responses."""
    marker = new_marker()
    message = {"jsonrpc": "2.0", "id": marker, **answer}
    response = main_proxy.post(message, marker=marker)
    assert response.status_code == 202, response.text
    main_proxy.assert_forwarded(marker, message)


def test_initialize_keeps_session_header(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = main_proxy.post(_request("initialize", REQUESTS["initialize"], marker), marker=marker)
    main_proxy.assert_upstream_answered(response, marker, request_id=marker)
    assert response.headers.get("mcp-session-id"), "Mcp-Session-Id must reach the client"


def test_get_and_delete_without_body_pass(main_proxy: PolicyProxy) -> None:
    """GET opens the server's SSE stream; DELETE ends a session: no body to inspect."""
    for method, status in (("GET", 405), ("DELETE", 200)):
        marker = new_marker()
        response = main_proxy.client.request(method, "/mcp", headers={"x-test-marker": marker, "mcp-session-id": "s1"})
        assert response.status_code == status, response.text
        main_proxy.upstream.wait_for(marker)


def test_batch_of_plumbing_passes_unchanged(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    batch = [
        _request("ping", None, marker + "-1"),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        _request("tools/list", {}, marker + "-2"),
    ]
    response = main_proxy.post(batch, marker=marker)
    assert response.status_code == 200, response.text
    answers = response.json()
    assert [a["id"] for a in answers] == [marker + "-1", marker + "-2"]
    main_proxy.assert_forwarded(marker, batch)
