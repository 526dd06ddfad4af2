"""Bodies larger than settings.max_body_bytes (default 1 MiB) are refused with 413.

A body the filter will not buffer whole is a body it cannot judge. A
Content-Length over the limit is refused at once; a chunked or HTTP/2 body
without length is refused as soon as it grows past the limit.
"""

from __future__ import annotations

import pytest

from conftest import EnvoyPool, policy_for
from policies import MAIN, with_settings
from policy_proxy import PolicyProxy, call_message, new_marker, to_bytes
from raw_http import H2Request, h2_exchange, http1_exchange, http1_request

SMALL_LIMIT = 4096


def _call_of_size(size: int, marker: str, tool: str = "echo") -> bytes:
    """An allowed tools/call of exactly `size` bytes."""
    empty = to_bytes(call_message(tool, {"m": marker, "pad": ""}, 1))
    body = to_bytes(call_message(tool, {"m": marker, "pad": "x" * (size - len(empty))}, 1))
    assert len(body) == size
    return body


def _status_of_raw_send(port: int, writes: list[bytes]) -> int | None:
    """Status of the answer; None if Envoy cut the connection before answering."""
    answers = http1_exchange(port, writes, pause=0.0, timeout=10)
    return answers[0].status if answers else None


@pytest.fixture
def small_proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return envoys.proxy(policy_for(with_settings(MAIN, max_body_bytes=SMALL_LIMIT), mode), mode)


def test_two_megabytes_with_content_length(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = _call_of_size(2 * 1024 * 1024, marker)
    writes = http1_request("POST", "/mcp", [("Content-Type", "application/json"), ("x-test-marker", marker)], body)
    assert _status_of_raw_send(main_proxy.port, writes) == 413
    main_proxy.assert_refused_and_alive(marker)


def test_two_megabytes_chunked(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = _call_of_size(2 * 1024 * 1024, marker)
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    writes = http1_request("POST", "/mcp", [("Content-Type", "application/json"), ("x-test-marker", marker)], body, chunks=chunks)
    assert _status_of_raw_send(main_proxy.port, writes) == 413
    main_proxy.assert_refused_and_alive(marker)


def test_two_megabytes_http2(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = _call_of_size(2 * 1024 * 1024, marker)
    request = H2Request(headers=[("content-type", "application/json"), ("x-test-marker", marker)],
                        body_parts=[body[i : i + 65536] for i in range(0, len(body), 65536)])  # fmt: skip
    [answer] = h2_exchange(main_proxy.port, [request])
    assert answer.status == 413 or answer.reset, answer
    main_proxy.assert_refused_and_alive(marker)


def test_just_under_default_limit_passes(main_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = _call_of_size(1024 * 1024 - 1024, marker)
    response = main_proxy.post(body, marker=marker)
    main_proxy.assert_upstream_answered(response, marker)
    main_proxy.assert_forwarded(marker, body)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_configured_limit(small_proxy: PolicyProxy, framing: str) -> None:
    """max_body_bytes is the largest body accepted: exactly the limit passes, one byte more is 413."""
    headers = [("Content-Type", "application/json")]
    at_limit, over = new_marker(), new_marker()
    for marker, size, expected in ((at_limit, SMALL_LIMIT, 200), (over, SMALL_LIMIT + 1, 413)):
        body = _call_of_size(size, marker)
        chunks = [body[i : i + 1000] for i in range(0, len(body), 1000)] if framing == "chunked" else None
        writes = http1_request("POST", "/mcp", [*headers, ("x-test-marker", marker)], body, chunks=chunks)
        assert _status_of_raw_send(small_proxy.port, writes) == expected, f"{size} bytes"
    small_proxy.assert_forwarded(at_limit, _call_of_size(SMALL_LIMIT, at_limit))
    small_proxy.assert_refused_and_alive(over)


def test_oversized_denied_call_is_refused_too(small_proxy: PolicyProxy) -> None:
    marker = new_marker()
    response = small_proxy.post(_call_of_size(SMALL_LIMIT * 2, marker, tool="claude_code"), marker=marker)
    assert response.status_code == 413, response.text
    small_proxy.assert_refused_and_alive(marker)
