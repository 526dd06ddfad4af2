"""Hot policy reload through Envoy's dynamic configuration (file-based LDS).

A platform team edits the policy and Envoy applies it without a restart.
The listener (with the filter and its policy) comes from a watched LDS file;
replacing that file swaps the policy. What must hold:

- the new policy enforces without restarting Envoy;
- rate-limit counters carry over (shared data lives per vm_id, process-wide);
- a broken policy is refused: Envoy rejects the update (stat
  `listener_manager.lds.update_rejected`, the filter's error in the log) and
  the previous policy keeps enforcing.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

import envoy_config
from assertions import RATE_LIMITED, assert_policy_refusal
from envoy_process import Envoy, EnvoyOptions
from policy_proxy import JSON_HEADERS, call_message, new_marker
from recording_upstream import MARKER_HEADER, RecordingUpstream


def _policy(extra_tools: dict[str, Any]) -> dict[str, Any]:
    tools = {"echo": {"limits": [{"counter": "reload_echo", "window": "day", "max": 3}]}}
    tools.update(extra_tools)
    return {"version": "1", "default": "deny", "tools": tools}


POLICY_A = _policy({})
POLICY_B = _policy({"claude_code": {}})
POLICY_BROKEN = {"version": "1", "default": "maybe", "tools": {}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LdsEnvoy(Envoy):
    """An Envoy whose listener (filter + policy) comes from a watched LDS file."""

    def __init__(self, policy: dict, options: EnvoyOptions, workdir: Path) -> None:
        super().__init__(policy, options, workdir)
        self.lds_path = workdir / "lds" / "listeners.yaml"
        self.listen_port = _free_port()

    def _listener(self, policy: dict) -> dict:
        rendered = envoy_config.render(
            policy,
            listen_port=self.listen_port,
            listen_address="127.0.0.1",
            admin_port=0,
            upstream_port=self.options.upstream_port,
            wasm_path=self.options.wasm_path,
            vm_settings={"header_mode": "hold"},
        )
        return yaml.safe_load(rendered)["static_resources"]["listeners"][0]

    def publish(self, policy: dict) -> None:
        """Atomically replace the LDS file (what a config pipeline does)."""
        listener = {"@type": "type.googleapis.com/envoy.config.listener.v3.Listener", **self._listener(policy)}
        tmp = self.lds_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"resources": [listener]}), encoding="utf-8")
        os.replace(tmp, self.lds_path)

    def bootstrap(self) -> str:
        self.lds_path.parent.mkdir(parents=True, exist_ok=True)
        self.publish(self.policy)  # type: ignore[arg-type]
        bootstrap = yaml.safe_load(
            envoy_config.render(
                self.policy,
                listen_port=self.listen_port,
                admin_port=0,
                upstream_port=self.options.upstream_port,
                wasm_path=self.options.wasm_path,
            )
        )
        del bootstrap["static_resources"]["listeners"]
        bootstrap["node"] = {"id": "mcp-policy-reload-test", "cluster": "mcp-policy"}
        bootstrap["dynamic_resources"] = {
            "lds_config": {
                "resource_api_version": "V3",
                "path_config_source": {
                    "path": str(self.lds_path),
                    "watched_directory": {"path": str(self.lds_path.parent)},
                },
            }
        }
        return json.dumps(bootstrap)

    def lds_stat(self, name: str) -> int:
        return self.stats("listener_manager.lds.").get(f"listener_manager.lds.{name}", 0)


@pytest.fixture
def lds_envoy(upstream: RecordingUpstream, tmp_path: Path) -> LdsEnvoy:
    envoy = LdsEnvoy(POLICY_A, EnvoyOptions(upstream_port=upstream.port), tmp_path / "lds-envoy")
    envoy.start()
    yield envoy
    envoy.stop()


def _call(envoy: LdsEnvoy, tool: str) -> tuple[httpx.Response, str]:
    marker = new_marker()
    body = call_message(tool, {"m": marker})
    with httpx.Client(timeout=10.0) as client:  # a fresh connection reaches the current listener
        response = client.post(envoy.url + "/mcp", json=body, headers={**JSON_HEADERS, MARKER_HEADER: marker})
    return response, marker


def _wait_for_stat(envoy: LdsEnvoy, name: str, above: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if envoy.lds_stat(name) > above:
            return
        time.sleep(0.1)
    pytest.fail(f"listener_manager.lds.{name} did not grow past {above}:\n{envoy.log_tail()}")


def _forwarded(upstream: RecordingUpstream, marker: str) -> bool:
    return bool(upstream.matching(marker))


def test_policy_edit_applies_live_and_counters_carry_over(lds_envoy: LdsEnvoy, upstream: RecordingUpstream) -> None:
    # Policy A: echo capped at 3 a day, claude_code denied.
    for _ in range(2):
        response, marker = _call(lds_envoy, "echo")
        assert response.status_code == 200 and "result" in response.json()
        assert _forwarded(upstream, marker)
    response, marker = _call(lds_envoy, "claude_code")
    assert_policy_refusal(response, request_id=1, tool="claude_code")
    assert not _forwarded(upstream, marker)

    # Policy B allows claude_code: applied without a restart.
    pid = lds_envoy.process.pid if lds_envoy.process else None
    successes = lds_envoy.lds_stat("update_success")
    lds_envoy.publish(POLICY_B)
    _wait_for_stat(lds_envoy, "update_success", successes)
    deadline = time.monotonic() + 10
    while True:
        response, marker = _call(lds_envoy, "claude_code")
        if _forwarded(upstream, marker) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert _forwarded(upstream, marker), response.text
    assert lds_envoy.process is not None and lds_envoy.process.pid == pid and lds_envoy.process.poll() is None

    # The echo counter survived the swap: one unit left, then the limit.
    response, marker = _call(lds_envoy, "echo")
    assert _forwarded(upstream, marker), response.text
    response, marker = _call(lds_envoy, "echo")
    assert_policy_refusal(response, request_id=1, tool="echo", code=RATE_LIMITED)
    assert not _forwarded(upstream, marker)


def test_broken_policy_is_rejected_and_previous_keeps_enforcing(lds_envoy: LdsEnvoy, upstream: RecordingUpstream) -> None:
    rejected = lds_envoy.lds_stat("update_rejected")
    lds_envoy.publish(POLICY_BROKEN)
    _wait_for_stat(lds_envoy, "update_rejected", rejected)
    log = lds_envoy.log_text()
    assert 'policy.default: got "maybe", expected one of "allow", "deny"' in log

    # Policy A still enforces: claude_code denied, echo allowed.
    response, marker = _call(lds_envoy, "claude_code")
    assert_policy_refusal(response, request_id=1, tool="claude_code")
    assert not _forwarded(upstream, marker)
    response, marker = _call(lds_envoy, "echo")
    assert _forwarded(upstream, marker), response.text
