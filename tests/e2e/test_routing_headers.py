"""MCP 2026-07-28 routing headers (Mcp-Method, Mcp-Name) must agree with the body.

The filter decides on the body; a router or server acting on the headers
must not be fooled into running what the policy never judged. A mismatch is
refused as servers must refuse it: HTTP 400, JSON-RPC -32020. Agreeing
headers (plain or `=?base64?...?=`) pass with the request.
"""

from __future__ import annotations

import base64

import pytest

from assertions import assert_http_error
from policy_proxy import PolicyProxy, new_marker

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
