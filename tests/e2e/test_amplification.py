"""No amplification: a refused request costs the filter little and gets a small answer.

A batch larger than `settings.max_batch` (64 by default) is refused whole
with one -32600 error, before any element is judged; a refused batch of up to
max_batch gets one error per element, at most 64 KiB in all, and writes one
audit line with counts. Ids longer than 256 bytes are refused rather than
echoed. Every case: the upstream saw nothing, the filter still serves.
"""

from __future__ import annotations

import json
import time

import pytest

from assertions import INVALID_REQUEST, POLICY_DENIED, assert_http_error, assert_json_answer
from conftest import EnvoyPool, policy_for
from policy_proxy import PolicyProxy, call_message, new_marker, to_bytes

POLICY = {
    "version": "1",
    "default": "deny",
    "tools": {"echo": {}, "delete_everything": {"action": "deny", "reason": "destroys data"}},
}
MAX_BATCH = 64
ANSWER_LIMIT = 64 * 1024


@pytest.fixture
def proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return envoys.proxy(policy_for(POLICY, mode), mode)


def _log_lines_since(proxy: PolicyProxy, offset: int) -> list[str]:
    return [line for line in proxy.envoy.log_text()[offset:].splitlines() if "mcp-policy" in line]


def _wait_for_lines(proxy: PolicyProxy, offset: int, needle: str) -> list[str]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        lines = _log_lines_since(proxy, offset)
        if any(needle in line for line in lines):
            return lines
        time.sleep(0.1)
    pytest.fail(f"{needle!r} not logged:\n{proxy.envoy.log_tail()}")


def test_huge_refused_batch_gets_one_small_answer_and_one_log_line(proxy: PolicyProxy) -> None:
    """The issue's measurement: ~15,000 refused calls got a 3.9 MB answer and as many log lines."""
    marker = new_marker()
    batch = [{"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {"name": "rm"}} for i in range(12_000)]
    body = to_bytes(batch)
    assert len(body) < 1 << 20, len(body)
    offset = len(proxy.envoy.log_text())
    started = time.monotonic()
    response = proxy.post(body, marker=marker)
    print(f"12,000-element batch ({len(body)} bytes): answered in {time.monotonic() - started:.3f} s, {len(response.content)} bytes")
    error = assert_http_error(response, 400, INVALID_REQUEST, null_id=True)
    assert "batch of 12000 messages (12000 tools/call) exceeds settings.max_batch (64)" in error["message"], response.text
    assert len(response.content) < 1024, len(response.content)
    proxy.assert_refused_and_alive(marker)
    lines = _wait_for_lines(proxy, offset, "exceeds settings.max_batch")
    assert len(lines) == 1, lines[:5]


def test_refused_batch_of_max_batch_gets_bounded_answers_and_one_audit_line(proxy: PolicyProxy) -> None:
    marker = new_marker()
    request_id = "amp-" + marker
    batch = [call_message("echo", {"m": marker}, i) for i in range(MAX_BATCH - 1)] + [call_message("delete_everything", {}, "last")]
    offset = len(proxy.envoy.log_text())
    response = proxy.post(batch, marker=marker, headers={"x-request-id": request_id})
    answers = assert_json_answer(response, 200)
    assert isinstance(answers, list) and len(answers) == MAX_BATCH, response.text[:500]
    assert all(a["error"]["code"] == POLICY_DENIED for a in answers), response.text[:500]
    assert len(response.content) <= ANSWER_LIMIT and len(response.content) <= MAX_BATCH * 4096, len(response.content)
    proxy.assert_refused_and_alive(marker)
    lines = [line for line in _wait_for_lines(proxy, offset, request_id) if request_id in line]
    assert len(lines) == 1, lines
    audit = json.loads(lines[0].split("mcp-policy audit ", 1)[1])
    assert audit["tool"] == "delete_everything" and audit["rule"] == "tools.delete_everything", audit
    assert audit["batch"] == {"calls": 64, "denied": 1, "rate_limited": 0, "approval_refused": 0, "held_back": 63}, audit


def test_batch_of_exactly_max_batch_is_forwarded(proxy: PolicyProxy) -> None:
    marker = new_marker()
    batch = [call_message("echo", {"m": marker}, i) for i in range(MAX_BATCH)]
    response = proxy.post(batch, marker=marker)
    answers = assert_json_answer(response, 200)
    assert isinstance(answers, list) and len(answers) == MAX_BATCH and all("result" in a for a in answers), response.text[:500]
    proxy.assert_forwarded(marker, batch)


def test_batch_of_max_batch_plus_one_is_refused_whole(proxy: PolicyProxy) -> None:
    marker = new_marker()
    batch = [call_message("echo", {"m": marker}, i) for i in range(MAX_BATCH + 1)]
    response = proxy.post(batch, marker=marker)
    error = assert_http_error(response, 400, INVALID_REQUEST, null_id=True)
    assert "exceeds settings.max_batch (64)" in error["message"], response.text
    proxy.assert_refused_and_alive(marker)


def test_huge_id_is_refused_not_echoed(proxy: PolicyProxy) -> None:
    marker = new_marker()
    huge = marker + "x" * 100_000
    response = proxy.post(call_message("delete_everything", {}, huge), marker=marker)
    error = assert_http_error(response, 400, INVALID_REQUEST, null_id=True)
    assert "longer than 256 bytes" in error["message"], response.text
    assert len(response.content) < 1024, len(response.content)
    proxy.assert_refused_and_alive(marker)
