"""MCP 2026-07-28 routing headers (Mcp-Method, Mcp-Name) must agree with the body.

The filter decides on the body; a router or server acting on the headers
must not be fooled into running what the policy never judged. A mismatch is
refused as servers must refuse it: HTTP 400, JSON-RPC -32020. Agreeing
headers (plain or `=?base64?...?=`) pass with the request. A repeated header
or a comma-joined value is refused the same way: a router reading the last
value (or Node's joined one) would act on a name the filter never checked.
"""

from __future__ import annotations

import base64

import pytest

from assertions import assert_http_error
from policy_proxy import JSON_HEADERS, PolicyProxy, call_message, new_marker
from raw_http import H2Request, h2_exchange, http1_exchange, http1_request, jsonrpc_bytes
from recording_upstream import MARKER_HEADER

HEADER_MISMATCH = -32020


def _b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


@pytest.mark.parametrize(
    "headers",
    [{"mcp-method": "tools/call", "mcp-name": "echo"}, {"mcp-method": "tools/call", "mcp-name": _b64("echo")}],
    ids=["plain", "base64"],
)
def test_agreeing_headers_pass(main_proxy: PolicyProxy, headers: dict[str, str]) -> None:
    marker = new_marker()
    response = main_proxy.call("echo", {"m": marker}, request_id=1, headers=headers, marker=marker)
    main_proxy.assert_upstream_answered(response, marker, request_id=1)


@pytest.mark.parametrize(
    ("tool", "headers"),
    [
        ("claude_code", {"mcp-method": "tools/call", "mcp-name": "echo"}),  # header says allowed tool
        ("echo", {"mcp-method": "tools/call", "mcp-name": "claude_code"}),  # header says denied tool
        ("claude_code", {"mcp-method": "ping"}),
        ("claude_code", {"mcp-method": "tools/call", "mcp-name": _b64("echo")}),
    ],
    ids=["name-allowed-body-denied", "name-denied-body-allowed", "method-ping", "base64-name-allowed"],
)
def test_disagreeing_headers_are_refused(main_proxy: PolicyProxy, tool: str, headers: dict[str, str]) -> None:
    marker = new_marker()
    response = main_proxy.call(tool, {"m": marker}, request_id=1, headers=headers, marker=marker)
    assert_http_error(response, 400, HEADER_MISMATCH)
    main_proxy.assert_refused_and_alive(marker)


REPEATED = {
    "name-twice-agreeing-first": [("mcp-method", "tools/call"), ("mcp-name", "echo"), ("mcp-name", "claude_code")],
    "name-twice-agreeing-last": [("mcp-method", "tools/call"), ("mcp-name", "claude_code"), ("mcp-name", "echo")],
    "name-twice-same": [("mcp-name", "echo"), ("mcp-name", "echo")],
    "method-twice": [("mcp-method", "tools/call"), ("mcp-method", "tools/call")],
    "name-comma-joined": [("mcp-method", "tools/call"), ("mcp-name", "echo,claude_code")],
    "name-comma-space": [("mcp-name", "echo, echo")],
    "method-comma-joined": [("mcp-method", "tools/call,tools/call"), ("mcp-name", "echo")],
}


@pytest.mark.parametrize("protocol", ["http1", "h2"])
@pytest.mark.parametrize("shape", REPEATED)
def test_repeated_or_joined_routing_headers_are_refused(main_proxy: PolicyProxy, protocol: str, shape: str) -> None:
    marker = new_marker()
    headers = [*JSON_HEADERS.items(), (MARKER_HEADER, marker), *REPEATED[shape]]
    body = jsonrpc_bytes(call_message("echo", {"m": marker}, 1))
    if protocol == "h2":
        [answer] = h2_exchange(main_proxy.port, [H2Request(headers=headers, body_parts=[body])])
    else:
        [answer] = http1_exchange(main_proxy.port, http1_request("POST", "/mcp", headers, body))
    error = assert_http_error(answer, 400, HEADER_MISMATCH, null_id=True)
    assert "Mcp-" in error["message"], error
    main_proxy.assert_refused_and_alive(marker)


def test_a_resource_uri_with_a_comma_passes_when_it_matches(main_proxy: PolicyProxy) -> None:
    """Resource URIs may hold commas (tool and prompt names cannot)."""
    marker = new_marker()
    message = {"jsonrpc": "2.0", "id": 3, "method": "resources/read", "params": {"uri": "file:///a,b.txt"}}
    response = main_proxy.post(message, marker=marker,
                               headers={"mcp-method": "resources/read", "mcp-name": "file:///a,b.txt"})  # fmt: skip
    assert response.status_code != 400, response.text
    main_proxy.assert_forwarded(marker)
