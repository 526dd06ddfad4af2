"""tools/call decisions: what passes unchanged, what is refused and how.

A refused call is answered HTTP 200 with a JSON-RPC error carrying the
request's id exactly (the official clients then raise McpError with the
code and data) and never reaches the MCP server.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from assertions import assert_policy_refusal, assert_tool_result_refusal, same_id
from conftest import EnvoyPool, policy_for
from policies import ALLOW_BY_DEFAULT, CLAUDE_CODE_REASON, DELETE_REASON, MAIN, with_settings
from policy_proxy import PolicyProxy, call_message, new_marker, to_bytes


def test_allowed_call_is_forwarded_byte_identical(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    # Odd but valid formatting: the filter must forward the bytes, not a re-serialisation.
    body = (
        '{ "params" : {"arguments": {"text": "hé \\u00e9 \\ud83d\\ude00", "n": 1.50, "m": "%s"},'
        ' "name":"echo"}, "id" : 42 ,"method":"tools/call", "jsonrpc":"2.0" }' % marker
    ).encode()
    response = main_proxy.post(body, marker=marker)
    message = main_proxy.assert_upstream_answered(response, marker, request_id=42)
    assert message["result"]["structuredContent"]["name"] == "echo"
    main_proxy.assert_forwarded(marker, body)


def test_listed_denial_names_tool_and_reason(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = main_proxy.call("claude_code", {"prompt": "rm -rf / " + marker}, request_id=7, marker=marker)
    assert_policy_refusal(response, request_id=7, tool="claude_code", reason=CLAUDE_CODE_REASON)
    main_proxy.assert_refused_and_alive(marker)


def test_unlisted_tool_is_refused_under_default_deny(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = main_proxy.call("claude_code_check", {"action": "poll", "sessionId": marker}, request_id=8, marker=marker)
    assert_policy_refusal(response, request_id=8, tool="claude_code_check")
    main_proxy.assert_refused_and_alive(marker)


def test_hidden_tool_is_refused_as_hidden(main_proxy: PolicyProxy) -> None:
    """secret_tool is allowed by its rule but hidden: hiding wins, and the reason says so."""
    marker = new_marker()
    response = main_proxy.call("secret_tool", {"m": marker}, request_id=9, marker=marker)
    error = assert_policy_refusal(response, request_id=9, tool="secret_tool")
    assert "hidden" in error["message"].lower() and "hidden" in str(error["data"]["reason"]).lower(), response.text
    main_proxy.assert_refused_and_alive(marker)


IDS: dict[str, Any] = {
    "int": 7,
    "zero": 0,
    "negative": -3,
    "float": 1.5,
    "exponent": 1e-7,
    "beyond-double-precision": 2**53 + 1,
    "string": "abc",
    "empty-string": "",
    "numeric-string": "7",
    "unicode-string": "é☃😀",
    "string-with-quotes": 'a"b\\c',
}


@pytest.mark.parametrize("request_id", IDS.values(), ids=IDS.keys())
def test_refusal_echoes_id_exactly(main_proxy: PolicyProxy, request_id: Any) -> None:
    marker = new_marker()
    response = main_proxy.call("delete_everything", {"m": marker}, request_id=request_id, marker=marker)
    assert_policy_refusal(response, request_id=request_id, tool="delete_everything", reason=DELETE_REASON)
    main_proxy.assert_refused_and_alive(marker)


@pytest.mark.parametrize(
    "raw_id", ["1.0", "1E2", "-0", "123456789012345678901234567890", '"\\u0061b"'], ids=["1.0", "1E2", "-0", "huge", "escaped"]
)
def test_refusal_id_keeps_json_value(main_proxy: PolicyProxy, raw_id: str) -> None:
    """Number spellings the filter might re-serialise differently keep their JSON value."""
    marker = new_marker()
    body = '{"jsonrpc":"2.0","id":%s,"method":"tools/call","params":{"name":"claude_code","arguments":{"m":"%s"}}}'
    response = main_proxy.post((body % (raw_id, marker)).encode(), marker=marker)
    assert_policy_refusal(response, request_id=json.loads(raw_id), tool="claude_code")
    main_proxy.assert_refused_and_alive(marker)


def test_escaped_name_of_denied_tool_is_refused(main_proxy: PolicyProxy) -> None:
    """"\\u0063laude_code" is claude_code to every server, so it is to the filter."""
    marker = new_marker()
    body = '{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"\\u0063laude_code","arguments":{"m":"%s"}}}'
    response = main_proxy.post((body % marker).encode(), marker=marker)
    assert_policy_refusal(response, request_id=3, tool="claude_code", reason=CLAUDE_CODE_REASON)
    main_proxy.assert_refused_and_alive(marker)


def test_escaped_name_of_allowed_tool_passes_unchanged(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = ('{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"\\u0065c\\u0068o","arguments":{"m":"%s"}}}'
            % marker).encode()  # fmt: skip
    response = main_proxy.post(body, marker=marker)
    main_proxy.assert_upstream_answered(response, marker, request_id=3)
    main_proxy.assert_forwarded(marker, body)


NEAR_MISSES = ["Claude_Code_Session", "claude_code_session ", " claude_code_session", "ECHO", "echo\u0000", "echo\u200b",
               "ｅｃｈｏ", "echo/", "echo\n", "claude_code_sessio"]  # fmt: skip


@pytest.mark.parametrize("name", NEAR_MISSES, ids=[repr(n) for n in NEAR_MISSES])
def test_names_match_exactly(main_proxy: PolicyProxy, name: str) -> None:
    """No case folding, trimming or normalisation: a near miss is another (unlisted) tool."""
    marker = new_marker()
    response = main_proxy.call(name, {"m": marker}, request_id=11, marker=marker)
    assert_policy_refusal(response, request_id=11, tool=name)
    main_proxy.assert_refused_and_alive(marker)


LONG_NAME = "echo" + "x" * 200_000


def test_very_long_tool_name_is_refused(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = main_proxy.call(LONG_NAME, {"m": marker}, request_id=12, marker=marker)
    # The answer may shorten the name in its message; it must still be a policy refusal.
    assert_policy_refusal(response, request_id=12, tool=LONG_NAME, check_tool_in_message=False)
    main_proxy.assert_refused_and_alive(marker)


def test_refusal_is_not_an_amplifier(main_proxy: PolicyProxy) -> None:
    """A 200 KB name must not come back several times over (nor flood the log)."""
    marker = new_marker()
    request = to_bytes(call_message(LONG_NAME, {"m": marker}, 12))
    response = main_proxy.post(request, marker=marker)
    assert response.status_code == 200
    assert len(response.content) <= len(request), (
        f"refusal of a {len(request)}-byte request is {len(response.content)} bytes"
    )


@pytest.mark.parametrize("path", ["/message?sessionId=x", "/", "/anything", "/mcp/", "/MCP", "/mcp?x=1#f"])
def test_every_path_is_inspected(main_proxy: PolicyProxy, path: str) -> None:
    """Legacy HTTP+SSE POSTs to /message?sessionId=...; servers mount MCP anywhere."""
    marker = new_marker()
    response = main_proxy.call("claude_code", {"prompt": marker}, request_id=5, path=path, marker=marker)
    assert_policy_refusal(response, request_id=5, tool="claude_code")
    main_proxy.assert_refused_and_alive(marker)
    allowed = new_marker()
    response = main_proxy.call("echo", {"m": allowed}, request_id=6, path=path, marker=allowed)
    main_proxy.assert_upstream_answered(response, allowed, request_id=6)
    assert main_proxy.upstream.wait_for(allowed).path == path.split("#")[0]


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE", "GET", "OPTIONS"])
def test_every_method_with_a_body_is_inspected(main_proxy: PolicyProxy, method: str) -> None:
    marker = new_marker()
    response = main_proxy.call("claude_code", {"prompt": marker}, request_id=5, method=method, marker=marker)
    assert_policy_refusal(response, request_id=5, tool="claude_code")
    main_proxy.assert_refused_and_alive(marker)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "application/octet-stream", None, "application/json; charset=utf-8"],
)
def test_every_content_type_is_inspected(main_proxy: PolicyProxy, content_type: str | None) -> None:
    """Servers parse JSON whatever the Content-Type says, so the filter does too."""
    marker = new_marker()
    headers = {"content-type": content_type} if content_type else {}
    request = main_proxy.client.build_request(
        "POST", "/mcp", content=to_bytes(call_message("claude_code", {"prompt": marker}, 5)),
        headers={"x-test-marker": marker, **headers},
    )  # fmt: skip
    if content_type is None:
        request.headers.pop("content-type", None)
    response = main_proxy.client.send(request)
    assert_policy_refusal(response, request_id=5, tool="claude_code")
    main_proxy.assert_refused_and_alive(marker)


# -- error_style "tool_result" ------------------------------------------------


@pytest.fixture
def tool_result_proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return envoys.proxy(policy_for(with_settings(MAIN, error_style="tool_result"), mode), mode)


def test_tool_result_style_refusal(tool_result_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = tool_result_proxy.call("claude_code", {"prompt": marker}, request_id="r-1", marker=marker)
    assert_tool_result_refusal(response, request_id="r-1", tool="claude_code", reason=CLAUDE_CODE_REASON)
    tool_result_proxy.assert_refused_and_alive(marker)


def test_tool_result_style_keeps_protocol_errors(tool_result_proxy: PolicyProxy) -> None:
    """Malformed input is still a 400 JSON-RPC error: there is no tool call to answer."""
    marker = new_marker()
    response = tool_result_proxy.post(b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"} ' + marker.encode(), marker=marker)
    assert response.status_code == 400, response.text
    tool_result_proxy.assert_refused_and_alive(marker)


# -- default allow ------------------------------------------------------------


@pytest.fixture
def allow_proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return envoys.proxy(policy_for(ALLOW_BY_DEFAULT, mode), mode)


@pytest.mark.parametrize("tool", ["claude_code", "claude_code_check", "never_heard_of_it"])
def test_default_allow_forwards_unlisted_tools(allow_proxy: PolicyProxy, tool: str) -> None:
    marker = new_marker()
    response = allow_proxy.call(tool, {"m": marker}, request_id=1, marker=marker)
    allow_proxy.assert_upstream_answered(response, marker, request_id=1)


def test_default_allow_still_refuses_denied_and_hidden(allow_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = allow_proxy.call("delete_everything", {"m": marker}, request_id=1, marker=marker)
    assert_policy_refusal(response, request_id=1, tool="delete_everything", reason=DELETE_REASON)
    allow_proxy.assert_refused_and_alive(marker)
    marker = new_marker()
    response = allow_proxy.call("secret_tool", {"m": marker}, request_id=2, marker=marker)
    assert_policy_refusal(response, request_id=2, tool="secret_tool")
    allow_proxy.assert_refused_and_alive(marker)


def test_refusal_of_string_id_is_not_confused_with_number(main_proxy: PolicyProxy) -> None:
    """A client that sent "7" must get "7" back, not 7 (it matches answers by id)."""
    marker = new_marker()
    response = main_proxy.call("claude_code", {"prompt": marker}, request_id="7", marker=marker)
    message = response.json()
    assert same_id(message.get("id"), "7"), response.text
    main_proxy.assert_refused_and_alive(marker)
