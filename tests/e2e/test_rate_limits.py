"""Rate limits: "a runaway agent can't fire it dozens of times a minute".

The cap must hold per scope (grant = the Authorization credential), be
shared by tools naming the same counter, cost nothing for refused calls, and
be exact when calls arrive at once on different Envoy worker threads.
Refusals are HTTP 200 with JSON-RPC error -31002 and a Retry-After header.

Counters here use "day" windows (aligned to UTC midnight) so a test never
straddles a window; each test uses its own tools and counters, so tests
sharing one Envoy never share a budget.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any

import httpx
import pytest

from assertions import RATE_LIMITED, assert_json_answer, assert_policy_refusal
from conftest import EnvoyPool, policy_for
from policies import SEED_POLICY_TEXT, SEED_RATE_LIMIT
from policy_proxy import JSON_HEADERS, PolicyProxy, call_message, new_marker


def _day_limit(counter: str, maximum: int, scope: str) -> dict[str, Any]:
    return {"limits": [{"counter": counter, "window": "day", "max": maximum, "scope": scope}]}


RATE_POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "tools": {
        "echo": {"action": "allow"},
        "per_grant": _day_limit("per_grant", 3, "grant"),
        "shared_a": _day_limit("shared", 2, "global"),
        "shared_b": _day_limit("shared", 2, "global"),
        "refusal_probe": _day_limit("refusal_probe", 1, "global"),
        "burst": _day_limit("burst", 5, "global"),
        "per_session": _day_limit("per_session", 1, "session"),
    },
}


@pytest.fixture(autouse=True)
def _not_at_midnight() -> None:
    now = dt.datetime.now(dt.timezone.utc)
    seconds_left = 86400 - (now.hour * 3600 + now.minute * 60 + now.second)
    if seconds_left < 30:
        pytest.skip("too close to the UTC day boundary, where day windows roll over")


@pytest.fixture
def rate_proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return envoys.proxy(policy_for(RATE_POLICY, mode), mode)


def _call(proxy: PolicyProxy, tool: str, *, grant: str | None = None, session: str | None = None) -> tuple[httpx.Response, str]:
    marker = new_marker()
    headers = {}
    if grant is not None:
        headers["authorization"] = f"Bearer {grant}"
    if session is not None:
        headers["mcp-session-id"] = session
    return proxy.call(tool, {"m": marker}, request_id=marker, headers=headers, marker=marker), marker


def _assert_rate_limited(proxy: PolicyProxy, response: httpx.Response, marker: str, tool: str) -> None:
    error = assert_policy_refusal(response, request_id=marker, tool=tool, code=RATE_LIMITED)
    for key in ("counter", "window", "max", "retry_after_seconds"):
        assert key in error["data"], response.text
    retry_after = response.headers.get("retry-after")
    assert retry_after is not None and int(retry_after) >= 1, dict(response.headers)
    proxy.assert_refused_and_alive(marker)


def test_grant_budget(rate_proxy: PolicyProxy) -> None:
    grant = "grant-" + new_marker()
    for _ in range(3):
        response, marker = _call(rate_proxy, "per_grant", grant=grant)
        rate_proxy.assert_upstream_answered(response, marker)
    response, marker = _call(rate_proxy, "per_grant", grant=grant)
    _assert_rate_limited(rate_proxy, response, marker, "per_grant")
    # Another credential has its own budget.
    response, marker = _call(rate_proxy, "per_grant", grant="other-" + grant)
    rate_proxy.assert_upstream_answered(response, marker)


def test_missing_session_id_is_not_a_free_pass(rate_proxy: PolicyProxy) -> None:
    """Requests without Mcp-Session-Id share one budget: dropping the header does not reset the count."""
    statuses = []
    for _ in range(4):
        response, marker = _call(rate_proxy, "per_session")  # no Mcp-Session-Id either
        statuses.append("error" in assert_json_answer(response, 200))
    assert statuses == [False, True, True, True], statuses


def test_counter_shared_by_two_tools(rate_proxy: PolicyProxy) -> None:
    for tool in ("shared_a", "shared_b"):
        response, marker = _call(rate_proxy, tool)
        rate_proxy.assert_upstream_answered(response, marker)
    for tool in ("shared_a", "shared_b"):
        response, marker = _call(rate_proxy, tool)
        _assert_rate_limited(rate_proxy, response, marker, tool)


def test_refused_calls_consume_nothing(rate_proxy: PolicyProxy) -> None:
    """A batch refused because of another element must not spend the limited tool's unit."""
    marker = new_marker()
    batch = [call_message("refusal_probe", {"m": marker}, 1), call_message("claude_code", {"m": marker}, 2)]
    response = rate_proxy.post(batch, marker=marker)
    assert all("error" in answer for answer in assert_json_answer(response, 200)), response.text
    rate_proxy.assert_refused_and_alive(marker)
    response, marker = _call(rate_proxy, "refusal_probe")
    rate_proxy.assert_upstream_answered(response, marker)


def test_exact_under_concurrency(rate_proxy: PolicyProxy) -> None:
    """40 calls at the same instant over 40 connections (both workers): exactly `max` pass."""
    tool, maximum, callers = "burst", 5, 40
    start = threading.Barrier(callers)
    outcomes: list[str] = []
    lock = threading.Lock()

    def caller(index: int) -> None:
        body = call_message(tool, {"i": index}, index)
        outcome = "no answer"
        try:
            with httpx.Client(base_url=rate_proxy.envoy.url, timeout=20) as client:
                start.wait()
                response = client.post("/mcp", json=body, headers=JSON_HEADERS)
            outcome = f"other: {response.status_code} {response.text[:200]!r}"
            message = response.json()
            if "result" in message:
                outcome = "allowed"
            elif message.get("error", {}).get("code") == RATE_LIMITED:
                outcome = "limited"
        except Exception as error:  # noqa: BLE001 - reported through `outcomes`
            outcome = f"{outcome} ({type(error).__name__}: {error})"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(outcomes) == callers and set(outcomes) <= {"allowed", "limited"}, [o for o in outcomes if o not in ("allowed", "limited")]
    assert outcomes.count("allowed") == maximum, f"{outcomes.count('allowed')} passed, cap is {maximum}"


def test_seed_policy_caps_claude_code_session_at_ten_a_minute(envoys: EnvoyPool, mode: str) -> None:
    """The product's headline: per credential, the 11th call within a minute is refused.

    Each of two grants gets exactly 10 calls through and then -31002 with
    `retry_after_seconds` and a Retry-After header; every other tool stays
    denied whatever budget is left.
    """
    now = time.time()
    if now % 60 > 45:  # 22 calls take well under a second; keep them inside one minute window
        time.sleep(60 - now % 60 + 0.5)
    hold = mode == "hold"
    envoy = envoys.envoy(SEED_POLICY_TEXT, allow_on_headers_stop_iteration=True if hold else None,
                         vm_settings={"header_mode": "hold"} if hold else None, label="fresh-seed-counters")  # fmt: skip
    proxy = PolicyProxy(envoy, envoys.upstream, mode, "claude_code_session", {"action": "list"})
    try:
        grants = ["seed-" + new_marker(), "seed-other-" + new_marker()]
        for grant in grants:  # the second grant's budget is untouched by the first one's calls
            for _ in range(SEED_RATE_LIMIT):
                response, marker = _call(proxy, "claude_code_session", grant=grant)
                proxy.assert_upstream_answered(response, marker)
            response, marker = _call(proxy, "claude_code_session", grant=grant)
            error = assert_policy_refusal(response, request_id=marker, tool="claude_code_session", code=RATE_LIMITED)
            data = error["data"]
            assert data.get("max") == SEED_RATE_LIMIT and data.get("window") == "minute", response.text
            assert data.get("counter") == "claude_code_session_rate", response.text
            seconds = data.get("retry_after_seconds")
            assert isinstance(seconds, int) and 1 <= seconds <= 60, response.text
            assert response.headers.get("retry-after") == str(seconds), dict(response.headers)
            proxy.assert_not_forwarded(marker)
        # Other tools stay denied, for a grant with its whole budget left too,
        # and refusing them spends nothing: that grant still has all ten calls.
        fresh = "seed-fresh-" + new_marker()
        for grant in (grants[0], fresh):
            response, marker = _call(proxy, "claude_code", grant=grant)
            assert_policy_refusal(response, request_id=marker, tool="claude_code")
            proxy.assert_not_forwarded(marker)
        for _ in range(SEED_RATE_LIMIT):
            response, marker = _call(proxy, "claude_code_session", grant=fresh)
            proxy.assert_upstream_answered(response, marker)
    finally:
        proxy.close()
