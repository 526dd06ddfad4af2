"""`hold` mode's first-body deadline, and requests that would never send a body.

A held request waits for its first body byte at most
`settings.hold_body_timeout_ms`. When this Envoy has delivered bodies to held
requests before, the configuration is evidently right and the client is
slow: 408, saying so. (Without the Envoy field no body ever arrives: 500
naming the field, see test_hold_without_field.py.) Either way nothing is
forwarded.

CONNECT and protocol upgrades (WebSocket, h2c) carry no MCP message the
filter can judge; they are answered at once, in both header modes, and the
upstream sees nothing of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from assertions import assert_http_error
from conftest import EnvoyPool, policy_for
import envoy_config
from envoy_process import Envoy, EnvoyOptions
from policies import MAIN, with_settings
from policy_proxy import JSON_HEADERS, PolicyProxy, call_message, new_marker
from raw_http import H2Request, RawResponse, h2_exchange, http1_exchange, http1_request, jsonrpc_bytes
from recording_upstream import MARKER_HEADER, RecordingUpstream

INVALID_REQUEST = -32600
DEADLINE_MS = 1000


def test_a_slow_client_gets_408_and_nothing_is_forwarded(envoys: EnvoyPool, upstream: RecordingUpstream) -> None:
    policy = with_settings(policy_for(MAIN, "hold"), hold_body_timeout_ms=DEADLINE_MS)
    proxy = envoys.proxy(policy, "hold")
    proxy.assert_still_serves()  # a body reached a held request: the Envoy field is set
    marker = new_marker()
    body = jsonrpc_bytes(call_message("echo", {"m": marker}))
    head, = http1_request("POST", "/mcp", [*JSON_HEADERS.items(), (MARKER_HEADER, marker),
                                           ("content-length", str(len(body)))], b"")  # fmt: skip
    # The first body byte comes well after the deadline (the 500 ms tick included).
    [answer] = http1_exchange(proxy.port, [head, body], pause=(DEADLINE_MS + 1500) / 1000)
    error = assert_http_error(answer, 408, INVALID_REQUEST, null_id=True)
    assert "hold_body_timeout_ms" in error["message"], error
    proxy.assert_refused_and_alive(marker)
    assert not upstream.matching(marker)


def _upgrade_headers(marker: str) -> list[tuple[str, str]]:
    return [(MARKER_HEADER, marker), ("connection", "Upgrade"), ("upgrade", "websocket"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="), ("sec-websocket-version", "13")]  # fmt: skip


class TunnelingEnvoy(Envoy):
    """An Envoy whose connection manager accepts WebSocket upgrades and CONNECT
    (`upgrade_configs`, HTTP/2 `allow_connect`), as some deployments do: then
    such requests reach the filter instead of Envoy's own 403."""

    def bootstrap(self) -> str:
        config = self.bootstrap_config()
        hcm = envoy_config.http_connection_manager(config)
        hcm["upgrade_configs"] = [{"upgrade_type": "websocket"}, {"upgrade_type": "CONNECT"}]
        hcm["http2_protocol_options"] = {"allow_connect": True}
        return envoy_config.dump(config, header="rendered by tests/e2e/test_hold_deadline.py (+ upgrade_configs)")


@pytest.fixture(params=["default-hcm", "upgrades-enabled"])
def tunnel_proxy(request: pytest.FixtureRequest, envoys: EnvoyPool, upstream: RecordingUpstream,
                 mode: str, tmp_path: Path) -> Iterator[PolicyProxy]:  # fmt: skip
    if request.param == "default-hcm":
        yield envoys.proxy(policy_for(MAIN, mode), mode)
        return
    options = EnvoyOptions(upstream_port=upstream.port, allow_on_headers_stop_iteration=True if mode == "hold" else None)
    envoy = TunnelingEnvoy(policy_for(MAIN, mode), options, tmp_path / "envoy").start()
    proxy = PolicyProxy(envoy, upstream, mode, "echo", {"text": "still serving"})
    try:
        yield proxy
    finally:
        proxy.close()
        envoy.stop()


def _refused_at_once(answer: RawResponse, enabled: bool) -> None:
    if enabled:
        # The filter's answer: 501 with a JSON-RPC body saying why.
        error = assert_http_error(answer, 501, INVALID_REQUEST, null_id=True)
        assert "not supported by the MCP policy filter" in error["message"], error
    else:
        # Without upgrade_configs Envoy's connection manager refuses it itself.
        assert answer.status in (403, 501), (answer.status, answer.text)


def test_websocket_upgrade_is_answered_at_once(tunnel_proxy: PolicyProxy) -> None:
    marker = new_marker()
    wire = "GET /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in _upgrade_headers(marker))
    [answer] = http1_exchange(tunnel_proxy.port, [wire.encode() + b"\r\n"])
    _refused_at_once(answer, isinstance(tunnel_proxy.envoy, TunnelingEnvoy))
    tunnel_proxy.assert_refused_and_alive(marker)


def test_upgrade_with_a_body_is_answered_at_once(tunnel_proxy: PolicyProxy) -> None:
    marker = new_marker()
    body = jsonrpc_bytes(call_message("claude_code", {"m": marker}))
    headers = [*JSON_HEADERS.items(), *_upgrade_headers(marker)]
    [answer] = http1_exchange(tunnel_proxy.port, http1_request("POST", "/mcp", headers, body))
    _refused_at_once(answer, isinstance(tunnel_proxy.envoy, TunnelingEnvoy))
    tunnel_proxy.assert_refused_and_alive(marker)


@pytest.mark.parametrize("protocol", ["http1", "h2"])
def test_connect_is_answered_at_once(tunnel_proxy: PolicyProxy, protocol: str) -> None:
    marker = new_marker()
    if protocol == "h2":
        request = H2Request(method="CONNECT", path="", headers=[(MARKER_HEADER, marker)], body_parts=[b"x"])
        [answer] = h2_exchange(tunnel_proxy.port, [request])
    else:
        wire = f"CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: 127.0.0.1:1\r\n{MARKER_HEADER}: {marker}\r\n\r\n"
        [answer] = http1_exchange(tunnel_proxy.port, [wire.encode()])
    _refused_at_once(answer, True)
    tunnel_proxy.assert_refused_and_alive(marker)
