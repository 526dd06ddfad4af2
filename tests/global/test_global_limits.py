"""Global limits: one budget across Envoy replicas, through the rate limit service.

Two Envoy processes run dist/mcp_policy.wasm with the same policy; shared
data is per process, so only the rate limit service (envoyproxy/ratelimit
with the production configuration of docs/rate-limit-service.md, over Redis) can hold them
to one budget. Every test uses fresh grants
(Authorization credentials), so budgets never leak between tests; the
upstream's records tell exactly which calls got through.

- calls for one grant spread over both replicas, alternating or all at
  once, reach the upstream exactly `max` times; another grant has its own
  budget; tools naming one counter share it (`include_tool: false`; with
  the default `true` this service keeps one budget per tool); refusals are
  -31002 with `data.retry_after_seconds` and never reach the upstream;
- spend caps send their amount as `hits_addend`; a refused spend still
  counts at this service; with two global limits on a call, a refusal by
  one does not charge the other (STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT);
- the service killed: `failure_mode: "deny"` refuses every globally limited
  call (and nothing else), `"local"` falls back to each replica's own
  limit; a hung service is the same after `timeout_ms`;
- a `second` window rolls over;
- a policy naming a cluster Envoy lacks, or a domain the service does not
  know, refuses globally limited calls.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from assertions import RATE_LIMITED, assert_json_answer, assert_policy_refusal, same_id
from global_envoy import FilterEnvoy, Replicas, probe_filter_support
from policy_proxy import JSON_HEADERS, call_message, new_marker
from recording_upstream import MARKER_HEADER, RecordingUpstream
from services import RateLimitService

MAX = 5
PER_SECOND = 3
LOCAL_MAX = 2
SPEND_MAX = 10
NARROW, WIDE = 2, 5
TIMEOUT_MS = 500


def _limit(counter: str, window: str, maximum: int, *, global_: bool = True, **extra: Any) -> dict[str, Any]:
    limit: dict[str, Any] = {"counter": counter, "window": window, "max": maximum, "scope": "grant", **extra}
    if global_:
        limit["global"] = True
    return {"limits": [limit]}


def global_policy(failure_mode: str, include_tool: bool = False) -> dict[str, Any]:
    narrow = {"counter": "narrow", "window": "minute", "max": NARROW, "scope": "grant", "global": True}
    wide = {"counter": "wide", "window": "minute", "max": WIDE, "scope": "grant", "global": True}
    return {
        "version": "1",
        "default": "deny",
        "rate_limit_service": {
            "cluster": "rls",
            "domain": "mcp_policy",
            "timeout_ms": TIMEOUT_MS,
            "failure_mode": failure_mode,
            # envoyproxy/ratelimit keys on every entry: shared counters need this.
            "include_tool": include_tool,
        },
        "tools": {
            "echo": {"action": "allow"},
            "claude_code_session": _limit("sessions", "minute", MAX),
            # Names the same counter: shares the budget.
            "claude_code_session_twin": _limit("sessions", "minute", MAX),
            # The service counts fixed windows; "fixed" makes each replica's
            # local pre-check follow the same ones (sliding, the default,
            # would also hold back calls the service admits just after its
            # boundary, which is what this limit's test checks).
            "per_second": _limit("per_second", "second", PER_SECOND, algorithm="fixed"),
            # Not global: each replica counts on its own.
            "local_only": _limit("local_only", "minute", LOCAL_MAX, global_=False),
            # A spend cap: the argument's amount is the descriptor's hits_addend.
            "spend": {
                "limits": [
                    {
                        "counter": "spend",
                        "window": "hour",
                        "max": SPEND_MAX,
                        "scope": "grant",
                        "global": True,
                        "increment_from": "args.cost",
                    }
                ]
            },
            # Two global limits on one call (two descriptors), one shared.
            "paired": {"limits": [narrow, wide]},
            "wide_only": {"limits": [wide]},
        },
        "settings": {"header_mode": "hold"},
    }


@pytest.fixture(scope="module")
def supported(replicas: Replicas) -> None:
    probe_filter_support(replicas, global_policy("deny"))


@pytest.fixture
def deny_pair(supported: None, replicas: Replicas, rls: RateLimitService) -> list[FilterEnvoy]:
    return replicas.pair("deny", global_policy("deny"))


@pytest.fixture
def local_pair(supported: None, replicas: Replicas, rls: RateLimitService) -> list[FilterEnvoy]:
    return replicas.pair("local", global_policy("local"))


@pytest.fixture(autouse=True)
def _no_vm_crash(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for name in ("deny_pair", "local_pair"):
        for envoy in request.node.funcargs.get(name) or []:
            crashes = envoy.vm_crashes()
            if crashes:
                pytest.fail("the filter VM crashed:\n" + "\n".join(crashes[:6]), pytrace=False)


def fresh_grant() -> str:
    return "grant-" + uuid.uuid4().hex


def room_in_window(seconds: int, need: float) -> None:
    """Wait for the next window if fewer than `need` seconds are left in this one."""
    left = seconds - time.time() % seconds
    if left < need:
        time.sleep(left + 0.05)


class Calls:
    """Sends tools/call requests to replicas and sorts out what happened to each."""

    def __init__(self, upstream: RecordingUpstream) -> None:
        self.upstream = upstream
        self.allowed: list[str] = []  # markers answered by the upstream
        self.refused: list[tuple[str, httpx.Response]] = []  # -31002 answers
        self.lock = threading.Lock()

    def call(
        self,
        envoy: FilterEnvoy,
        tool: str,
        grant: str,
        client: httpx.Client | None = None,
        **arguments: Any,
    ) -> str:
        """One call; returns "allowed" or "limited" (anything else fails the test)."""
        marker = new_marker()
        headers = {**JSON_HEADERS, MARKER_HEADER: marker, "authorization": f"Bearer {grant}"}
        body = call_message(tool, {"m": marker, **arguments}, request_id=marker)
        try:
            if client is None:
                response = httpx.post(envoy.url + "/mcp", json=body, headers=headers, timeout=15)
            else:
                response = client.post(envoy.url + "/mcp", json=body, headers=headers)
        except httpx.TimeoutException:
            pytest.fail(
                f"{tool} on {envoy.url}: no answer within 15 s. The filter paused the request and never "
                "resumed it: did on_grpc_call_response run? (the rate limit service's log, below, shows "
                "whether it answered)",
                pytrace=False,
            )
        message = assert_json_answer(response, 200)
        if "result" in message:
            assert same_id(message["id"], marker), response.text
            with self.lock:
                self.allowed.append(marker)
            return "allowed"
        assert_policy_refusal(response, request_id=marker, tool=tool, code=RATE_LIMITED)
        with self.lock:
            self.refused.append((marker, response))
        return "limited"

    def assert_upstream_saw_exactly_the_allowed(self) -> None:
        for marker in self.allowed:
            self.upstream.wait_for(marker)
        for marker, _ in self.refused:
            seen = self.upstream.matching(marker)
            assert not seen, f"a refused call reached the upstream: {[r.body[:200] for r in seen]}"

    def assert_refusals_say_when(self, window_seconds: int) -> None:
        for _, response in self.refused:
            data = response.json()["error"]["data"]
            retry = data.get("retry_after_seconds")
            assert isinstance(retry, int) and 1 <= retry <= window_seconds, response.text
            assert int(response.headers["retry-after"]) == retry, dict(response.headers)


def test_alternating_replicas_share_one_budget(deny_pair: list[FilterEnvoy], upstream: RecordingUpstream) -> None:
    room_in_window(60, 15)
    calls = Calls(upstream)
    grant = fresh_grant()
    outcomes = [calls.call(deny_pair[i % 2], "claude_code_session", grant) for i in range(2 * MAX + 2)]
    assert outcomes == ["allowed"] * MAX + ["limited"] * (MAX + 2)
    calls.assert_upstream_saw_exactly_the_allowed()
    calls.assert_refusals_say_when(60)
    for _, response in calls.refused:
        data = response.json()["error"]["data"]
        assert (data["counter"], data["window"], data["max"]) == ("sessions", "minute", MAX), response.text

    # Another grant has a budget of its own, starting on the other replica.
    other = Calls(upstream)
    grant_b = fresh_grant()
    outcomes = [other.call(deny_pair[(i + 1) % 2], "claude_code_session", grant_b) for i in range(MAX + 1)]
    assert outcomes == ["allowed"] * MAX + ["limited"]
    other.assert_upstream_saw_exactly_the_allowed()
    # The first grant is still spent.
    assert calls.call(deny_pair[1], "claude_code_session", grant) == "limited"


def test_concurrent_calls_over_both_replicas_are_capped_exactly(
    deny_pair: list[FilterEnvoy], upstream: RecordingUpstream
) -> None:
    room_in_window(60, 20)
    calls = Calls(upstream)
    grant = fresh_grant()
    total, workers = 8 * MAX, 10
    barrier = threading.Barrier(workers)
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            with httpx.Client(timeout=15) as client:
                barrier.wait(10)
                for n in range(index, total, workers):
                    outcome = calls.call(deny_pair[n % 2], "claude_code_session", grant, client)
                    with calls.lock:
                        outcomes.append(outcome)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    if errors:
        raise errors[0]
    assert len(outcomes) == total
    assert outcomes.count("allowed") == MAX, outcomes
    calls.assert_upstream_saw_exactly_the_allowed()
    calls.assert_refusals_say_when(60)


def test_tools_naming_one_counter_share_the_global_budget(
    deny_pair: list[FilterEnvoy], upstream: RecordingUpstream
) -> None:
    room_in_window(60, 15)
    calls = Calls(upstream)
    grant = fresh_grant()
    tools = ["claude_code_session", "claude_code_session_twin"]
    outcomes = [calls.call(deny_pair[i % 2], tools[(i // 2) % 2], grant) for i in range(MAX + 3)]
    assert outcomes == ["allowed"] * MAX + ["limited"] * 3
    calls.assert_upstream_saw_exactly_the_allowed()


def test_with_include_tool_this_service_keeps_one_budget_per_tool(
    supported: None, replicas: Replicas, upstream: RecordingUpstream, rls: RateLimitService
) -> None:
    """The filter's default `include_tool: true`: envoyproxy/ratelimit keys on the `tool` entry too.

    The policy says both tools share `sessions`; the service gives the twin
    a fresh budget, so only each replica's local count still holds (up to
    `max` per replica): why README.md says to set `include_tool: false`.
    """
    pair = replicas.pair("per-tool", global_policy("deny", include_tool=True))
    room_in_window(60, 15)
    calls = Calls(upstream)
    grant = fresh_grant()
    outcomes = [calls.call(pair[i % 2], "claude_code_session", grant) for i in range(MAX + 1)]
    assert outcomes == ["allowed"] * MAX + ["limited"]
    # Shared counter, spent: yet the twin passes (replica 1 has counted 2 of 5 locally).
    assert calls.call(pair[1], "claude_code_session_twin", grant) == "allowed"
    calls.assert_upstream_saw_exactly_the_allowed()


def test_spend_cap_sends_the_amount_and_a_refused_spend_still_counts(
    deny_pair: list[FilterEnvoy], upstream: RecordingUpstream
) -> None:
    room_in_window(3600, 15)
    calls = Calls(upstream)
    grant = fresh_grant()
    # 4 + 4 = 8 of 10, one call on each replica: the service added 4 each time.
    assert calls.call(deny_pair[0], "spend", grant, cost=4) == "allowed"
    assert calls.call(deny_pair[1], "spend", grant, cost=4) == "allowed"
    # 8 + 3 > 10: refused, and nothing forwarded.
    assert calls.call(deny_pair[0], "spend", grant, cost=3) == "limited"
    # 2 would fit into the 8 really spent, but envoyproxy/ratelimit adds
    # before it compares: the refused 3 stays counted (11 + 2 > 10).
    assert calls.call(deny_pair[1], "spend", grant, cost=2) == "limited"
    calls.assert_upstream_saw_exactly_the_allowed()
    assert len(calls.allowed) == 2
    # Another grant spends its whole budget in one call.
    other = fresh_grant()
    assert calls.call(deny_pair[1], "spend", other, cost=SPEND_MAX) == "allowed"
    assert calls.call(deny_pair[0], "spend", other, cost=1) == "limited"


def test_a_call_refused_by_one_global_limit_does_not_charge_the_other(
    deny_pair: list[FilterEnvoy], upstream: RecordingUpstream
) -> None:
    """Two descriptors in one request; STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT keeps `wide` untouched."""
    room_in_window(60, 15)
    calls = Calls(upstream)
    grant = fresh_grant()
    outcomes = [calls.call(deny_pair[i % 2], "paired", grant) for i in range(NARROW + 3)]
    assert outcomes == ["allowed"] * NARROW + ["limited"] * 3
    for _, response in calls.refused:
        assert response.json()["error"]["data"]["counter"] == "narrow", response.text
    # `wide` spent NARROW units, not NARROW + 3.
    outcomes = [calls.call(deny_pair[i % 2], "wide_only", grant) for i in range(WIDE - NARROW + 1)]
    assert outcomes == ["allowed"] * (WIDE - NARROW) + ["limited"]
    calls.assert_upstream_saw_exactly_the_allowed()


def test_limits_not_marked_global_stay_per_replica(deny_pair: list[FilterEnvoy], upstream: RecordingUpstream) -> None:
    room_in_window(60, 15)
    calls = Calls(upstream)
    grant = fresh_grant()
    outcomes = [calls.call(deny_pair[i % 2], "local_only", grant) for i in range(2 * LOCAL_MAX + 2)]
    assert outcomes == ["allowed"] * (2 * LOCAL_MAX) + ["limited"] * 2
    calls.assert_upstream_saw_exactly_the_allowed()


def test_service_down_with_failure_mode_deny_refuses_limited_calls(
    deny_pair: list[FilterEnvoy], upstream: RecordingUpstream, rls: RateLimitService
) -> None:
    room_in_window(60, 20)
    calls = Calls(upstream)
    grant = fresh_grant()
    assert calls.call(deny_pair[0], "claude_code_session", grant) == "allowed"
    rls.kill()
    dead = Calls(upstream)
    outcomes = [dead.call(deny_pair[i % 2], "claude_code_session", grant) for i in range(4)]
    outcomes += [dead.call(deny_pair[i % 2], "claude_code_session", fresh_grant()) for i in range(4)]
    assert outcomes == ["limited"] * 8
    dead.assert_upstream_saw_exactly_the_allowed()
    for _, response in dead.refused:
        assert response.json()["error"]["data"].get("retry_after_seconds", 0) >= 1, response.text
    # Calls that need no global limit do not need the service.
    assert calls.call(deny_pair[1], "echo", grant) == "allowed"
    assert calls.call(deny_pair[0], "local_only", fresh_grant()) == "allowed"

    # Back up (same port): the budget is where it was (one call spent).
    rls.start()
    back = Calls(upstream)
    outcomes = [back.call(deny_pair[i % 2], "claude_code_session", grant) for i in range(MAX)]
    assert outcomes == ["allowed"] * (MAX - 1) + ["limited"]
    back.assert_upstream_saw_exactly_the_allowed()


def test_hung_service_with_failure_mode_deny_refuses_after_the_timeout(
    deny_pair: list[FilterEnvoy], upstream: RecordingUpstream, rls: RateLimitService
) -> None:
    room_in_window(60, 20)
    calls = Calls(upstream)
    rls.pause()
    try:
        for envoy in deny_pair:
            started = time.monotonic()
            assert calls.call(envoy, "claude_code_session", fresh_grant()) == "limited"
            elapsed = time.monotonic() - started
            assert TIMEOUT_MS / 1000 * 0.8 <= elapsed < TIMEOUT_MS / 1000 + 2.0, elapsed
    finally:
        rls.resume()
    calls.assert_upstream_saw_exactly_the_allowed()
    assert calls.call(deny_pair[0], "claude_code_session", fresh_grant()) == "allowed"


def test_service_down_with_failure_mode_local_falls_back_to_each_replica(
    local_pair: list[FilterEnvoy], upstream: RecordingUpstream, rls: RateLimitService
) -> None:
    room_in_window(60, 20)
    # Healthy: one budget across both replicas.
    calls = Calls(upstream)
    grant = fresh_grant()
    outcomes = [calls.call(local_pair[i % 2], "claude_code_session", grant) for i in range(MAX + 1)]
    assert outcomes == ["allowed"] * MAX + ["limited"]

    rls.kill()
    fallback = Calls(upstream)
    grant_b = fresh_grant()
    per_replica: dict[int, list[str]] = {0: [], 1: []}
    for i in range(2 * MAX + 2):
        per_replica[i % 2].append(fallback.call(local_pair[i % 2], "claude_code_session", grant_b))
    for outcomes in per_replica.values():
        assert outcomes == ["allowed"] * MAX + ["limited"], per_replica
    fallback.assert_upstream_saw_exactly_the_allowed()
    assert len(fallback.allowed) == 2 * MAX


def _burst(calls: Calls, pair: list[FilterEnvoy], grant: str, first_replica: int) -> tuple[list[str], bool]:
    """PER_SECOND + 1 simultaneous calls over both replicas, sorted; and whether they fit in one second."""
    n = PER_SECOND + 1
    with ThreadPoolExecutor(n) as pool:
        start = time.time()
        outcomes = list(pool.map(lambda i: calls.call(pair[(i + first_replica) % 2], "per_second", grant), range(n)))
    # Sent at once, so a loaded machine does not stretch the burst past the second.
    return sorted(outcomes), int(time.time()) == int(start)


def test_second_window_rolls_over(deny_pair: list[FilterEnvoy], upstream: RecordingUpstream) -> None:
    for _attempt in range(8):
        calls = Calls(upstream)
        grant = fresh_grant()
        time.sleep(1.05 - time.time() % 1)  # just after a second starts
        first, in_one_second = _burst(calls, deny_pair, grant, 0)
        if not in_one_second:
            continue  # the burst straddled a second: try again with a fresh grant
        assert first == ["allowed"] * PER_SECOND + ["limited"]
        calls.assert_refusals_say_when(1)
        time.sleep(1.05 - time.time() % 1)
        second, in_one_second = _burst(calls, deny_pair, grant, 1)
        if not in_one_second:
            continue
        assert second == ["allowed"] * PER_SECOND + ["limited"]
        calls.assert_upstream_saw_exactly_the_allowed()
        assert len(calls.allowed) == 2 * PER_SECOND
        return
    pytest.fail("eight bursts in a row straddled a second boundary")


def test_a_cluster_envoy_lacks_is_a_service_failure(
    supported: None, replicas: Replicas, upstream: RecordingUpstream
) -> None:
    """A policy naming a cluster that is not in Envoy's config: refused (deny), never a crash."""
    policy = global_policy("deny")
    policy["rate_limit_service"]["cluster"] = "no_such_cluster"
    envoy = replicas.start_one(policy, "no-cluster")
    try:
        calls = Calls(upstream)
        assert [calls.call(envoy, "claude_code_session", fresh_grant()) for _ in range(2)] == ["limited"] * 2
        calls.assert_upstream_saw_exactly_the_allowed()
        assert calls.call(envoy, "echo", fresh_grant()) == "allowed"
        assert not envoy.vm_crashes(), envoy.vm_crashes()
    finally:
        envoy.stop()


def test_a_domain_the_service_does_not_know_is_a_service_failure(
    supported: None, replicas: Replicas, upstream: RecordingUpstream, rls: RateLimitService
) -> None:
    """envoyproxy/ratelimit answers OK without a limit for an unknown domain: the filter must not pass that."""
    policy = global_policy("deny")
    policy["rate_limit_service"]["domain"] = "not_configured"
    envoy = replicas.start_one(policy, "no-domain")
    try:
        calls = Calls(upstream)
        assert [calls.call(envoy, "claude_code_session", fresh_grant()) for _ in range(2)] == ["limited"] * 2
        calls.assert_upstream_saw_exactly_the_allowed()
        for _, response in calls.refused:
            data = response.json()["error"]["data"]
            assert data["rule"] == "rate_limit_service" and "domain" in data["reason"], response.text
        assert calls.call(envoy, "echo", fresh_grant()) == "allowed"
    finally:
        envoy.stop()
