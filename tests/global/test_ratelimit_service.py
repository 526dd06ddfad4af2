"""envoyproxy/ratelimit alone, as the filter's descriptors meet it, then behind Envoy's own filter.

The production configuration (services.RATELIMIT_CONFIGS, docs/rate-limit-service.md) is one
line, `domain: mcp_policy`, plus STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT.
What the filter relies on, and what this service does differently from the
policy's own words, each pinned by a test:

- the descriptor's `limit` override is the limit, but only in a domain the
  service knows; elsewhere it answers OK without a limit (the filter treats
  that as a failure);
- the key is the domain and *every* entry, `tool` included;
- Redis INCRBY, then compare: concurrent requests are capped exactly, and a
  refused request is still counted (a refused spend stays spent);
- per-descriptor `hits_addend` wins over the request's; 0 only checks;
- with two descriptors, one over its limit does not charge the other;
- windows aligned to the unit, `duration_until_reset` to the window's end;
- Redis gone: a gRPC error (the filter's `failure_mode` decides).

Budgets are "hour" windows on fresh counter names, so no test shares a
counter with another.
"""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path

import httpx

from global_envoy import NativeRateLimitEnvoy
from recording_upstream import RecordingUpstream
from rls_client import GRPC_OK, OK, OVER_LIMIT, Descriptor, mcp_descriptor, should_rate_limit
from services import RateLimitService, RedisServer, free_port, redis_command

DOMAIN = "mcp_policy"
FINGERPRINT = "00000000000000aa"


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def ask(rls: RateLimitService, *descriptors: Descriptor, hits: int = 0, domain: str = DOMAIN) -> tuple[int, list]:
    response = should_rate_limit(rls.port, domain, list(descriptors), hits).response()
    return response.overall_code, response.statuses


def redis_count(redis: RedisServer, descriptor: Descriptor, seconds: int = 3600) -> int:
    """The service's Redis counter for `descriptor` in the current window (its key layout)."""
    window = int(time.time()) // seconds * seconds
    key = DOMAIN + "_" + "".join(f"{k}_{v}_" for k, v in descriptor.entries) + str(window)
    reply = redis_command(redis.port, "GET", key)
    assert reply.startswith(b"$"), (key, reply)
    return int(reply.split(b"\r\n")[1]) if not reply.startswith(b"$-1") else 0


def test_counts_to_the_override_then_refuses(rls: RateLimitService) -> None:
    d = mcp_descriptor(fresh("c"), FINGERPRINT, "claude_code_session", 3, "hour")
    for remaining in (2, 1, 0):
        code, [status] = ask(rls, d)
        assert code == OK and status.code == OK
        assert status.limit == (3, "hour")
        assert status.remaining == remaining
    code, [status] = ask(rls, d)
    assert code == OVER_LIMIT and status.code == OVER_LIMIT and status.remaining == 0
    # The reset is the end of the aligned hour (whole seconds).
    expected = 3600 - time.time() % 3600
    assert status.reset_seconds is not None and abs(status.reset_seconds - expected) < 2


def test_an_unknown_domain_ignores_the_override(rls: RateLimitService) -> None:
    """OK with no limit applied: the filter reads this as a failure (test_global_limits.py)."""
    d = mcp_descriptor(fresh("c"), FINGERPRINT, "t", 1, "hour")
    for _ in range(3):
        code, [status] = ask(rls, d, domain="not_configured")
        assert code == OK and status.limit is None


def test_every_entry_is_part_of_the_key(rls: RateLimitService) -> None:
    """One budget per tool unless the filter leaves `tool` out (`include_tool: false`)."""
    counter = fresh("shared")
    one = mcp_descriptor(counter, FINGERPRINT, "tool_one", 2, "hour")
    two = mcp_descriptor(counter, FINGERPRINT, "tool_two", 2, "hour")
    assert [ask(rls, one)[0] for _ in range(3)] == [OK, OK, OVER_LIMIT]
    assert ask(rls, two)[1][0].remaining == 1  # its own budget
    without_tool = Descriptor(one.entries[:3], (2, "hour"))
    assert [ask(rls, without_tool)[0] for _ in range(3)] == [OK, OK, OVER_LIMIT]
    other_scope = mcp_descriptor(counter, "00000000000000bb", "tool_one", 2, "hour")
    assert ask(rls, other_scope)[1][0].remaining == 1


def test_concurrent_requests_are_capped_exactly_and_refusals_are_counted(
    rls: RateLimitService, redis: RedisServer
) -> None:
    d = mcp_descriptor(fresh("burst"), FINGERPRINT, "t", 15, "hour")
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
    # INCRBY first, compare after: the 25 refusals were added too.
    assert redis_count(redis, d) == 40


def test_a_refused_spend_stays_counted(rls: RateLimitService) -> None:
    d = mcp_descriptor(fresh("spend"), FINGERPRINT, "t", 10, "hour")
    d.hits_addend = 8
    assert ask(rls, d)[1][0].remaining == 2
    d.hits_addend = 4
    assert ask(rls, d)[0] == OVER_LIMIT  # 12 > 10, and 12 it stays
    d.hits_addend = 2
    assert ask(rls, d)[0] == OVER_LIMIT  # 2 would have fitted into the 8 really spent


def test_hits_addend_per_descriptor_then_per_request(rls: RateLimitService) -> None:
    d = mcp_descriptor(fresh("c"), FINGERPRINT, "t", 10, "hour")
    d.hits_addend = 3
    assert ask(rls, d, hits=1)[1][0].remaining == 7
    d.hits_addend = None
    assert ask(rls, d, hits=2)[1][0].remaining == 5
    d.hits_addend = 0  # check only
    assert ask(rls, d, hits=4)[1][0].remaining == 5


def test_a_descriptor_over_its_limit_does_not_charge_the_others(rls: RateLimitService) -> None:
    """STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT=true (without it, `wide` would lose one per refusal)."""
    wide = mcp_descriptor(fresh("wide"), FINGERPRINT, "t", 5, "hour")
    narrow = mcp_descriptor(fresh("narrow"), FINGERPRINT, "t", 1, "hour")
    code, statuses = ask(rls, wide, narrow)
    assert code == OK and [s.remaining for s in statuses] == [4, 0]
    for _ in range(3):
        code, statuses = ask(rls, wide, narrow)
        assert code == OVER_LIMIT and [s.code for s in statuses] == [OK, OVER_LIMIT]
    assert ask(rls, wide)[1][0].remaining == 3


def test_unreachable_redis_is_an_error_then_recovers(tmp_path: Path) -> None:
    """Redis gone after start: gRPC errors, never an OK; Redis back on its port: answers again."""
    redis = RedisServer(tmp_path / "redis", port=free_port()).start()
    rls = RateLimitService(tmp_path / "ratelimit", redis.url, REDIS_TIMEOUT="1s").start()
    try:
        d = mcp_descriptor(fresh("c"), FINGERPRINT, "t", 3, "hour")
        assert ask(rls, d)[1][0].remaining == 2
        redis.stop()
        for _ in range(2):
            result = should_rate_limit(rls.port, DOMAIN, [d])
            assert result.grpc_status != GRPC_OK, result
        redis.start()  # empty again: persistence is off
        deadline = time.monotonic() + 15
        while (result := should_rate_limit(rls.port, DOMAIN, [d])).grpc_status != GRPC_OK:
            assert time.monotonic() < deadline, f"no recovery after Redis came back: {result}"
            time.sleep(0.2)
        assert result.response().statuses[0].remaining == 2
    finally:
        rls.stop()
        redis.stop()


def test_envoy_native_ratelimit_filter_speaks_to_the_service(
    rls: RateLimitService, upstream: RecordingUpstream, workdir: Path
) -> None:
    """Envoy's own gRPC client and ratelimit filter, no override: the service's rule for `native` (3/hour)."""
    envoy = NativeRateLimitEnvoy(workdir / "envoy-native", rls_port=rls.port, upstream_port=upstream.port)
    try:
        envoy.start()
        grant, other = fresh("grant"), fresh("grant")
        with httpx.Client(base_url=envoy.url, timeout=10) as client:

            def post(g: str) -> httpx.Response:
                ping = b'{"jsonrpc":"2.0","id":1,"method":"ping"}'
                return client.post("/mcp", content=ping, headers={"x-grant": g, "content-type": "application/json"})

            answers = [post(grant) for _ in range(4)]
            assert [a.status_code for a in answers] == [200, 200, 200, 429], [a.text for a in answers]
            assert answers[3].headers.get("x-envoy-ratelimited") == "true"
            # Envoy built these from the service's DescriptorStatus.
            assert answers[0].headers.get("x-ratelimit-limit") == "3, 3;w=3600", dict(answers[0].headers)
            assert [a.headers.get("x-ratelimit-remaining") for a in answers] == ["2", "1", "0", "0"]
            assert 0 <= int(answers[3].headers["x-ratelimit-reset"]) <= 3600
            assert post(other).status_code == 200
        stats = envoy.stats("cluster.rls.")
        assert stats.get("cluster.rls.upstream_rq_total", 0) >= 5, stats
    finally:
        envoy.stop()
