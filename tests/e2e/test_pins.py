"""Pinned tool definitions: a server that changes a tool after it was pinned.

The policy pins tools by the SHA-256 of their canonical definition (computed
here independently, with Python's json module, from what the recording
upstream lists). The upstream changes a tool's description when a request
carries `x-test-rug-pull: NAME`, so two `tools/list` answers in a row can
differ: the first shows the tool and its calls pass; the next hides it, and
from then on its calls are refused (on every worker: the filter remembers
listed definitions in shared data) and the upstream sees nothing of them.
In `flag` mode the changed tool stays listed and callable but is counted
and audited. A list with the original definition makes the tool callable
again, which also leaves each Envoy as the next test expects it.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from typing import Any

import pytest

from assertions import assert_json_answer, assert_policy_refusal, parse_json
from conftest import EnvoyPool, policy_for
from envoy_config import cli_bin
from policy_proxy import PolicyProxy, mcp_policy_stats, new_marker
from recording_upstream import RecordingUpstream, upstream_tools

PULLED = "read_notes"  # the tool whose description the upstream changes
FIELDS = ("name", "description", "inputSchema", "annotations")


def canonical_pin(tool: dict[str, Any]) -> str:
    """The pin of a listed tool, by the canonical form docs/policy.md defines."""
    definition = {k: tool[k] for k in FIELDS if k in tool}
    text = json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def pins_of(names: list[str]) -> dict[str, str]:
    tools = {t["name"]: t for t in upstream_tools()}
    return {name: canonical_pin(tools[name]) for name in names}


def pin_policy(**settings: Any) -> dict[str, Any]:
    return {
        "version": "1",
        "default": "allow",
        "settings": {"audit": "all", **settings},
        "pins": pins_of(["echo", PULLED]),
    }


def listed(proxy: PolicyProxy, *, pull: bool = False, sse: bool = False) -> list[str]:
    """Names in one tools/list answer through the filter."""
    headers = {"x-test-rug-pull": PULLED} if pull else {}
    if sse:
        headers["x-test-sse"] = "1"
    marker = new_marker()
    response = proxy.post({"jsonrpc": "2.0", "id": 7, "method": "tools/list"}, marker=marker, headers=headers)
    assert response.status_code == 200, response.text
    if sse:
        assert response.headers["content-type"].startswith("text/event-stream")
        data = [line[len("data: "):] for line in response.text.splitlines() if line.startswith("data: ")]
        message = parse_json(data[-1])
    else:
        message = assert_json_answer(response, 200)
    assert message["id"] == 7 and "result" in message, response.text
    return [t["name"] for t in message["result"]["tools"]]


def call(proxy: PolicyProxy, tool: str, marker: str) -> Any:
    # A fresh connection each time (Connection: close), so calls spread over Envoy's workers.
    headers = {"x-request-id": marker, "connection": "close"}
    return proxy.call(tool, {"m": marker}, request_id=marker, marker=marker, headers=headers)


def audit_lines(proxy: PolicyProxy, needle: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        found = [
            json.loads(line.split("mcp-policy audit ", 1)[1])
            for line in proxy.envoy.log_text().splitlines()
            if "mcp-policy audit " in line and needle in line
        ]
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"no audit line with {needle}:\n{proxy.envoy.log_tail()}")


def restore(proxy: PolicyProxy) -> None:
    """The original definition listed again: callable again."""
    assert PULLED in listed(proxy)
    marker = new_marker()
    proxy.assert_upstream_answered(call(proxy, PULLED, marker), marker, marker)


@pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
def test_a_changed_description_hides_the_tool_and_refuses_its_calls(envoys: EnvoyPool, mode: str, sse: bool) -> None:
    proxy = envoys.proxy(policy_for(pin_policy(), mode), mode)
    assert PULLED in listed(proxy, sse=sse)
    marker = new_marker()
    proxy.assert_upstream_answered(call(proxy, PULLED, marker), marker, marker)

    before = mcp_policy_stats(proxy.envoy)
    names = listed(proxy, pull=True, sse=sse)
    assert PULLED not in names and "echo" in names and "delete_everything" in names
    after = mcp_policy_stats(proxy.envoy)
    assert after["mcp_policy_pins_mismatched"] - before.get("mcp_policy_pins_mismatched", 0) == 1

    refused = []
    for _ in range(4):
        marker = new_marker()
        response = call(proxy, PULLED, marker)
        error = assert_policy_refusal(response, request_id=marker, code=-31001, tool=PULLED)
        assert "changed since it was pinned (description)" in error["message"], error
        refused.append(marker)
    line = audit_lines(proxy, refused[0])[0]
    assert line["decision"] == "denied" and line["rule"] == f"pins.{PULLED}"
    for marker in refused:
        proxy.assert_refused_and_alive(marker)
    event = audit_lines(proxy, '"event":"pin_mismatch"')[-1]
    assert event["tool"] == PULLED and event["decision"] == "hidden"
    assert "(description)" in event["reason"]
    restore(proxy)


def test_flag_mode_lists_and_forwards_but_counts_and_audits(envoys: EnvoyPool, mode: str) -> None:
    proxy = envoys.proxy(policy_for(pin_policy(pin_mismatch="flag"), mode), mode)
    assert PULLED in listed(proxy)
    before = mcp_policy_stats(proxy.envoy)
    assert PULLED in listed(proxy, pull=True)
    marker = new_marker()
    proxy.assert_upstream_answered(call(proxy, PULLED, marker), marker, marker)
    after = mcp_policy_stats(proxy.envoy)

    def grew(name: str) -> int:
        return after.get(name, 0) - before.get(name, 0)

    assert grew("mcp_policy_pins_mismatched") == 1
    assert grew("mcp_policy_calls_flagged") == 1 and grew("mcp_policy_calls_denied") == 0
    line = audit_lines(proxy, marker)[0]
    assert line["decision"] == "flagged" and line["rule"] == f"pins.{PULLED}"
    assert "(description)" in line["reason"]
    assert audit_lines(proxy, '"event":"pin_mismatch"')[-1]["decision"] == "flagged"
    restore(proxy)
    proxy.assert_still_serves()


def test_unpinned_deny_hides_and_refuses_tools_without_a_pin(envoys: EnvoyPool, mode: str) -> None:
    proxy = envoys.proxy(policy_for(pin_policy(unpinned="deny"), mode), mode)
    assert sorted(listed(proxy)) == sorted(["echo", PULLED])
    marker = new_marker()
    response = call(proxy, "delete_everything", marker)
    error = assert_policy_refusal(response, request_id=marker, code=-31001, tool="delete_everything")
    assert "has no pin" in error["message"], error
    proxy.assert_refused_and_alive(marker)


def test_a_pinned_tool_is_callable_before_any_list(envoys: EnvoyPool) -> None:
    # Its own Envoy (a setting no other test uses), so no list was seen yet.
    proxy = envoys.proxy(policy_for(pin_policy(max_batch=63), "hold"), "hold")
    marker = new_marker()
    proxy.assert_upstream_answered(call(proxy, PULLED, marker), marker, marker)


@pytest.mark.parametrize("path", ["/mcp", "/mcp?sse=1"], ids=["json", "sse"])
def test_cli_pins_match_the_filter_on_the_whole_catalog(envoys: EnvoyPool, upstream: RecordingUpstream, tmp_path: Any, path: str) -> None:
    """`mcp-policy pin URL` against the upstream gives the pins computed here,
    and a policy with them (and unpinned: deny) lists every tool unchanged."""
    result = subprocess.run(
        [str(cli_bin()), "pin", f"http://127.0.0.1:{upstream.port}{path}"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    pins = json.loads(result.stdout)["pins"]
    assert pins == {t["name"]: canonical_pin(t) for t in upstream_tools()}
    policy = {"version": "1", "default": "allow", "settings": {"unpinned": "deny"}, "pins": pins}
    proxy = envoys.proxy(policy_for(policy, "hold"), "hold")
    assert listed(proxy) == [t["name"] for t in upstream_tools()]
    # --write merges the same pins into a policy file that validates.
    file = tmp_path / "policy.json"
    file.write_text(json.dumps({"version": "1", "default": "deny"}, indent=2))
    written = subprocess.run(
        [str(cli_bin()), "pin", f"http://127.0.0.1:{upstream.port}{path}", "--write", str(file)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert written.returncode == 0, written.stderr
    assert json.loads(file.read_text())["pins"] == pins
