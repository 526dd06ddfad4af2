"""`header_mode: "hold"` on an Envoy without `allow_on_headers_stop_iteration`.

There Envoy never delivers the body to a filter that paused in its headers
callback. The filter must not let such a request hang, and must never
forward it unchecked: after a deadline it answers 500 with a message naming
the missing Envoy field, logs how to fix the configuration, and the upstream
sees nothing at all.
"""

from __future__ import annotations

import time

import httpx

from conftest import EnvoyPool, policy_for
from policies import MAIN
from policy_proxy import JSON_HEADERS, call_message, new_marker
from recording_upstream import MARKER_HEADER, RecordingUpstream


def test_held_request_is_answered_not_hung_and_never_forwarded(envoys: EnvoyPool, upstream: RecordingUpstream) -> None:
    envoy = envoys.envoy(policy_for(MAIN, "hold"), allow_on_headers_stop_iteration=None)
    marker = new_marker()
    started = time.monotonic()
    response = httpx.post(
        envoy.url + "/mcp",
        json=call_message("echo", {"m": marker}),
        headers={**JSON_HEADERS, MARKER_HEADER: marker},
        timeout=30,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 500, response.text
    assert "allow_on_headers_stop_iteration" in response.json()["error"]["message"]
    assert elapsed < 15, f"answered after {elapsed:.1f} s"
    time.sleep(0.5)
    assert not upstream.matching(marker), "a held request reached the upstream"
    assert "set allow_on_headers_stop_iteration: true" in envoy.log_text()
