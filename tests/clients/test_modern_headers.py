"""MCP 2026-07-28 routing headers against a real 2026-07-28 server (Python mcp 2.3.0).

Requests are crafted with httpx exactly as mcp 2.3.0 sends them (stateless:
no initialize, no session; `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`
and the `_meta` envelope), then one header is made to disagree with the
body. The filter must refuse a disagreement with HTTP 400 / -32020 (as the
server itself would) and let an agreeing request through, decoding a base64
`=?base64?...?=` Mcp-Name for a non-ASCII tool name.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import EnvoyPool, start_server
from specs import NON_ASCII_TOOL, SERVERS, policy

HEADER_MISMATCH = -32020
VERSION = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": VERSION,
    "io.modelcontextprotocol/clientInfo": {"name": "crafted", "version": "0"},
    "io.modelcontextprotocol/clientCapabilities": {},
}
_ids = itertools.count(1)


def b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


@pytest.fixture(scope="module")
def modern(logs) -> Iterator[int]:  # noqa: ANN001
    yield from start_server(SERVERS["modern"].kind, logs)


def post(url: str, tool: str, args: dict[str, Any], **headers: str) -> httpx.Response:
    body = {"jsonrpc": "2.0", "id": next(_ids), "method": "tools/call",
            "params": {"name": tool, "arguments": args, "_meta": META}}  # fmt: skip
    sent = {"accept": "application/json, text/event-stream", "mcp-protocol-version": VERSION}
    sent.update({key.replace("_", "-"): value for key, value in headers.items()})
    return httpx.post(url, json=body, headers=sent, timeout=10)


def assert_mismatch(response: httpx.Response, what: str) -> None:
    assert response.status_code == 400, response.text
    assert response.headers.get("x-mcp-policy") == "invalid", response.headers
    error = response.json()["error"]
    assert error["code"] == HEADER_MISMATCH and what in error["message"], error


def assert_ran(response: httpx.Response, text: str) -> None:
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result.get("isError") is False and text in result["content"][0]["text"], result


def test_matching_headers_pass(modern: int, envoys: EnvoyPool, mode: str) -> None:
    url = envoys.get(policy(), modern, mode).url + "/mcp"
    assert_ran(post(url, "echo", {"message": "hi"}, mcp_method="tools/call", mcp_name="echo"), "Echo: hi")
    # Missing headers are not the filter's business (it decides on the body):
    # it forwards, and the 2026-07-28 server itself insists on Mcp-Method.
    bare = post(url, "echo", {"message": "bare"})
    assert bare.status_code == 400 and "x-mcp-policy" not in bare.headers, (bare.headers, bare.text)
    assert bare.json()["error"]["code"] == HEADER_MISMATCH, bare.text


def test_base64_name_of_a_non_ascii_tool_is_decoded(modern: int, envoys: EnvoyPool, mode: str) -> None:
    url = envoys.get(policy(), modern, mode).url + "/mcp"
    ok = post(url, NON_ASCII_TOOL, {"name": "Envoy"}, mcp_method="tools/call", mcp_name=b64(NON_ASCII_TOOL))
    assert_ran(ok, "Grüß Gott, Envoy")
    # The same base64 for another name is a mismatch, not a pass.
    other = post(url, "echo", {"message": "x"}, mcp_method="tools/call", mcp_name=b64(NON_ASCII_TOOL))
    assert_mismatch(other, "Mcp-Name")
    broken = post(url, NON_ASCII_TOOL, {"name": "x"}, mcp_method="tools/call", mcp_name="=?base64?***?=")
    assert_mismatch(broken, "Mcp-Name")


def test_disagreeing_headers_are_refused(modern: int, envoys: EnvoyPool, mode: str) -> None:
    url = envoys.get(policy(), modern, mode).url + "/mcp"
    # A router trusting the header would see the allowed `echo`; the server would run the hidden tool.
    assert_mismatch(post(url, "get-env", {}, mcp_method="tools/call", mcp_name="echo"), "Mcp-Name")
    assert_mismatch(post(url, "echo", {"message": "x"}, mcp_method="tools/list"), "Mcp-Method")
    assert_mismatch(post(url, "echo", {"message": "x"}, mcp_method="tools/call", mcp_name="Echo"), "Mcp-Name")
    # and the filter still serves
    assert_ran(post(url, "echo", {"message": "after"}, mcp_method="tools/call", mcp_name="echo"), "Echo: after")


def test_server_applies_the_same_rule(modern: int) -> None:
    """The reference: the 2.3.0 server answers a mismatch with 400 / -32020 too (without the filter)."""
    response = post(f"http://127.0.0.1:{modern}/mcp", "echo", {"message": "x"}, mcp_method="tools/call",
                    mcp_name="get-env")  # fmt: skip
    assert response.status_code == 400 and response.json()["error"]["code"] == HEADER_MISMATCH, response.text
