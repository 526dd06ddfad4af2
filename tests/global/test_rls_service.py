"""The rate limit service alone (tools/rls-server), then behind Envoy's own ratelimit filter.

What mcp-policy relies on: counting per (domain, counter, scope_value) and
not per tool, the descriptor's `limit` override as the limit, fixed windows
aligned to the unit, OVER_LIMIT without consuming anything (all descriptors
of a request or none), `duration_until_reset`, exact counts under
concurrency, and gRPC errors (not made-up answers) when Redis is gone.

Budgets are "hour" windows on fresh counter names, so no test shares a
counter with another or straddles a window (except the rollover test, which
aligns itself to a second).
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx
import pytest

from global_envoy import NativeRateLimitEnvoy
from recording_upstream import RecordingUpstream
from rls_client import (
    GRPC_INVALID_ARGUMENT,
    GRPC_UNAVAILABLE,
    GRPC_UNIMPLEMENTED,
    OK,
    OVER_LIMIT,
    Descriptor,
    grpc_unary,
    mcp_descriptor,
    should_rate_limit,
)
from services import RedisServer, RlsServer, free_port, redis_command

DOMAIN = "mcp_policy"


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def ask(rls: RlsServer, *descriptors: Descriptor, hits: int = 0) -> tuple[int, list]:
    response = should_rate_limit(rls.port, DOMAIN, list(descriptors), hits).response()
    return response.overall_code, response.statuses


def test_counts_to_the_override_then_refuses(rls: RlsServer) -> None:
    d = mcp_descriptor(fresh("c"), "00000000000000aa", "claude_code_session", 3, "hour")
    for remaining in (2, 1, 0):
        code, [status] = ask(rls, d)
        assert code == OK and status.code == OK
        assert status.limit == (3, "hour")
        assert status.remaining == remaining
        assert status.reset_seconds is not None and 0 < status.reset_seconds <= 3600
    code, [status] = ask(rls, d)
    assert code == OVER_LIMIT and status.code == OVER_LIMIT and status.remaining == 0
    # The reset is the end of the aligned hour.
    expected = 3600 - time.time() % 3600
    assert abs(status.reset_seconds - expected) < 2, (status.reset_seconds, expected)


def test_refusals_consume_nothing(rls: RlsServer) -> None:
    d = mcp_descriptor(fresh("c"), "00000000000000aa", "t", 10, "hour")
    assert ask(rls, d, hits=4)[1][0].remaining == 6
    assert ask(rls, d, hits=4)[1][0].remaining == 2
    code, [status] = ask(rls, d, hits=4)
    assert code == OVER_LIMIT and status.remaining == 2
    code, [status] = ask(rls, d, hits=2)
    assert code == OK and status.remaining == 0
    assert ask(rls, d)[0] == OVER_LIMIT


def test_per_descriptor_hits_win_over_the_request_hits(rls: RlsServer) -> None:
    d = mcp_descriptor(fresh("c"), "00000000000000aa", "t", 10, "hour")
    d.hits_addend = 3
    assert ask(rls, d, hits=1)[1][0].remaining == 7


def test_tools_share_a_counter_and_scope_values_split_it(rls: RlsServer) -> None:
    counter = fresh("shared")
    grant_a, grant_b = "00000000000000aa", "00000000000000bb"
    assert ask(rls, mcp_descriptor(counter, grant_a, "tool_one", 2, "hour"))[0] == OK
    assert ask(rls, mcp_descriptor(counter, grant_a, "tool_two", 2, "hour"))[0] == OK
    # Both tools spent grant A's budget of the shared counter...
    assert ask(rls, mcp_descriptor(counter, grant_a, "tool_one", 2, "hour"))[0] == OVER_LIMIT
    assert ask(rls, mcp_descriptor(counter, grant_a, "tool_three", 2, "hour"))[0] == OVER_LIMIT
    # ...grant B has its own, and so has another domain.
    assert ask(rls, mcp_descriptor(counter, grant_b, "tool_one", 2, "hour"))[1][0].remaining == 1
    other_domain = should_rate_limit(rls.port, "other", [mcp_descriptor(counter, grant_a, "tool_one", 2, "hour")])
    assert other_domain.response().overall_code == OK


def test_all_descriptors_or_none(rls: RlsServer) -> None:
    wide = mcp_descriptor(fresh("wide"), "00000000000000aa", "t", 5, "hour")
    narrow = mcp_descriptor(fresh("narrow"), "00000000000000aa", "t", 1, "hour")
    code, statuses = ask(rls, wide, narrow)
    assert code == OK and [s.remaining for s in statuses] == [4, 0]
    code, statuses = ask(rls, wide, narrow)
    assert code == OVER_LIMIT
    assert [s.code for s in statuses] == [OK, OVER_LIMIT]
    # The refused request took nothing from the descriptor that had room.
    assert ask(rls, wide)[1][0].remaining == 3


def test_same_counter_twice_in_one_request_counts_twice(rls: RlsServer) -> None:
    d = mcp_descriptor(fresh("c"), "00000000000000aa", "t", 3, "hour")
    code, statuses = ask(rls, d, d)
    assert code == OK and [s.remaining for s in statuses] == [1, 1]
    assert ask(rls, d, d)[0] == OVER_LIMIT
    assert ask(rls, d)[1][0].remaining == 0


def test_descriptor_without_a_limit_is_always_ok(rls: RlsServer, redis: RedisServer) -> None:
    generic = Descriptor([("generic_key", fresh("g"))])
    for _ in range(3):
        code, [status] = ask(rls, generic)
        assert code == OK and status.code == OK and status.limit is None
    assert b"generic_key" not in redis_command(redis.port, "KEYS", "*")


def test_concurrent_requests_are_counted_exactly(rls: RlsServer) -> None:
    d = mcp_descriptor(fresh("burst"), "00000000000000aa", "t", 15, "hour")
    barrier = threading.Barrier(40)
    codes: list[int] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait(10)
        code = should_rate_limit(rls.port, DOMAIN, [d]).response().overall_code
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(codes) == 40
    assert codes.count(OK) == 15 and codes.count(OVER_LIMIT) == 25


def test_second_windows_roll_over(rls: RlsServer) -> None:
    for _attempt in range(3):
        d = mcp_descriptor(fresh("sec"), "00000000000000aa", "t", 2, "second")
        time.sleep(1.02 - time.time() % 1)  # just after a second starts
        start = time.time()
        codes = [ask(rls, d)[0] for _ in range(3)]
        _, [status] = ask(rls, d)
        if int(time.time()) != int(start):
            continue  # the burst straddled a second: try again
        assert codes == [OK, OK, OVER_LIMIT]
        assert status.reset_seconds is not None and 0 < status.reset_seconds <= 1
        time.sleep(1.02 - time.time() % 1)
        assert [ask(rls, d)[0] for _ in range(2)] == [OK, OK]
        return
    pytest.fail("three bursts in a row straddled a second boundary")


def test_request_errors_are_grpc_errors(rls: RlsServer) -> None:
    unknown = grpc_unary(rls.port, "/envoy.service.ratelimit.v3.RateLimitService/Nope", b"")
    assert unknown.grpc_status == GRPC_UNIMPLEMENTED
    month = mcp_descriptor(fresh("c"), "00000000000000aa", "t", 3, "month")
    assert should_rate_limit(rls.port, DOMAIN, [month]).grpc_status == GRPC_INVALID_ARGUMENT
    no_domain = mcp_descriptor(fresh("c"), "00000000000000aa", "t", 3, "hour")
    assert should_rate_limit(rls.port, "", [no_domain]).grpc_status == GRPC_INVALID_ARGUMENT


def test_unreachable_redis_is_unavailable_then_recovers(tmp_path: Path) -> None:
    """No Redis: UNAVAILABLE (the filter's failure_mode decides); Redis back: answers again."""
    redis_port = free_port()
    rls = RlsServer(tmp_path, f"redis://127.0.0.1:{redis_port}").start(port=0)
    redis = RedisServer(tmp_path / "redis", port=redis_port)
    try:
        d = mcp_descriptor(fresh("c"), "00000000000000aa", "t", 3, "hour")
        result = should_rate_limit(rls.port, DOMAIN, [d])
        assert result.grpc_status == GRPC_UNAVAILABLE, result
        redis.start()
        assert should_rate_limit(rls.port, DOMAIN, [d]).response().overall_code == OK
        redis.stop()
        assert should_rate_limit(rls.port, DOMAIN, [d]).grpc_status == GRPC_UNAVAILABLE
        redis.start()  # empty again: persistence is off
        assert should_rate_limit(rls.port, DOMAIN, [d]).response().statuses[0].remaining == 2
    finally:
        rls.stop()
        redis.stop()


def test_envoy_native_ratelimit_filter_speaks_to_the_service(
    redis: RedisServer, upstream: RecordingUpstream, workdir: Path
) -> None:
    """Envoy's own gRPC client and ratelimit filter against the service: the real API, end to end."""
    rls = RlsServer(workdir / "rls-native", redis.url, "--default-limit", "3/hour", name="rls-native").start(port=0)
    envoy = NativeRateLimitEnvoy(workdir / "envoy-native", rls_port=rls.port, upstream_port=upstream.port)
    try:
        envoy.start()
        grant, other = fresh("grant"), fresh("grant")
        with httpx.Client(base_url=envoy.url, timeout=10) as client:

            def get(g: str) -> httpx.Response:
                ping = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
                return client.post("/mcp", content=ping, headers={"x-grant": g, "content-type": "application/json"})

            answers = [get(grant) for _ in range(4)]
            assert [a.status_code for a in answers] == [200, 200, 200, 429], [a.text for a in answers]
            assert answers[3].headers.get("x-envoy-ratelimited") == "true"
            # Envoy built these from the service's DescriptorStatus.
            assert answers[0].headers.get("x-ratelimit-limit") == "3, 3;w=3600", dict(answers[0].headers)
            assert [a.headers.get("x-ratelimit-remaining") for a in answers] == ["2", "1", "0", "0"]
            reset = int(answers[3].headers["x-ratelimit-reset"])
            assert 0 <= reset <= 3600
            assert get(other).status_code == 200
        assert f"native:c:native:{grant}" in rls.log_path.read_text()
        # Envoy's gRPC client (not this suite's) sent those.
        stats = envoy.stats("cluster.rls.")
        assert stats.get("cluster.rls.upstream_rq_total", 0) >= 5, stats
    finally:
        envoy.stop()
        rls.stop()
