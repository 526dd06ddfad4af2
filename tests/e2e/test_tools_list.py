"""tools/list answers lose the tools an agent may not call; nothing else changes.

A model that never sees a tool does not try it. Under default deny only the
listed (allowed) tools remain; hidden tools disappear whatever their rule.
The answer may come as JSON or as an SSE event, with Content-Length or
chunked; its length header must match what the filter sends.
"""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import pytest

from assertions import parse_json
from conftest import EnvoyPool, policy_for
from policies import ALLOW_BY_DEFAULT
from policy_proxy import PolicyProxy, new_marker
from raw_http import H2Request, h2_exchange, http1_exchange, http1_request, jsonrpc_bytes
from recording_upstream import TOOLS_LIST_EXTRAS, upstream_tools

MAIN_VISIBLE = ["claude_code_session", "echo"]  # upstream order
ALLOW_VISIBLE = [t["name"] for t in upstream_tools() if t["name"] not in ("delete_everything", "secret_tool")]


def _list(proxy: PolicyProxy, *, path: str = "/mcp", headers: dict[str, str] | None = None) -> tuple[httpx.Response, str]:
    marker = new_marker()
    response = proxy.post({"jsonrpc": "2.0", "id": marker, "method": "tools/list", "params": {}}, path=path,
                          headers=headers, marker=marker)  # fmt: skip
    proxy.assert_forwarded(marker)
    return response, marker


def _check_length(response: httpx.Response) -> None:
    length = response.headers.get("content-length")
    if length is not None:
        assert int(length) == len(response.content), f"content-length {length} != body {len(response.content)}"


def _check_result(message: dict[str, Any], request_id: str, visible: list[str]) -> None:
    assert message["jsonrpc"] == "2.0" and message["id"] == request_id
    result = message["result"]
    assert [tool["name"] for tool in result["tools"]] == visible
    originals = {tool["name"]: tool for tool in upstream_tools()}
    for tool in result["tools"]:
        assert tool == originals[tool["name"]], f"tool {tool['name']} was altered"
    for key, value in TOOLS_LIST_EXTRAS.items():
        assert result.get(key) == value, f"result.{key} lost"


def _sse_messages(body: bytes) -> list[Any]:
    """JSON payloads of the SSE events that carry data."""
    messages = []
    for event in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = [line[5:].lstrip(b" ") for line in event.split(b"\n") if line.startswith(b"data:")]
        if data and b"".join(data).strip():
            messages.append(parse_json(b"\n".join(data)))
    return messages


def test_json_answer_is_filtered(main_proxy: PolicyProxy) -> None:
    response, marker = _list(main_proxy)
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    _check_length(response)
    _check_result(parse_json(response.content), marker, MAIN_VISIBLE)


def test_chunked_json_answer_is_filtered(main_proxy: PolicyProxy) -> None:
    response, marker = _list(main_proxy, headers={"x-test-chunked-response": "1"})
    _check_length(response)
    _check_result(parse_json(response.content), marker, MAIN_VISIBLE)


@pytest.mark.parametrize("how", ["query", "header", "priming-event", "notification-first"])
def test_sse_answer_is_filtered(main_proxy: PolicyProxy, how: str) -> None:
    path, headers = "/mcp", {}
    if how == "query":
        path = "/mcp?sse=1"
    else:
        headers = {"x-test-sse": {"header": "1", "priming-event": "prime", "notification-first": "notify"}[how]}
    response, marker = _list(main_proxy, path=path, headers=headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    _check_length(response)
    messages = _sse_messages(response.content)
    if how == "notification-first":
        assert len(messages) == 2 and messages[0]["method"] == "notifications/message", response.text
        messages = messages[1:]
    assert len(messages) == 1, response.text
    _check_result(messages[0], marker, MAIN_VISIBLE)
    if how == "priming-event":
        assert b"id: prime-0" in response.content, "the priming event must be kept"


def test_compressed_answer_does_not_leak_refused_tools(main_proxy: PolicyProxy) -> None:
    """Servers behind compression middleware gzip answers the client accepts gzipped.

    The filter cannot edit a gzip body. It may keep the server from
    compressing (and filter as usual) or withhold the answer, but whatever
    the client gets must be readable as labelled and list no refused tool.
    """
    marker = new_marker()
    body = jsonrpc_bytes({"jsonrpc": "2.0", "id": marker, "method": "tools/list"})
    headers = [("content-type", "application/json"), ("accept-encoding", "gzip"), ("x-test-compress", "gzip"),
               ("x-test-marker", marker)]  # fmt: skip
    [answer] = http1_exchange(main_proxy.port, http1_request("POST", "/mcp", headers, body))
    main_proxy.assert_forwarded(marker)
    content = answer.body
    if (answer.header("content-encoding") or "identity").lower() == "gzip":
        try:
            content = gzip.decompress(content)
        except OSError as error:
            raise AssertionError(f"answer labelled gzip is not gzip ({error}): {answer.body[:300]!r}") from None
    message = parse_json(content)
    assert message.get("id") == marker, f"answer lost the request id: {content[:300]!r}"
    if "result" in message:
        names = [tool["name"] for tool in message["result"]["tools"]]
        assert not set(names) - set(MAIN_VISIBLE), f"unfiltered listing reached the client: {names}"


def test_default_allow_hides_only_denied_and_hidden(envoys: EnvoyPool, mode: str) -> None:
    proxy = envoys.proxy(policy_for(ALLOW_BY_DEFAULT, mode), mode)
    response, marker = _list(proxy)
    _check_length(response)
    _check_result(parse_json(response.content), marker, ALLOW_VISIBLE)


def test_http2_answer_is_filtered(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = jsonrpc_bytes({"jsonrpc": "2.0", "id": marker, "method": "tools/list"})
    [answer] = h2_exchange(main_proxy.port, [H2Request(headers=[("content-type", "application/json"), ("x-test-marker", marker)],
                                                       body_parts=[body])])  # fmt: skip
    assert answer.status == 200, answer
    if answer.header("content-length") is not None:
        assert int(answer.header("content-length")) == len(answer.body)
    _check_result(answer.json(), marker, MAIN_VISIBLE)


def test_tools_list_inside_a_batch_is_filtered(main_proxy: PolicyProxy) -> None:
    """A batch must not be a way to read the unfiltered catalog."""
    marker = new_marker()
    batch = [{"jsonrpc": "2.0", "id": marker, "method": "tools/list"}, {"jsonrpc": "2.0", "id": 2, "method": "ping"}]
    response = main_proxy.post(batch, marker=marker)
    main_proxy.assert_forwarded(marker)
    _check_length(response)
    answers = parse_json(response.content)
    assert isinstance(answers, list) and len(answers) == 2, response.text
    _check_result(answers[0], marker, MAIN_VISIBLE)


def test_non_tools_list_answers_are_untouched(main_proxy: PolicyProxy) -> None:
    """A tools/call result that happens to contain a "tools" array is not a listing."""
    marker = new_marker()
    arguments = {"m": marker, "tools": [{"name": "delete_everything"}]}
    response = main_proxy.call("echo", arguments, request_id=marker, marker=marker)
    message = main_proxy.assert_upstream_answered(response, marker, request_id=marker)
    assert message["result"]["structuredContent"]["arguments"] == arguments
