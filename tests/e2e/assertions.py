"""What a correct answer of the filter looks like, checked in one place.

Answers are parsed strictly (duplicate keys are an error) so a filter answer
that a lenient client would half-read still fails the test.
"""

from __future__ import annotations

import json
from typing import Any

POLICY_DENIED = -31001
RATE_LIMITED = -31002
APPROVAL_REFUSED = -31003
PARSE_ERROR = -32700
INVALID_REQUEST = -32600


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    duplicates = {key for key in keys if keys.count(key) > 1}
    if duplicates:
        raise ValueError(f"duplicate keys {sorted(duplicates)}")
    return dict(pairs)


def parse_json(body: bytes | str) -> Any:
    """Strict JSON parse of an answer body."""
    return json.loads(body, object_pairs_hook=_no_duplicates)


def same_id(got: Any, expected: Any) -> bool:
    """Same JSON type and value: 7 is not "7", and 1.5 stays a float."""
    return type(got) is type(expected) and got == expected


def _describe(response: Any) -> str:
    return f"HTTP {response.status_code if hasattr(response, 'status_code') else response.status}: {response.text[:2000]!r}"


def status_of(response: Any) -> int:
    return response.status_code if hasattr(response, "status_code") else response.status


def content_type_of(response: Any) -> str:
    value = response.headers.get("content-type") if hasattr(response, "status_code") else response.header("content-type")
    return value or ""


def body_of(response: Any) -> bytes:
    return response.content if hasattr(response, "content") else response.body


def assert_json_answer(response: Any, status: int) -> Any:
    assert status_of(response) == status, _describe(response)
    assert content_type_of(response).split(";")[0].strip() == "application/json", _describe(response)
    try:
        return parse_json(body_of(response))
    except ValueError as error:
        raise AssertionError(f"answer is not strict JSON ({error}): {_describe(response)}") from None


def assert_jsonrpc_error(message: Any, code: int, request_id: Any = ..., response: Any = None) -> dict[str, Any]:
    """`message` is a JSON-RPC 2.0 error with `code` (and `request_id`, if given)."""
    context = _describe(response) if response is not None else repr(message)
    assert isinstance(message, dict), context
    assert message.get("jsonrpc") == "2.0", context
    assert "result" not in message, context
    error = message.get("error")
    assert isinstance(error, dict), context
    assert error.get("code") == code, context
    assert isinstance(error.get("message"), str) and error["message"], context
    if request_id is not ...:
        assert "id" in message and same_id(message["id"], request_id), f"id {message.get('id')!r} != {request_id!r}: {context}"
    return error


def assert_policy_refusal(
    response: Any,
    *,
    request_id: Any,
    tool: str,
    code: int = POLICY_DENIED,
    reason: str | None = None,
    check_tool_in_message: bool = True,
) -> dict[str, Any]:
    """HTTP 200, application/json, a JSON-RPC error naming the tool and why."""
    message = assert_json_answer(response, 200)
    error = assert_jsonrpc_error(message, code, request_id, response)
    if check_tool_in_message:
        assert tool in error["message"], f"message does not name {tool!r}: {_describe(response)}"
    data = error.get("data")
    assert isinstance(data, dict), f"error.data missing: {_describe(response)}"
    if check_tool_in_message:
        assert data.get("tool") == tool, _describe(response)
    expected_decision = {POLICY_DENIED: "deny", RATE_LIMITED: "rate_limited"}.get(code)
    if expected_decision is not None:
        assert data.get("decision") == expected_decision, _describe(response)
    assert "rule" in data and "reason" in data, _describe(response)
    if reason is not None:
        assert reason in error["message"], f"message lacks reason {reason!r}: {_describe(response)}"
        assert reason in str(data["reason"]), _describe(response)
    return error


def assert_tool_result_refusal(response: Any, *, request_id: Any, tool: str, reason: str | None = None) -> str:
    """error_style "tool_result": HTTP 200, a result with isError and [POLICY DENIED] text."""
    message = assert_json_answer(response, 200)
    assert message.get("jsonrpc") == "2.0" and "error" not in message, _describe(response)
    assert "id" in message and same_id(message["id"], request_id), _describe(response)
    result = message.get("result")
    assert isinstance(result, dict) and result.get("isError") is True, _describe(response)
    content = result.get("content")
    assert isinstance(content, list) and content and content[0].get("type") == "text", _describe(response)
    text = content[0]["text"]
    assert text.startswith("[POLICY DENIED]"), _describe(response)
    assert tool in text, _describe(response)
    if reason is not None:
        assert reason in text, _describe(response)
    return text


def assert_http_error(response: Any, status: int, code: int, *, null_id: bool = False) -> dict[str, Any]:
    """A 4xx answer with a JSON-RPC error body (id null for parse errors)."""
    message = assert_json_answer(response, status)
    return assert_jsonrpc_error(message, code, None if null_id else ..., response)
