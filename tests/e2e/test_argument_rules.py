"""Argument rules and spend caps, judged on the call's arguments in real Envoy.

`envoy/examples/claude-code-guarded.json` verbatim first: the Claude Code
server with its dangerous uses refused (cancel, interrupt, unbounded turns,
a cwd outside /work). Then every operator once, end to end, with one call it
refuses and one it lets through; the fail-closed meaning of missing paths
and type mismatches; JSON unescaping of values; and counters that add an
argument's amount (spend caps).

Refused calls get -31001 with `data.rule` = `tools.<tool>.rules.<name>`
(spend caps: -31002, or -31001 for an amount that is not a number >= 0);
every refusal is checked against the recording upstream, which must have
seen nothing of it, and the filter must still serve afterwards.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
import pytest

from assertions import RATE_LIMITED, assert_policy_refusal
from conftest import EnvoyPool, policy_for
from policies import REPO
from policy_proxy import PolicyProxy, call_message, new_marker, to_bytes

GUARDED_TEXT = (REPO / "envoy" / "examples" / "claude-code-guarded.json").read_text(encoding="utf-8")
NO_CANCEL_REASON = "cancelling a session halts in-progress work; ask a human"


@pytest.fixture(autouse=True)
def _not_at_midnight() -> None:
    """The spend caps (and the guarded policy's) count per UTC day."""
    now = dt.datetime.now(dt.timezone.utc)
    if 86400 - (now.hour * 3600 + now.minute * 60 + now.second) < 30:
        pytest.skip("too close to the UTC day boundary, where day windows roll over")


def _fresh_grant() -> dict[str, str]:
    """A credential never seen before: a budget of its own (the guarded policy caps per grant)."""
    return {"authorization": f"Bearer test-{uuid.uuid4().hex}"}


def _send(proxy: PolicyProxy, tool: str, arguments: Any, headers: dict[str, str] | None) -> tuple[httpx.Response, str, bytes]:
    marker = new_marker()
    body = to_bytes(call_message(tool, arguments, marker))
    return proxy.post(body, marker=marker, headers=headers or _fresh_grant()), marker, body


def assert_allowed(proxy: PolicyProxy, tool: str, arguments: Any, headers: dict[str, str] | None = None) -> None:
    """The call reaches the server, byte for byte, and its answer comes back."""
    response, marker, body = _send(proxy, tool, arguments, headers)
    proxy.assert_upstream_answered(response, marker, request_id=marker)
    proxy.assert_forwarded(marker, body)


def assert_refused(
    proxy: PolicyProxy,
    tool: str,
    arguments: Any,
    rule: str,
    *,
    reason: str | None = None,
    code: int = -31001,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> dict[str, Any]:
    """Refused with `code` and `data.rule` == `rule`; the server saw nothing; the filter still serves."""
    if body is None:
        response, marker, _ = _send(proxy, tool, arguments, headers)
    else:
        marker = new_marker()
        body = body.replace(b"MARKER", marker.encode())
        response = proxy.post(body, marker=marker, headers=headers or _fresh_grant())
    error = assert_policy_refusal(response, request_id=marker, tool=tool, code=code, reason=reason)
    assert error["data"]["rule"] == rule, response.text
    proxy.assert_refused_and_alive(marker)
    return error


# -- the guarded Claude Code policy, verbatim ------------------------------------------


@pytest.fixture
def guarded(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    """claude-code-guarded.json verbatim; hold mode from the VM settings, as in envoy/envoy.yaml."""
    return envoys.proxy(
        GUARDED_TEXT, mode, allowed_tool="claude_code_check", allowed_arguments={"action": "poll", "sessionId": "s-1"},
        vm_settings={"header_mode": "hold"} if mode == "hold" else None,
    )  # fmt: skip


GUARDED_ALLOWED = [
    pytest.param("claude_code_session", {"action": "list"}, id="session-list"),
    pytest.param("claude_code_session", {"action": "get", "sessionId": "s-1"}, id="session-get"),
    pytest.param("claude_code_check", {"action": "poll", "sessionId": "s-1"}, id="check-interrupt-absent"),
    pytest.param("claude_code_check", {"action": "respond_permission", "sessionId": "s-1", "requestId": "r1", "decision": "deny",
                                       "interrupt": False}, id="check-interrupt-false"),
    pytest.param("claude_code", {"prompt": "fix the flaky test", "maxTurns": 5, "cwd": "/work/app"}, id="code-bounded"),
    pytest.param("claude_code", {"prompt": "fix the flaky test", "maxTurns": 20, "cwd": "/work/app/src"}, id="code-at-the-bounds"),
    pytest.param("claude_code", {"prompt": "fix the flaky test", "maxTurns": 1, "cwd": "/work/app/v1.2"}, id="code-dotted-folder"),
    pytest.param("claude_code_reply", {"sessionId": "s-1", "prompt": "now add tests"}, id="reply"),
]  # fmt: skip


@pytest.mark.parametrize(("tool", "arguments"), GUARDED_ALLOWED)
def test_guarded_allows_safe_uses(guarded: PolicyProxy, tool: str, arguments: dict[str, Any]) -> None:
    assert_allowed(guarded, tool, arguments)


TURNS = ("bounded-turns", "set maxTurns to 20 or less")
WORKSPACE = ("workspace-only", "cwd must be a folder under /work")
KNOWN_ACTIONS = ("known-actions", 'action must be exactly "list", "get" or "cancel"')

GUARDED_REFUSED = [
    # tool, arguments, (rule name, reason)
    pytest.param("claude_code_session", {"action": "cancel", "sessionId": "s-1"}, ("no-cancel", NO_CANCEL_REASON), id="session-cancel"),
    pytest.param("claude_code_check", {"action": "respond_permission", "sessionId": "s-1", "requestId": "r1", "decision": "deny",
                                       "interrupt": True}, ("no-interrupt", "interrupting a session is destructive"), id="check-interrupt"),
    pytest.param("claude_code", {"prompt": "x", "cwd": "/work/app"}, TURNS, id="code-no-maxTurns"),
    pytest.param("claude_code", {"prompt": "x", "maxTurns": 50, "cwd": "/work/app"}, TURNS, id="code-maxTurns-50"),
    pytest.param("claude_code", {"prompt": "x", "maxTurns": "5", "cwd": "/work/app"}, TURNS, id="code-maxTurns-string"),
    pytest.param("claude_code", {"prompt": "x", "maxTurns": 5, "cwd": "/etc"}, WORKSPACE, id="code-cwd-etc"),
    pytest.param("claude_code", {"prompt": "x", "maxTurns": 5, "cwd": "/work"}, WORKSPACE, id="code-cwd-work-itself"),
    pytest.param("claude_code", {"prompt": "x", "maxTurns": 5}, WORKSPACE, id="code-no-cwd"),
    pytest.param("claude_code", {"prompt": "x", "maxTurns": 5, "cwd": "/work/app\n/etc"}, WORKSPACE, id="code-cwd-newline"),
    pytest.param("claude_code", {"prompt": "x", "maxTurns": 5, "cwd": "/work/../etc"}, WORKSPACE, id="code-cwd-dotdot"),
    pytest.param("claude_code", {"prompt": "x", "maxTurns": 5, "cwd": "/work/app/../../etc"}, WORKSPACE, id="code-cwd-app-dotdot"),
    # Type and padding tricks a lenient server might still read as cancel / interrupt: allow-lists catch them.
    pytest.param("claude_code_session", {"action": ["cancel"], "sessionId": "s-1"}, KNOWN_ACTIONS, id="session-action-array"),
    pytest.param("claude_code_session", {"action": "cancel ", "sessionId": "s-1"}, KNOWN_ACTIONS, id="session-action-padded"),
    pytest.param("claude_code_session", {"action": "Cancel", "sessionId": "s-1"}, KNOWN_ACTIONS, id="session-action-case"),
    pytest.param("claude_code_session", {}, KNOWN_ACTIONS, id="session-no-action"),
    pytest.param("claude_code_check", {"action": "respond_permission", "sessionId": "s-1", "interrupt": "true"},
                 ("no-interrupt", "interrupting a session is destructive"), id="check-interrupt-string"),
    pytest.param("claude_code_check", {"action": "respond_permission", "sessionId": "s-1", "interrupt": 1},
                 ("no-interrupt", "interrupting a session is destructive"), id="check-interrupt-number"),
]  # fmt: skip


@pytest.mark.parametrize(("tool", "arguments", "rule"), GUARDED_REFUSED)
def test_guarded_refuses_dangerous_uses(guarded: PolicyProxy, tool: str, arguments: dict[str, Any], rule: tuple[str, str]) -> None:
    name, reason = rule
    assert_refused(guarded, tool, arguments, f"tools.{tool}.rules.{name}", reason=reason)


def test_guarded_cancel_written_with_an_escape_is_still_cancel(guarded: PolicyProxy) -> None:
    """Values are compared after JSON unescaping: "\\u0063ancel" is "cancel"."""
    body = b'{"jsonrpc":"2.0","id":"MARKER","method":"tools/call","params":{"name":"claude_code_session","arguments":{"action":"\\u0063ancel","sessionId":"s-1"}}}'
    assert_refused(guarded, "claude_code_session", None, "tools.claude_code_session.rules.no-cancel", reason=NO_CANCEL_REASON, body=body)


def test_guarded_other_tools_stay_denied(guarded: PolicyProxy) -> None:
    assert_refused(guarded, "delete_everything", {}, "default")


# -- every operator, end to end ---------------------------------------------------------


def _deny_if(*conditions: tuple[str, str, Any]) -> dict[str, Any]:
    return {"rules": [{"name": "r", "deny_if": [{"path": p, "op": o, "value": v} for p, o, v in conditions]}]}


def _require(*conditions: tuple[str, str, Any]) -> dict[str, Any]:
    return {"rules": [{"name": "r", "require": [{"path": p, "op": o, "value": v} for p, o, v in conditions]}]}


# (tool, its rule, refused arguments, allowed arguments)
OPERATOR_CASES: list[tuple[str, dict[str, Any], Any, Any]] = [
    ("op_eq", _deny_if(("args.v", "eq", "bad")), {"v": "bad"}, {"v": "good"}),
    ("op_neq", _deny_if(("args.v", "neq", "ok")), {"v": "other"}, {"v": "ok"}),
    ("op_in", _deny_if(("args.v", "in", ["a", "b"])), {"v": "b"}, {"v": "c"}),
    ("op_not_in", _deny_if(("args.v", "not_in", ["safe1", "safe2"])), {"v": "x"}, {"v": "safe2"}),
    ("op_lt", _deny_if(("args.v", "lt", 0)), {"v": -1}, {"v": 0}),
    ("op_lte", _deny_if(("args.v", "lte", 0)), {"v": 0}, {"v": 0.5}),
    ("op_gt", _deny_if(("args.v", "gt", 100)), {"v": 101}, {"v": 100}),
    ("op_gte", _deny_if(("args.v", "gte", 100)), {"v": 100}, {"v": 99.9}),
    ("op_regex", _deny_if(("args.v", "regex", r"^rm\s")), {"v": "rm -rf /"}, {"v": "ls -la"}),
    # A regex with a literal prefilter (every match contains "table", any case).
    ("regex_prefilter", _deny_if(("args.v", "regex", r"(?i)\b(drop|truncate)\s+table\b")), {"v": "x;\nDrOp\tTaBlE users"}, {"v": "a table of contents"}),
    ("op_contains_string", _deny_if(("args.v", "contains", "sudo")), {"v": "please sudo it"}, {"v": "please do it"}),
    ("op_contains_array", _deny_if(("args.v", "contains", "Bash")), {"v": ["Read", "Bash"]}, {"v": ["Read", "Bash(ls)"]}),
    ("op_exists_true", _deny_if(("args.v", "exists", True)), {"v": None}, {"w": 1}),
    ("op_exists_false", _deny_if(("args.ticket", "exists", False)), {"v": 1}, {"ticket": "OPS-1"}),
    # JSON values: numbers numerically, structures structurally.
    ("num_eq", _deny_if(("args.v", "eq", 1)), {"v": 1.0}, {"v": "1"}),
    ("obj_eq", _deny_if(("args.v", "eq", {"a": [1, 2]})), {"v": {"a": [1.0, 2]}}, {"v": {"a": [2, 1]}}),
    # Paths: nested keys, an index, a quoted key.
    ("path_index", _deny_if(("args.opts.list[1]", "eq", "x")), {"opts": {"list": ["a", "x"]}}, {"opts": {"list": ["x"]}}),
    ("path_quoted", _deny_if(('args["odd key"].v', "eq", "x")), {"odd key": {"v": "x"}}, {"odd_key": {"v": "x"}}),
    # All conditions of a deny_if must hold; all of a require.
    ("all_of_deny_if", _deny_if(("args.a", "eq", 1), ("args.b", "eq", 2)), {"a": 1, "b": 2}, {"a": 1, "b": 3}),
    ("all_of_require", _require(("args.a", "eq", 1), ("args.b", "eq", 2)), {"a": 1, "b": 3}, {"a": 1, "b": 2}),
    # Missing paths are definite: eq false (deny_if quiet), require unsatisfied.
    ("missing_in_require", _require(("args.n", "lte", 20)), {"m": 5}, {"n": 5}),
    # Type mismatches are unknown, and unknown fails closed in both kinds of rule.
    ("mismatch_require", _require(("args.n", "lte", 20)), {"n": "5"}, {"n": 5}),
    ("mismatch_deny_if", _deny_if(("args.n", "gt", 20)), {"n": "5"}, {"n": 5}),
    ("mismatch_regex", _deny_if(("args.v", "regex", "^rm")), {"v": 7}, {"v": "ls"}),
    ("mismatch_contains", _deny_if(("args.v", "contains", "x")), {"v": 12}, {"v": "abc"}),
    # ... but a definitely false condition clears a deny_if whatever the others say.
    ("mismatch_cleared", _deny_if(("args.mode", "eq", "x"), ("args.n", "gt", 20)), {"mode": "x", "n": "5"}, {"mode": "y", "n": "50"}),
    # Strings: exact after unescaping, no Unicode normalisation or case folding.
    ("unicode_eq", _deny_if(("args.v", "eq", "café")), {"v": "café"}, {"v": "cafe\u0301"}),
    ("case_eq", _deny_if(("args.v", "eq", "Cancel")), {"v": "Cancel"}, {"v": "cancel"}),
]


def _spend_limit(counter: str, **extra: Any) -> dict[str, Any]:
    limit = {"counter": counter, "window": "day", "max": 10, "scope": "grant", "increment_from": "args.advanced.maxBudgetUsd"}
    return {"limits": [{**limit, **extra}]}


RULES_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "tools": {
        "echo": {},
        **{tool: rule for tool, rule, _, _ in OPERATOR_CASES},
        "spend": _spend_limit("spend_usd", default_increment=3),
        "spend_strict": _spend_limit("spend_strict_usd"),
    },
}


@pytest.fixture
def rules_proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return envoys.proxy(policy_for(RULES_POLICY, mode), mode)


@pytest.mark.parametrize(("tool", "refused", "allowed"), [(t, r, a) for t, _, r, a in OPERATOR_CASES], ids=[c[0] for c in OPERATOR_CASES])
def test_operator(rules_proxy: PolicyProxy, tool: str, refused: Any, allowed: Any) -> None:
    assert_refused(rules_proxy, tool, refused, f"tools.{tool}.rules.r")
    assert_allowed(rules_proxy, tool, allowed)


@pytest.mark.parametrize("written", ["caf\\u00e9", "café"], ids=["escaped", "raw-utf8"])
def test_unicode_value_matches_however_it_is_written(rules_proxy: PolicyProxy, written: str) -> None:
    body = ('{"jsonrpc":"2.0","id":"MARKER","method":"tools/call","params":{"name":"unicode_eq","arguments":{"v":"%s"}}}' % written).encode()
    assert_refused(rules_proxy, "unicode_eq", None, "tools.unicode_eq.rules.r", body=body)


@pytest.mark.parametrize("written", ["DROP \\u0074able x", "truncate\\t\\u0054\\u0041BLE x", "Drop TABLE x"], ids=["escaped-t", "escaped-ta", "raw"])
def test_prefiltered_regex_reads_the_unescaped_value(rules_proxy: PolicyProxy, written: str) -> None:
    """The prefilter looks for "table" in the value after JSON unescaping, not in the body's bytes."""
    body = ('{"jsonrpc":"2.0","id":"MARKER","method":"tools/call","params":{"name":"regex_prefilter","arguments":{"v":"%s"}}}' % written).encode()
    assert_refused(rules_proxy, "regex_prefilter", None, "tools.regex_prefilter.rules.r", body=body)


def test_rule_without_reason_names_itself(rules_proxy: PolicyProxy) -> None:
    error = assert_refused(rules_proxy, "op_eq", {"v": "bad"}, "tools.op_eq.rules.r")
    assert '"r"' in error["data"]["reason"] and "op_eq" in error["data"]["reason"], error


# -- spend caps (increment_from) -------------------------------------------------------------


def _budget(amount: Any) -> dict[str, Any]:
    return {"prompt": "x", "advanced": {"maxBudgetUsd": amount}}


def _assert_over_budget(proxy: PolicyProxy, tool: str, arguments: Any, grant: dict[str, str], counter: str) -> None:
    error = assert_refused(proxy, tool, arguments, f"limits.{counter}", code=RATE_LIMITED, headers=grant)
    assert error["data"]["counter"] == counter and error["data"]["max"] == 10, error


def test_spend_cap_adds_the_argument(rules_proxy: PolicyProxy) -> None:
    """max 10 a day: 4 + 4 pass, another 4 would make 12 (refused, -31002), 2 makes exactly 10."""
    grant = _fresh_grant()
    assert_allowed(rules_proxy, "spend", _budget(4), grant)
    assert_allowed(rules_proxy, "spend", _budget(4), grant)
    _assert_over_budget(rules_proxy, "spend", _budget(4), grant, "spend_usd")
    assert_allowed(rules_proxy, "spend", _budget(2), grant)
    _assert_over_budget(rules_proxy, "spend", _budget(0.001), grant, "spend_usd")
    assert_allowed(rules_proxy, "spend", _budget(0), grant)  # zero costs nothing
    assert_allowed(rules_proxy, "spend", _budget(10), _fresh_grant())  # another grant, its own budget


def test_spend_cap_counts_thousandths_exactly(rules_proxy: PolicyProxy) -> None:
    grant = _fresh_grant()
    assert_allowed(rules_proxy, "spend", _budget(9.75), grant)
    assert_allowed(rules_proxy, "spend", _budget(0.25), grant)
    _assert_over_budget(rules_proxy, "spend", _budget(0.001), grant, "spend_usd")


def test_spend_cap_missing_amount_counts_the_default(rules_proxy: PolicyProxy) -> None:
    """default_increment 3: three calls without a budget make 9, a fourth would make 12."""
    grant = _fresh_grant()
    assert_allowed(rules_proxy, "spend", {"prompt": "x"}, grant)
    assert_allowed(rules_proxy, "spend", {"prompt": "x", "advanced": {}}, grant)
    assert_allowed(rules_proxy, "spend", {"prompt": "x", "advanced": {"effort": "low"}}, grant)
    _assert_over_budget(rules_proxy, "spend", {"prompt": "x"}, grant, "spend_usd")
    assert_allowed(rules_proxy, "spend", _budget(1), grant)


def test_spend_cap_without_default_refuses_a_missing_amount(rules_proxy: PolicyProxy) -> None:
    grant = _fresh_grant()
    assert_refused(rules_proxy, "spend_strict", {"prompt": "x"}, "limits.spend_strict_usd", headers=grant)
    assert_allowed(rules_proxy, "spend_strict", _budget(10), grant)  # the refusal spent nothing


@pytest.mark.parametrize("amount", [-1, -0.001, "4", None, True, [4], {"usd": 4}, 1e300], ids=repr)
def test_spend_cap_refuses_amounts_that_are_not_a_number_at_least_zero(rules_proxy: PolicyProxy, amount: Any) -> None:
    grant = _fresh_grant()
    if amount == 1e300:  # a number, just far over any budget
        _assert_over_budget(rules_proxy, "spend", _budget(amount), grant, "spend_usd")
    else:
        assert_refused(rules_proxy, "spend", _budget(amount), "limits.spend_usd", headers=grant)
    assert_allowed(rules_proxy, "spend", _budget(10), grant)  # the refusal spent nothing
