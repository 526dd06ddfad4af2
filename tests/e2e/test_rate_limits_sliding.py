"""Sliding windows: `max` per window holds in every interval of that length.

With windows aligned to UTC minutes, 10 calls at :59 and 10 more at :00
would all pass: 20 in two seconds under "10 a minute". Limits slide by
default, so a budget spent just before a boundary is not back just after
it. Here, in an Envoy with four worker threads and calls released at the
same instant over many connections:

- a real minute boundary: the budget is spent by a simultaneous burst at
  second :5x of the wall clock; a burst just after :00 is refused whole, and
  the upstream sees none of it; the same calls against a limit with
  `"algorithm": "fixed"` pass (the documented difference);
- the same across a `second` boundary, which is quicker to repeat.

Every scope is a fresh credential or session id, so tests sharing an Envoy
never share a budget. Nothing here times the filter: wall-clock readings
only decide whether an attempt straddled the boundary as intended.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from assertions import RATE_LIMITED, assert_policy_refusal
from conftest import MODES, EnvoyPool, policy_for
from policy_proxy import JSON_HEADERS, PolicyProxy, call_message, new_marker
from raw_http import RawResponse, jsonrpc_bytes, simultaneous_posts
from recording_upstream import MARKER_HEADER

WORKERS = 4
MINUTE_CAP = 10
SECOND_CAP = 3
CALLERS = 40


def _limit(counter: str, window: str, maximum: int, scope: str, **extra: Any) -> dict[str, Any]:
    return {"limits": [{"counter": counter, "window": window, "max": maximum, "scope": scope, **extra}]}


SLIDING_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "tools": {
        "echo": {},
        # No "algorithm": sliding is the default.
        "rolling_minute": _limit("rolling_minute", "minute", MINUTE_CAP, "grant"),
        "fixed_minute": _limit("fixed_minute", "minute", MINUTE_CAP, "grant", algorithm="fixed"),
        "rolling_second": _limit("rolling_second", "second", SECOND_CAP, "session"),
    },
}


def _proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return envoys.proxy(policy_for(SLIDING_POLICY, mode), mode, concurrency=WORKERS)


def _burst(proxy: PolicyProxy, tool: str, scope_header: tuple[str, str], callers: int = CALLERS) -> tuple[list[str], list[tuple[str, int]]]:
    """`callers` calls released at once: (allowed markers, [(refused marker, retry_after_seconds)])."""
    markers = [new_marker() for _ in range(callers)]
    requests = [
        ([*JSON_HEADERS.items(), (MARKER_HEADER, marker), scope_header], jsonrpc_bytes(call_message(tool, {"m": marker}, marker)))
        for marker in markers
    ]
    allowed: list[str] = []
    refused: list[tuple[str, int]] = []
    other: list[str] = []
    for marker, result in zip(markers, simultaneous_posts(proxy.port, requests)):
        if isinstance(result, str) or result.status != 200:
            other.append(result if isinstance(result, str) else f"HTTP {result.status}: {result.text[:200]}")
            continue
        message = result.json()
        if "result" in message:
            allowed.append(marker)
        elif message.get("error", {}).get("code") == RATE_LIMITED:
            refused.append((marker, _retry_after(result, marker, tool)))
        else:
            other.append(result.text[:200])
    assert not other, f"unexpected answers: {other[:5]}"
    return allowed, refused


def _retry_after(response: RawResponse, marker: str, tool: str) -> int:
    error = assert_policy_refusal(response, request_id=marker, tool=tool, code=RATE_LIMITED)
    seconds = error["data"].get("retry_after_seconds")
    assert isinstance(seconds, int) and seconds >= 1, error
    assert response.header("retry-after") == str(seconds), f"retry-after {response.header('retry-after')!r}, data says {seconds}"
    return seconds


def _sleep_until_second_of_minute(low: float, high: float) -> None:
    """Return at a wall-clock second-of-minute in [low, high)."""
    into = time.time() % 60
    if into < low:
        time.sleep(low - into)
    elif into >= high:
        time.sleep(60 - into + low)


def test_budget_spent_before_a_minute_boundary_is_not_back_after_it(envoys: EnvoyPool) -> None:
    """Spend 10/minute at :5x with 40 simultaneous calls; 40 more just after :00 are all refused.

    Both header modes share the one minute boundary (one wait, not two).
    The fixed-window limit, spent the same way, is whole again after :00.
    """
    proxies = {mode: _proxy(envoys, mode) for mode in MODES}
    for proxy in proxies.values():
        proxy.assert_still_serves()  # Envoys up before the clock matters
    grants = {mode: ("authorization", f"Bearer rolling-{mode}-{uuid.uuid4().hex}") for mode in MODES}
    fixed_grants = {mode: ("authorization", f"Bearer fixed-{mode}-{uuid.uuid4().hex}") for mode in MODES}

    _sleep_until_second_of_minute(50, 55)
    minute = int(time.time() // 60)
    spent_from = time.time()
    for mode, proxy in proxies.items():
        since = proxy.upstream.count()
        allowed, refused = _burst(proxy, "rolling_minute", grants[mode])
        assert len(allowed) == MINUTE_CAP, f"{mode}: {len(allowed)} of {CALLERS} simultaneous calls passed, cap is {MINUTE_CAP}"
        proxy.assert_outcomes_since(since, allowed, [m for m, _ in refused])
        fixed_allowed, _ = _burst(proxy, "fixed_minute", fixed_grants[mode])
        assert len(fixed_allowed) == MINUTE_CAP, f"{mode}: fixed window let {len(fixed_allowed)} through"
    if int(time.time() // 60) != minute:
        pytest.skip("spending the budgets crossed the minute boundary on this machine; nothing to compare")

    time.sleep(60 - time.time() % 60 + 0.3)  # just after :00 of the next minute
    for mode, proxy in proxies.items():
        since = proxy.upstream.count()
        allowed, refused = _burst(proxy, "rolling_minute", grants[mode])
        asked_by = time.time()
        assert not allowed, f"{mode}: {len(allowed)} calls passed just after the boundary; the budget was spent seconds before it"
        assert len(refused) == CALLERS
        proxy.assert_outcomes_since(since, [], [m for m, _ in refused])
        # The hint is true: nothing spent after `spent_from` leaves the window
        # before `spent_from + 60`, so no retry hint may promise earlier.
        for _marker, seconds in refused:
            assert spent_from + 60 - asked_by <= seconds <= 60, f"{mode}: retry in {seconds} s"

        # The fixed window, spent the same way, starts over at :00.
        fixed_allowed, _ = _burst(proxy, "fixed_minute", fixed_grants[mode])
        assert len(fixed_allowed) == MINUTE_CAP, f"{mode}: fixed window after the boundary let {len(fixed_allowed)} through"
        proxy.assert_still_serves()


@pytest.mark.parametrize("mode", MODES)
def test_budget_spent_before_a_second_boundary_is_not_back_after_it(envoys: EnvoyPool, mode: str) -> None:
    """3/second: a burst at .8 spends it, a burst just after the next .0 finds nothing; a second later it is back."""
    proxy = _proxy(envoys, mode)
    proxy.assert_still_serves()
    for _attempt in range(5):
        session = ("mcp-session-id", "rolling-" + uuid.uuid4().hex)
        time.sleep((0.8 - time.time() % 1) % 1)
        started = time.time()
        since = proxy.upstream.count()
        allowed, refused = _burst(proxy, "rolling_second", session, callers=12)
        assert len(allowed) == SECOND_CAP, f"{len(allowed)} of 12 simultaneous calls passed, cap is {SECOND_CAP}"
        proxy.assert_outcomes_since(since, allowed, [m for m, _ in refused])
        if int(time.time()) != int(started):
            continue  # the spending burst itself crossed the boundary
        time.sleep(1 - time.time() % 1 + 0.02)
        since = proxy.upstream.count()
        allowed, refused = _burst(proxy, "rolling_second", session, callers=12)
        if time.time() - started >= 1.0:
            continue  # too slow to stay within one second of the spending: try again
        assert not allowed, f"{len(allowed)} calls passed just after the second boundary"
        assert all(seconds == 1 for _, seconds in refused), refused
        proxy.assert_outcomes_since(since, [], [m for m, _ in refused])
        break
    else:
        pytest.skip("could not fit both bursts into one second on this machine")

    time.sleep(1.05)  # a second after the spending burst, the budget is whole
    marker = new_marker()
    response = proxy.call("rolling_second", {"m": marker}, request_id=marker, marker=marker, headers=dict([session]))
    proxy.assert_upstream_answered(response, marker, request_id=marker)
    proxy.assert_still_serves()
