"""Keys that a case-insensitive server reads as one are refused, at any depth.

Go's encoding/json matches keys to struct fields without regard to case (with
the folds ſ -> s and Kelvin K -> k) and the last matching key wins:
`{"action":"list","Action":"cancel"}` passes a rule that wants `action` in
[list, get], and a Go server runs `cancel`. Any object of a request holding
two keys that fold together is refused with -32600 (invalid request), in
arguments, nested objects and objects inside arrays, however the keys are
escaped. Each refusal: the upstream saw nothing; the filter still serves.
"""

from __future__ import annotations

import pytest

from assertions import INVALID_REQUEST, assert_http_error, assert_policy_refusal
from conftest import EnvoyPool, policy_for
from policy_proxy import PolicyProxy, call_message, new_marker

POLICY = {
    "version": "1",
    "default": "deny",
    "tools": {
        "claude_code_session": {
            "rules": [
                {"name": "read-only", "require": [{"path": "args.action", "op": "in", "value": ["list", "get"]}]},
                {"name": "no-force", "deny_if": [{"path": "args.opts.force", "op": "eq", "value": True}]},
            ]
        }
    },
}


@pytest.fixture
def folding_proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return envoys.proxy(policy_for(POLICY, mode), mode, allowed_tool="claude_code_session", allowed_arguments={"action": "list"})


def _call(arguments: str) -> str:
    return '{"jsonrpc":"2.0","id":"MARK","method":"tools/call","params":{"name":"claude_code_session","arguments":%s}}' % arguments


FOLDED = {
    "arguments": _call('{"action":"list","Action":"cancel"}'),
    "arguments-upper-first": _call('{"ACTION":"cancel","action":"get"}'),
    "escaped": _call('{"action":"list","\\u0041ction":"cancel"}'),
    "escaped-both": _call('{"\\u0061ction":"list","\\u0041CTION":"cancel"}'),
    "nested-object": _call('{"action":"list","opts":{"force":false,"Force":true}}'),
    "inside-array": _call('{"action":"list","jobs":[{"id":1},{"mode":"a","MODE":"b"}]}'),
    "array-in-array": _call('{"action":"list","m":[[{"x":1}],[{"y":1,"Y":2}]]}'),
    "long-s": _call('{"action":"list","opts":{"session":"a","\\u017fession":"b"}}'),
    "long-s-raw-utf8": _call('{"action":"list","opts":{"session":"a","\u017fession":"b"}}'),
    "kelvin": _call('{"action":"list","opts":{"kind":"a","\\u212aind":"b"}}'),
    "params-level": '{"jsonrpc":"2.0","id":"MARK","method":"tools/call","params":{"name":"claude_code_session","arguments":{"action":"list"},"_meta":{},"_META":{"x":1}}}',
}


@pytest.mark.parametrize("template", FOLDED.values(), ids=FOLDED.keys())
def test_keys_that_fold_together_are_refused(folding_proxy: PolicyProxy, template: str) -> None:
    marker = new_marker()
    response = folding_proxy.post(template.replace("MARK", marker).encode(), marker=marker)
    error = assert_http_error(response, 400, INVALID_REQUEST, null_id=True)
    assert "case-insensitive" in error["message"] or "only in case" in error["message"], response.text
    folding_proxy.assert_refused_and_alive(marker)


def test_refusal_names_where_and_which_keys(folding_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = folding_proxy.post(FOLDED["nested-object"].replace("MARK", marker).encode(), marker=marker)
    error = assert_http_error(response, 400, INVALID_REQUEST, null_id=True)
    assert 'params.arguments.opts: keys "force" and "Force"' in error["message"], response.text
    folding_proxy.assert_refused_and_alive(marker)


def test_folded_keys_in_a_batch_refuse_the_batch(folding_proxy: PolicyProxy) -> None:
    marker = new_marker()
    batch = [call_message("claude_code_session", {"action": "list"}, 1),
             call_message("claude_code_session", {"action": "get", "Action": "cancel"}, 2)]  # fmt: skip
    response = folding_proxy.post(batch, marker=marker)
    error = assert_http_error(response, 400, INVALID_REQUEST, null_id=True)
    assert "batch element 1" in error["message"], response.text
    folding_proxy.assert_refused_and_alive(marker)


def test_distinct_keys_still_pass(folding_proxy: PolicyProxy) -> None:
    """Keys that differ by more than case are plain arguments, forwarded unchanged."""
    marker = new_marker()
    body = _call('{"action":"get","actions":["x"],"sessionId":"s-1","session_id":"s","opts":{"force":false}}').replace("MARK", marker)
    response = folding_proxy.post(body.encode(), marker=marker)
    folding_proxy.assert_upstream_answered(response, marker, request_id=marker)
    folding_proxy.assert_forwarded(marker, body.encode())


LONE_KEYS = {
    "Force": '{"action":"list","opts":{"Force":true}}',
    "OPTS": '{"action":"list","OPTS":{"force":true}}',
    "escaped": '{"action":"list","opts":{"\\u0046orce":true}}',
}


@pytest.mark.parametrize("arguments", LONE_KEYS.values(), ids=LONE_KEYS.keys())
def test_lone_key_in_another_case_cannot_pass_a_deny_if(folding_proxy: PolicyProxy, arguments: str) -> None:
    """`{"Force":true}` is `force` to a Go server: the deny_if cannot be judged, so it refuses."""
    marker = new_marker()
    response = folding_proxy.post(_call(arguments).replace("MARK", marker).encode(), marker=marker)
    error = assert_policy_refusal(response, request_id=marker, tool="claude_code_session")
    assert error["data"]["rule"] == "tools.claude_code_session.rules.no-force", response.text
    folding_proxy.assert_refused_and_alive(marker)
