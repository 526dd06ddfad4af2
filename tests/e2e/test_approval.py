"""Approval: `"action": "approve"` holds a call until an approval service says yes.

The approval service here is a tiny in-process HTTP server reached through
an extra Envoy cluster (`approval_test`, named in `policy.approval.cluster`).
It answers each call as the test scripted it (by the marker the test puts in
the call's arguments) and records every request it received, so tests check
both what the filter asked and what it did with the answer:

- yes: the call reaches the server after the approval, and the question
  carried tool, arguments, grant fingerprint (never the credential),
  session, x-request-id, JSON-RPC id, rule and reason;
- no: -31003 with the approver's reason, the server saw nothing;
- no answer within `timeout_ms`, the service down, garbage, another status:
  -31003, the server saw nothing (a late yes does not count);
- a batch holding a call that needs approval: -31003, nobody is asked;
- rate-limit units taken for a refused approval are given back.

A held call that crashes the filter's VM fails the test at once (the
request would otherwise hang until the client gives up).
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import httpx
import pytest

from assertions import APPROVAL_REFUSED, POLICY_DENIED, RATE_LIMITED, assert_json_answer, assert_jsonrpc_error, assert_policy_refusal
from conftest import EnvoyPool, policy_for
from policies import REPO
from policy_proxy import JSON_HEADERS, PolicyProxy, call_message, new_marker, to_bytes
from recording_upstream import MARKER_HEADER

CLUSTER = "approval_test"
TIMEOUT_MS = 1000
HANG_SECONDS = TIMEOUT_MS / 1000 + 0.8  # the scripted "never answers": a late yes, after the filter gave up
TOOL_REASON = "a human must say yes"
CANCEL_REASON = "cancelling a session needs a human yes"
FREEZE_REASON = "not during the release freeze"

APPROVAL_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "tools": {
        "echo": {},
        "needs_ok": {"action": "approve", "reason": TOOL_REASON},
        "claude_code_session": {
            "rules": [
                {
                    "name": "cancel-needs-a-human",
                    "deny_if": [{"path": "args.action", "op": "eq", "value": "cancel"}],
                    "action": "approve",
                    "reason": CANCEL_REASON,
                }
            ]
        },
        "limited_ok": {
            "action": "approve",
            "limits": [{"counter": "limited_ok", "window": "day", "max": 1, "scope": "session"}],
        },
    },
    "approval": {"cluster": CLUSTER, "path": "/approve", "timeout_ms": TIMEOUT_MS},
}


# -- the approval service ---------------------------------------------------------------------


@dataclass
class Asked:
    """One request the approval service received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() on arrival
    answered: threading.Event = field(default_factory=threading.Event)

    def json(self) -> Any:
        return json.loads(self.body)


# What the service does, by script name: (delay in seconds, status, body).
ANSWERS: dict[str, tuple[float, int, bytes]] = {
    "allow": (0, 200, b'{"decision":"allow"}'),
    "deny": (0, 200, json.dumps({"decision": "deny", "reason": FREEZE_REASON}).encode()),
    "deny_without_reason": (0, 200, b'{"decision":"deny"}'),
    "hang": (HANG_SECONDS, 200, b'{"decision":"allow"}'),
    "not_json": (0, 200, b"yes, go ahead"),
    "no_decision": (0, 200, b'{"approved":true}'),
    "unknown_decision": (0, 200, b'{"decision":"ALLOW"}'),
    "decision_not_a_string": (0, 200, b'{"decision":true}'),
    "status_500": (0, 500, b'{"decision":"allow"}'),
    "status_201": (0, 201, b'{"decision":"allow"}'),
    "status_403": (0, 403, b'{"decision":"deny","reason":"forbidden"}'),
}


class ApprovalService:
    """Answers each call as scripted for the marker in its arguments (`_m`); records everything."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._asked: list[Asked] = []
        self._scripts: dict[str, str] = {}
        service = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server naming)
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                asked = Asked(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                with service._lock:
                    service._asked.append(asked)
                delay, status, answer = ANSWERS[service._script_for(body)]
                time.sleep(delay)
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except OSError:
                    pass  # Envoy gave up waiting and closed the connection
                finally:
                    asked.answered.set()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, name="approval-service", daemon=True).start()

    def _script_for(self, body: bytes) -> str:
        try:
            marker = json.loads(body)["arguments"]["_m"]
        except (ValueError, KeyError, TypeError):
            return "deny"
        with self._lock:
            return self._scripts.get(marker, "deny")

    def script(self, marker: str, answer: str) -> None:
        assert answer in ANSWERS
        with self._lock:
            self._scripts[marker] = answer

    def asked_about(self, marker: str) -> list[Asked]:
        with self._lock:
            return [a for a in self._asked if marker.encode() in a.body]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def approver() -> Iterator[ApprovalService]:
    service = ApprovalService()
    yield service
    service.stop()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Setup:
    """An Envoy whose `approval_test` cluster leads to `approver`.

    Calls are sent while watching the Envoy log: a VM crash while a call is
    held (the answer then never comes) fails the test at once instead of
    after the client's timeout.
    """

    proxy: PolicyProxy
    approver: ApprovalService

    def post(self, body: Any, *, marker: str, headers: dict[str, str] | None = None, timeout: float = 10.0) -> httpx.Response:
        """POST on a connection of its own, failing at once if the filter's VM crashes meanwhile."""
        outcome: dict[str, Any] = {}

        def send() -> None:
            try:
                with httpx.Client(base_url=self.proxy.envoy.url, timeout=timeout) as client:
                    all_headers = {**JSON_HEADERS, MARKER_HEADER: marker, **(headers or {})}
                    outcome["response"] = client.post("/mcp", content=to_bytes(body), headers=all_headers)
            except Exception as error:  # noqa: BLE001 - re-raised below
                outcome["error"] = error

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        deadline = time.monotonic() + timeout + 1
        while sender.is_alive() and time.monotonic() < deadline:
            sender.join(0.05)
            self.assert_vm_alive()
        self.assert_vm_alive()
        if "error" in outcome:
            raise AssertionError(f"no answer: {outcome['error']!r}\n{self.proxy.envoy.log_tail(10)}")
        assert "response" in outcome, "no answer in time"
        return outcome["response"]

    def call(self, tool: str, arguments: dict[str, Any], *, marker: str, request_id: Any = None, **kwargs: Any) -> httpx.Response:
        return self.post(call_message(tool, arguments, marker if request_id is None else request_id), marker=marker, **kwargs)

    def assert_vm_alive(self) -> None:
        crashes = self.proxy.envoy.vm_crashes()
        assert not crashes, "the filter VM crashed:\n" + "\n".join(crashes[:6])

    def assert_refused(self, response: httpx.Response, marker: str, *, request_id: Any, tool: str, rule: str) -> dict[str, Any]:
        """-31003 naming the rule; the server saw nothing; the filter still serves."""
        error = assert_policy_refusal(response, request_id=request_id, tool=tool, code=APPROVAL_REFUSED)
        assert error["data"]["decision"] == "approval_refused" and error["data"]["rule"] == rule, response.text
        assert response.headers.get("x-mcp-policy") == "approval_refused", dict(response.headers)
        self.proxy.assert_refused_and_alive(marker)
        self.assert_vm_alive()
        return error


def _setup(envoys: EnvoyPool, mode: str, approver: ApprovalService, port: int | None = None) -> Setup:
    clusters = ((CLUSTER, approver.port if port is None else port),)
    return Setup(envoys.proxy(policy_for(APPROVAL_POLICY, mode), mode, extra_clusters=clusters), approver)


@pytest.fixture
def approval(envoys: EnvoyPool, mode: str, approver: ApprovalService) -> Iterator[Setup]:
    setup = _setup(envoys, mode, approver)
    yield setup
    setup.assert_vm_alive()


# -- yes ---------------------------------------------------------------------------------------------


def test_approved_call_reaches_the_server_after_the_approval(approval: Setup) -> None:
    marker = new_marker()
    approval.approver.script(marker, "allow")
    secret, session, request_id = f"sk-live-{uuid.uuid4().hex}", f"sess-{uuid.uuid4().hex}", f"req-{uuid.uuid4().hex}"
    arguments = {"_m": marker, "prompt": "ship it", "nested": {"list": [1, 2.5, None, "caf\u00e9"]}}
    body = to_bytes(call_message("needs_ok", arguments, 7))
    headers = {"authorization": f"Bearer {secret}", "mcp-session-id": session, "x-request-id": request_id}
    response = approval.post(body, marker=marker, headers=headers)

    approval.proxy.assert_upstream_answered(response, marker, request_id=7)
    forwarded = approval.proxy.assert_forwarded(marker, body)  # byte for byte
    [asked] = approval.approver.asked_about(marker)
    assert asked.at <= forwarded.completed_at, "the body reached the server before the approval was asked"
    if approval.proxy.mode == "hold":
        assert asked.at <= forwarded.headers_at, "hold mode: the headers reached the server before the approval was asked"
    assert (asked.method, asked.path) == ("POST", "/approve")
    assert asked.headers.get("content-type", "").startswith("application/json"), asked.headers
    question = asked.json()
    assert question == {
        "tool": "needs_ok",
        "arguments": arguments,
        "grant": question.get("grant"),
        "session": session,
        "request_id": request_id,
        "jsonrpc_id": 7,
        "rule": "tools.needs_ok",
        "reason": TOOL_REASON,
    }, question
    grant = question["grant"]
    assert isinstance(grant, str) and len(grant) == 16 and all(c in "0123456789abcdef" for c in grant), grant
    assert secret.encode() not in asked.body and secret not in approval.proxy.envoy.log_text()
    approval.assert_vm_alive()


def test_the_question_fingerprints_each_credential(approval: Setup) -> None:
    """Same credential, same grant; another credential, another grant; no credential, the anonymous one."""
    grants = []
    for authorization in ("Bearer one", "Bearer one", "Bearer two", None):
        marker = new_marker()
        approval.approver.script(marker, "allow")
        headers = {"authorization": authorization} if authorization else {}
        response = approval.call("needs_ok", {"_m": marker}, marker=marker, headers=headers)
        approval.proxy.assert_upstream_answered(response, marker, request_id=marker)
        [asked] = approval.approver.asked_about(marker)
        grants.append(asked.json()["grant"])
        assert "session" not in asked.json() or asked.json()["session"] is None, asked.body
    assert grants[0] == grants[1] and len(set(grants)) == 3, grants


def test_rule_with_approve_action_asks_only_when_it_triggers(approval: Setup) -> None:
    listing = new_marker()
    response = approval.call("claude_code_session", {"_m": listing, "action": "list"}, marker=listing)
    approval.proxy.assert_upstream_answered(response, listing, request_id=listing)
    assert approval.approver.asked_about(listing) == [], "a call no rule holds was sent for approval"

    marker = new_marker()
    approval.approver.script(marker, "allow")
    response = approval.call("claude_code_session", {"_m": marker, "action": "cancel", "sessionId": "s-1"}, marker=marker)
    approval.proxy.assert_upstream_answered(response, marker, request_id=marker)
    [asked] = approval.approver.asked_about(marker)
    assert asked.json()["rule"] == "tools.claude_code_session.rules.cancel-needs-a-human", asked.body
    assert asked.json()["reason"] == CANCEL_REASON, asked.body
    approval.assert_vm_alive()


# -- no ----------------------------------------------------------------------------------------------


def test_refused_approval_returns_the_approvers_reason(approval: Setup) -> None:
    marker = new_marker()
    approval.approver.script(marker, "deny")
    response = approval.call("needs_ok", {"_m": marker}, marker=marker)
    error = approval.assert_refused(response, marker, request_id=marker, tool="needs_ok", rule="tools.needs_ok")
    assert FREEZE_REASON in error["message"] and FREEZE_REASON in error["data"]["reason"], response.text
    assert TOOL_REASON in error["data"]["reason"], response.text
    assert len(approval.approver.asked_about(marker)) == 1


def test_refused_approval_of_a_rule(approval: Setup) -> None:
    marker = new_marker()
    approval.approver.script(marker, "deny_without_reason")
    response = approval.call("claude_code_session", {"_m": marker, "action": "cancel"}, marker=marker, request_id=3)
    error = approval.assert_refused(response, marker, request_id=3, tool="claude_code_session",
                                    rule="tools.claude_code_session.rules.cancel-needs-a-human")  # fmt: skip
    assert CANCEL_REASON in error["data"]["reason"], response.text


def test_no_answer_within_the_timeout_refuses_and_a_late_yes_does_not_count(approval: Setup) -> None:
    marker = new_marker()
    approval.approver.script(marker, "hang")
    started = time.monotonic()
    response = approval.call("needs_ok", {"_m": marker}, marker=marker)
    elapsed = time.monotonic() - started
    approval.assert_refused(response, marker, request_id=marker, tool="needs_ok", rule="tools.needs_ok")
    assert TIMEOUT_MS / 1000 * 0.9 <= elapsed < TIMEOUT_MS / 1000 + 3, f"refused after {elapsed:.2f} s, timeout_ms is {TIMEOUT_MS}"
    [asked] = approval.approver.asked_about(marker)
    assert asked.answered.wait(HANG_SECONDS + 5), "the approval service never finished its late answer"
    time.sleep(0.2)
    approval.proxy.assert_refused_and_alive(marker)  # the late "allow" let nothing through
    approval.assert_vm_alive()


@pytest.mark.parametrize("answer", ["not_json", "no_decision", "unknown_decision", "decision_not_a_string",
                                    "status_500", "status_201", "status_403"])  # fmt: skip
def test_anything_but_a_clear_yes_refuses(approval: Setup, answer: str) -> None:
    marker = new_marker()
    approval.approver.script(marker, answer)
    response = approval.call("needs_ok", {"_m": marker}, marker=marker)
    approval.assert_refused(response, marker, request_id=marker, tool="needs_ok", rule="tools.needs_ok")
    assert len(approval.approver.asked_about(marker)) == 1


def test_service_down_refuses(envoys: EnvoyPool, mode: str, approver: ApprovalService) -> None:
    down = _setup(envoys, mode, approver, port=_closed_port())
    marker = new_marker()
    response = down.call("needs_ok", {"_m": marker}, marker=marker)
    down.assert_refused(response, marker, request_id=marker, tool="needs_ok", rule="tools.needs_ok")


# -- batches and limits -------------------------------------------------------------------------


@pytest.mark.parametrize("siblings", [0, 1], ids=["alone", "with-an-allowed-call"])
def test_batch_with_a_call_needing_approval_is_refused_without_asking(approval: Setup, siblings: int) -> None:
    marker = new_marker()
    approval.approver.script(marker, "allow")
    batch = [call_message("needs_ok", {"_m": marker}, 1)] + [call_message("echo", {"_m": marker}, 2)] * siblings
    response = approval.post(batch, marker=marker)
    answers = assert_json_answer(response, 200)
    assert isinstance(answers, list) and len(answers) == 1 + siblings, response.text
    error = assert_jsonrpc_error(answers[0], APPROVAL_REFUSED, 1, response)
    assert error["data"]["rule"] == "tools.needs_ok" and "batch" in error["data"]["reason"], response.text
    if siblings:
        assert_jsonrpc_error(answers[1], POLICY_DENIED, 2, response)
    approval.proxy.assert_refused_and_alive(marker)
    assert approval.approver.asked_about(marker) == [], "the approval service was asked about a batch"
    approval.assert_vm_alive()


def test_refused_approval_gives_the_rate_limit_unit_back(approval: Setup) -> None:
    """max 1 a day: a refused approval spends nothing; once spent, nobody is asked any more."""
    session = {"mcp-session-id": f"sess-{uuid.uuid4().hex}"}
    refused = new_marker()
    approval.approver.script(refused, "deny")
    response = approval.call("limited_ok", {"_m": refused}, marker=refused, headers=session)
    approval.assert_refused(response, refused, request_id=refused, tool="limited_ok", rule="tools.limited_ok")

    approved = new_marker()
    approval.approver.script(approved, "allow")
    response = approval.call("limited_ok", {"_m": approved}, marker=approved, headers=session)
    approval.proxy.assert_upstream_answered(response, approved, request_id=approved)

    late = new_marker()
    approval.approver.script(late, "allow")
    response = approval.call("limited_ok", {"_m": late}, marker=late, headers=session)
    assert_policy_refusal(response, request_id=late, tool="limited_ok", code=RATE_LIMITED)
    approval.proxy.assert_refused_and_alive(late)
    assert approval.approver.asked_about(late) == [], "asked about a call its rate limit refuses anyway"
    approval.assert_vm_alive()


# -- the example policy, verbatim ------------------------------------------------------------------

EXAMPLE_TEXT = (REPO / "envoy" / "examples" / "approval.json").read_text(encoding="utf-8")


def test_example_policy_verbatim(envoys: EnvoyPool, mode: str, approver: ApprovalService) -> None:
    """envoy/examples/approval.json: list passes unasked, cancel and claude_code go to the approver."""
    example = json.loads(EXAMPLE_TEXT)
    hold = mode == "hold"
    proxy = envoys.proxy(
        EXAMPLE_TEXT, mode, allowed_tool="claude_code_session", allowed_arguments={"action": "list"},
        vm_settings={"header_mode": "hold"} if hold else None, extra_clusters=((example["approval"]["cluster"], approver.port),),
    )  # fmt: skip
    setup = Setup(proxy, approver)

    listing = new_marker()
    response = setup.call("claude_code_session", {"_m": listing, "action": "list"}, marker=listing)
    proxy.assert_upstream_answered(response, listing, request_id=listing)
    assert approver.asked_about(listing) == []

    cancel = new_marker()
    approver.script(cancel, "allow")
    response = setup.call("claude_code_session", {"_m": cancel, "action": "cancel", "sessionId": "s-1"}, marker=cancel)
    proxy.assert_upstream_answered(response, cancel, request_id=cancel)
    assert len(approver.asked_about(cancel)) == 1

    start = new_marker()
    approver.script(start, "deny")
    response = setup.call("claude_code", {"_m": start, "prompt": "rewrite everything"}, marker=start)
    error = setup.assert_refused(response, start, request_id=start, tool="claude_code", rule="tools.claude_code")
    assert "every autonomous session needs a human yes" in error["data"]["reason"] and FREEZE_REASON in error["data"]["reason"]
