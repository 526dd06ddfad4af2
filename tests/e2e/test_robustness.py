"""Hostile input must never take the filter down.

A panic inside the Wasm VM stops it for good on that worker thread: with
fail_open false every later request on the worker gets 503. One crafted
request would be a denial of service, so each case here is followed by
allowed calls on an Envoy with a single worker (the one that saw the
hostile request). The crash guard in conftest fails a test whose request
crashed a VM, and the pool gives the next test a fresh Envoy.
"""

from __future__ import annotations

import pytest

from conftest import EnvoyPool, policy_for
from policies import MAIN
from policy_proxy import PolicyProxy, call_message, new_marker, to_bytes
from raw_http import http1_exchange


@pytest.fixture
def single_worker_proxy(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return envoys.proxy(policy_for(MAIN, mode), mode, concurrency=1)


# Headers the filter reads (size, encoding, grant, session, routing, request id).
READ_HEADERS = ["content-encoding", "authorization", "mcp-session-id", "mcp-method", "mcp-name", "x-request-id"]


@pytest.mark.parametrize("header", READ_HEADERS)
@pytest.mark.parametrize("value", [b"a\xffb", b"\xc3\x28"], ids=["ff", "bad-2-byte"])
def test_non_utf8_header_value(single_worker_proxy: PolicyProxy, header: str, value: bytes) -> None:
    """HTTP/1.1 allows obs-text (0x80-0xFF) in header values and Envoy passes it on."""
    marker = new_marker()
    body = to_bytes(call_message("echo", {"m": marker}, 1))
    request = (b"POST /mcp HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nx-test-marker: " + marker.encode()
               + b"\r\n" + header.encode() + b": " + value + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)  # fmt: skip
    answers = http1_exchange(single_worker_proxy.port, [request])
    assert answers and answers[0].status != 503, f"filter crashed: {answers}"
    for _ in range(3):
        single_worker_proxy.assert_still_serves()


def test_many_small_requests_on_one_connection(single_worker_proxy: PolicyProxy) -> None:
    """Per-request state is released: 300 requests, allowed and refused, on one keep-alive connection."""
    for index in range(300):
        tool = "echo" if index % 3 else "claude_code"
        response = single_worker_proxy.call(tool, {"i": index}, request_id=index)
        assert response.status_code == 200 and response.json()["id"] == index, response.text
    single_worker_proxy.assert_still_serves()
