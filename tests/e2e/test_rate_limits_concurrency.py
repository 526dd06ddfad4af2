"""Rate limits under load and over time, in an Envoy with four worker threads.

Each worker runs its own Wasm VM; their only common memory is proxy-wasm
shared data, so a cap is exact only if every increment goes through CAS and
the first calls for a new scope value cannot overwrite each other's slot.
Hence: 120 calls released at the same instant over 120 connections (spread
over all four workers) for a scope value **never seen before**, several
rounds with a fresh value each, and exactly `max` of them may reach the
server.

Also here: a fixed (`"algorithm": "fixed"`) `second` window that rolls over
by itself at the UTC second (sliding windows: test_rate_limits_sliding.py), grants that each get
their own budget without the credential ever being echoed or logged, and a
batch needing two units when one is left (nothing forwarded, nothing spent).

Every scope in this module is a fresh session id or credential, so tests
sharing an Envoy never share a budget.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest

from assertions import RATE_LIMITED, assert_json_answer, assert_jsonrpc_error, assert_policy_refusal, parse_json
from conftest import EnvoyPool, policy_for
from policy_proxy import JSON_HEADERS, PolicyProxy, call_message, new_marker
from raw_http import RawResponse, jsonrpc_bytes, simultaneous_posts
from recording_upstream import MARKER_HEADER

WORKERS = 4
CAP = 20  # per hour, per scope value
CALLERS = 120
ROUNDS = 5
SECOND_CAP = 3
ISOLATION_CAP = 2
BATCH_CAP = 3


def _limit(counter: str, window: str, maximum: int, scope: str, **extra: Any) -> dict[str, Any]:
    return {"limits": [{"counter": counter, "window": window, "max": maximum, "scope": scope, **extra}]}


CONCURRENCY_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "tools": {
        "echo": {},
        "per_session_hour": _limit("per_session_hour", "hour", CAP, "session"),
        "per_grant_hour": _limit("per_grant_hour", "hour", CAP, "grant"),
        "per_second": _limit("per_second", "second", SECOND_CAP, "session", algorithm="fixed"),
        "per_grant_day": _limit("per_grant_day", "day", ISOLATION_CAP, "grant"),
        "batch_probe": _limit("batch_probe", "day", BATCH_CAP, "session"),
    },
}


@pytest.fixture
def proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return envoys.proxy(policy_for(CONCURRENCY_POLICY, mode), mode, concurrency=WORKERS)


def _skip_near_window_end(window_seconds: int, margin: float) -> None:
    left = window_seconds - time.time() % window_seconds
    if left < margin:
        pytest.skip(f"{left:.1f} s before a UTC {window_seconds} s window boundary, where the budget rolls over")


def _scope_header(scope: str, value: str) -> tuple[str, str]:
    return ("mcp-session-id", value) if scope == "session" else ("authorization", f"Bearer {value}")


def _call(proxy: PolicyProxy, tool: str, headers: dict[str, str] | None = None) -> tuple[httpx.Response, str]:
    marker = new_marker()
    response = proxy.call(tool, {"m": marker}, request_id=marker, marker=marker, headers=headers)
    return response, marker


def _assert_limited(response: httpx.Response | RawResponse, marker: str, tool: str) -> dict[str, Any]:
    """-31002 with data.retry_after_seconds and the same value in a Retry-After header."""
    error = assert_policy_refusal(response, request_id=marker, tool=tool, code=RATE_LIMITED)
    seconds = error["data"].get("retry_after_seconds")
    assert isinstance(seconds, int) and seconds >= 1, error
    header = response.headers.get("retry-after") if isinstance(response, httpx.Response) else response.header("retry-after")
    assert header == str(seconds), f"retry-after {header!r}, data says {seconds}"
    return error


# -- exactness across workers ---------------------------------------------------


@pytest.mark.parametrize("scope", ["session", "grant"])
def test_exact_across_four_workers_for_fresh_scope_values(proxy: PolicyProxy, scope: str) -> None:
    """120 simultaneous calls for a never-seen value: exactly 20 reach the server, 100 get -31002."""
    _skip_near_window_end(3600, 10 + ROUNDS)
    tool = f"per_{scope}_hour"
    workers_before = proxy.envoy.worker_connections()
    since = proxy.upstream.count()
    allowed_markers: list[str] = []
    refused_markers: list[str] = []
    for round_number in range(ROUNDS):
        round_start = proxy.upstream.count()
        value = f"{scope}-round{round_number}-{uuid.uuid4().hex}"
        markers = [new_marker() for _ in range(CALLERS)]
        requests = [
            (
                [*JSON_HEADERS.items(), (MARKER_HEADER, marker), _scope_header(scope, value)],
                jsonrpc_bytes(call_message(tool, {"m": marker}, marker)),
            )
            for marker in markers
        ]
        results = simultaneous_posts(proxy.port, requests)

        allowed, limited, other = [], [], []
        for marker, result in zip(markers, results):
            if isinstance(result, str) or result.status != 200:
                other.append(result if isinstance(result, str) else f"HTTP {result.status}: {result.text[:200]}")
                continue
            message = result.json()
            if "result" in message:
                allowed.append(marker)
            elif message.get("error", {}).get("code") == RATE_LIMITED:
                _assert_limited(result, marker, tool)
                limited.append(marker)
            else:
                other.append(result.text[:200])
        assert not other, f"round {round_number}: unexpected answers {other[:5]}"
        assert (len(allowed), len(limited)) == (CAP, CALLERS - CAP), (
            f"round {round_number}: {len(allowed)} passed and {len(limited)} were limited; cap is {CAP}"
        )
        reached = {r.marker for r in proxy.upstream.requests()[round_start:] if r.complete} & set(markers)
        assert reached == set(allowed), f"round {round_number}: upstream got {len(reached)} calls, {len(allowed)} were answered as allowed"
        allowed_markers += allowed
        refused_markers += limited

    proxy.assert_still_serves()  # after this, anything a refused call leaked has arrived
    proxy.assert_outcomes_since(since, allowed_markers, refused_markers)
    workers_after = proxy.envoy.worker_connections()
    busy = [w for w in range(WORKERS) if workers_after.get(w, 0) > workers_before.get(w, 0)]
    assert len(busy) == WORKERS, f"only workers {busy} accepted connections: {workers_after}"


# -- windows roll over -------------------------------------------------------------


def _sleep_past_next_second(extra: float = 0.02) -> None:
    time.sleep(1 - time.time() % 1 + extra)


def test_second_window_rolls_over(proxy: PolicyProxy) -> None:
    """Fill a fixed per-second budget; at the next second boundary it is back, untouched by anyone."""
    for _attempt in range(3):
        headers = {"mcp-session-id": "roll-" + uuid.uuid4().hex}
        _sleep_past_next_second()
        started = int(time.time())
        answers = [_call(proxy, "per_second", headers) for _ in range(SECOND_CAP + 1)]
        if int(time.time()) == started:
            break  # all four calls fell into one window
    else:
        pytest.skip("could not fit four calls into one second on this machine")
    for response, marker in answers[:SECOND_CAP]:
        proxy.assert_upstream_answered(response, marker, request_id=marker)
    response, marker = answers[SECOND_CAP]
    error = _assert_limited(response, marker, "per_second")
    assert error["data"]["retry_after_seconds"] == 1 and error["data"]["window"] == "second", response.text
    proxy.assert_refused_and_alive(marker)

    _sleep_past_next_second()
    for _ in range(SECOND_CAP):  # a full budget again (calls crossing into yet another second only find more room)
        response, marker = _call(proxy, "per_second", headers)
        proxy.assert_upstream_answered(response, marker, request_id=marker)


# -- grants ----------------------------------------------------------------------------


def _audit_lines_by_request_id(envoy: Any, request_ids: list[str], timeout: float = 3.0) -> dict[str, dict[str, Any]]:
    """The filter's audit lines (`mcp-policy audit {json}`) for these x-request-ids."""
    deadline = time.monotonic() + timeout
    while True:
        found = {}
        for line in envoy.log_text().splitlines():
            at = line.find("mcp-policy audit ")
            if at >= 0:
                entry = parse_json(line[at + len("mcp-policy audit ") :])
                if entry.get("request_id") in request_ids:
                    found[entry["request_id"]] = entry
        if len(found) == len(request_ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_each_grant_has_its_own_budget_and_is_never_echoed_or_logged(proxy: PolicyProxy) -> None:
    _skip_near_window_end(86400, 30)
    secrets = [f"sk-live-{uuid.uuid4().hex}", f"sk-live-{uuid.uuid4().hex}"]
    refusals: dict[str, list[str]] = {secret: [] for secret in secrets}  # secret -> x-request-ids
    for secret in secrets:
        headers = {"authorization": f"Bearer {secret}"}
        for _ in range(ISOLATION_CAP):  # the second grant is untouched by the first one's calls
            response, marker = _call(proxy, "per_grant_day", headers)
            proxy.assert_upstream_answered(response, marker, request_id=marker)
        for _ in range(2):
            request_id = "req-" + uuid.uuid4().hex
            response, marker = _call(proxy, "per_grant_day", {**headers, "x-request-id": request_id})
            _assert_limited(response, marker, "per_grant_day")
            assert secret not in response.text and not any(secret in v for v in response.headers.values())
            proxy.assert_refused_and_alive(marker)
            refusals[secret].append(request_id)

    # Refusals are audited with a fingerprint of the credential: 16 hex
    # digits, the same for the same credential, another for another one.
    fingerprints = []
    for secret, request_ids in refusals.items():
        audit = _audit_lines_by_request_id(proxy.envoy, request_ids)
        assert set(audit) == set(request_ids), f"audit lines missing for {set(request_ids) - set(audit)}"
        assert all(entry["decision"] == "rate_limited" for entry in audit.values()), audit
        grants = {entry["grant"] for entry in audit.values()}
        assert len(grants) == 1, f"one credential, several fingerprints: {grants}"
        grant = grants.pop()
        assert len(grant) == 16 and all(c in "0123456789abcdef" for c in grant), grant
        fingerprints.append(grant)
    assert fingerprints[0] != fingerprints[1], "two credentials, one fingerprint"
    log = proxy.envoy.log_text()
    for secret in secrets:
        assert secret not in log, "a raw credential was written to the Envoy log"


# -- batches --------------------------------------------------------------------------


def test_batch_needing_two_units_when_one_is_left_spends_nothing(proxy: PolicyProxy) -> None:
    _skip_near_window_end(86400, 30)
    headers = {"mcp-session-id": "batch-" + uuid.uuid4().hex}
    for _ in range(BATCH_CAP - 1):
        response, marker = _call(proxy, "batch_probe", headers)
        proxy.assert_upstream_answered(response, marker, request_id=marker)

    marker = new_marker()
    batch = [call_message("batch_probe", {"m": marker}, 1), call_message("batch_probe", {"m": marker}, 2)]
    response = proxy.post(batch, headers=headers, marker=marker)
    answers = assert_json_answer(response, 200)
    assert isinstance(answers, list) and len(answers) == 2, response.text
    by_id = {answer["id"]: answer for answer in answers}
    assert_jsonrpc_error(by_id[2], RATE_LIMITED, 2, response)  # the call that found no unit
    assert_jsonrpc_error(by_id[1], -31001, 1, response)  # its sibling: not forwarded either
    assert response.headers.get("retry-after"), dict(response.headers)
    proxy.assert_refused_and_alive(marker)

    # The last unit is still there: one call passes, the next one does not.
    response, marker = _call(proxy, "batch_probe", headers)
    proxy.assert_upstream_answered(response, marker, request_id=marker)
    response, marker = _call(proxy, "batch_probe", headers)
    _assert_limited(response, marker, "batch_probe")
    proxy.assert_refused_and_alive(marker)
