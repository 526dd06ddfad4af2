"""JSON-RPC batches: judged element by element, forwarded whole or not at all.

Servers (the TS SDK's at least) execute every element of a batch even when
the negotiated protocol forbids batches, so a batch is exactly as dangerous
as its worst element. One refused element refuses the batch: the client gets
an array with one error per element that has an id.
"""

from __future__ import annotations

from typing import Any

from assertions import INVALID_REQUEST, POLICY_DENIED, assert_json_answer, assert_jsonrpc_error
from policies import CLAUDE_CODE_REASON
from policy_proxy import PolicyProxy, assert_refused_as, call_message, new_marker


def _all_refused(answers: object) -> bool:
    return isinstance(answers, list) and all(
        isinstance(a, dict) and isinstance(a.get("error"), dict) and a["error"].get("code") == POLICY_DENIED for a in answers
    )


def _by_id(answers: list[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    return {answer["id"]: answer for answer in answers}


def test_all_allowed_batch_is_forwarded_unchanged(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    batch = [call_message("echo", {"m": marker}, 1), call_message("claude_code_session", {"action": "list"}, "two"),
             {"jsonrpc": "2.0", "method": "notifications/initialized"}]  # fmt: skip
    response = main_proxy.post(batch, marker=marker)
    answers = assert_json_answer(response, 200)
    assert sorted(map(str, _by_id(answers))) == ["1", "two"]
    assert all("result" in a for a in answers), response.text
    main_proxy.assert_forwarded(marker, batch)


def test_mixed_batch_is_refused_whole(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    batch = [
        call_message("echo", {"m": marker}, 1),
        call_message("claude_code", {"prompt": marker}, "deny-me"),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    ]
    response = main_proxy.post(batch, marker=marker)
    answers = assert_json_answer(response, 200)
    assert isinstance(answers, list) and len(answers) == 3, response.text  # one per element with an id
    by_id = _by_id(answers)
    assert set(by_id) == {1, "deny-me", 3}, response.text
    refused = assert_jsonrpc_error(by_id["deny-me"], POLICY_DENIED, "deny-me", response)
    assert "claude_code" in refused["message"] and CLAUDE_CODE_REASON in refused["message"], response.text
    for innocent in (1, 3):
        error = assert_jsonrpc_error(by_id[innocent], POLICY_DENIED, innocent, response)
        assert "batch" in error["message"].lower(), response.text
    main_proxy.assert_refused_and_alive(marker)


def test_batch_hiding_denied_call_at_the_end(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    batch = [call_message("echo", {"m": marker}, i) for i in range(50)] + [call_message("delete_everything", {}, 50)]
    response = main_proxy.post(batch, marker=marker)
    answers = assert_json_answer(response, 200)
    assert len(answers) == 51 and _all_refused(answers), response.text[:500]
    main_proxy.assert_refused_and_alive(marker)


def test_batch_of_only_denied_calls(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    batch = [call_message("claude_code", {"prompt": marker}, 1), call_message("delete_everything", {}, 2)]
    response = main_proxy.post(batch, marker=marker)
    answers = assert_json_answer(response, 200)
    assert _all_refused(answers) and {a["id"] for a in answers} == {1, 2}, response.text
    main_proxy.assert_refused_and_alive(marker)


def test_batch_with_call_notification_is_refused(main_proxy: PolicyProxy) -> None:
    """A tools/call without id would run with nobody told: it spoils the batch."""
    marker = new_marker()
    notification = {"jsonrpc": "2.0", "method": "tools/call", "params": {"name": "claude_code", "arguments": {"p": marker}}}
    response = main_proxy.post([call_message("echo", {}, 1), notification], marker=marker)
    assert response.status_code in (200, 400), response.text
    main_proxy.assert_refused_and_alive(marker)


def test_batch_with_invalid_element_is_refused(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = main_proxy.post([call_message("echo", {"m": marker}, 1), 42], marker=marker)
    assert response.status_code in (200, 400), response.text
    main_proxy.assert_refused_and_alive(marker)


def test_nested_array_is_refused(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    for body in ([[call_message("claude_code", {"prompt": marker}, 1)]], [[call_message("echo", {"m": marker}, 1)]]):
        response = main_proxy.post(body, marker=marker)
        assert response.status_code in (200, 400), response.text
        assert "result" not in response.text, response.text
    main_proxy.assert_refused_and_alive(marker)


def test_empty_batch_is_invalid(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = main_proxy.post(b"[ ]", marker=marker)
    assert_refused_as(response, 400, INVALID_REQUEST)
    main_proxy.assert_refused_and_alive(marker)
