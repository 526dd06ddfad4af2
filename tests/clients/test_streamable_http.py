"""Official MCP clients over Streamable HTTP, through Envoy + the filter, to real servers.

Clients: TypeScript SDK 1.32.2, Python mcp 1.30.0, Python mcp 2.3.0 (each a
scripted program that keeps ONE session for the whole plan), and the
Inspector CLI 1.0.3 (one session per command, as people use it).
Servers: server-everything 2026.8.31 (`streamableHttp`: SSE answers,
stateful sessions), the demo server (Python mcp 1.30.0) and a Python mcp
2.3.0 server that speaks the stateless 2026-07-28 protocol to clients that
ask for it. Both header modes.

Per client and server: connect; tools/list is filtered (denied and hidden
tools gone); an allowed call works; a denied and a hidden call raise the
client's MCP error type with -31001, the policy message and data; the
session still works; the third call of a 2-per-grant tool raises -31002;
with `error_style: "tool_result"` a refusal is an `isError` result the
client returns normally.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

import harness
from conftest import EnvoyPool, start_server
from specs import LIMIT, SERVERS, ServerSpec, policy

POLICY_DENIED = -31001
RATE_LIMITED = -31002
CLIENTS = ["ts", "py1", "py2"]


@pytest.fixture(scope="module", params=["everything", "demo", "modern"])
def server(request: pytest.FixtureRequest, logs) -> Iterator[tuple[ServerSpec, int]]:  # noqa: ANN001
    spec = SERVERS[request.param]
    for port in start_server(spec.kind, logs):
        yield spec, port


def negotiated(client: str, spec: ServerSpec) -> str:
    """The protocol version each client ends up with on each server."""
    return "2026-07-28" if client == "py2" and spec.kind == "modern" else "2025-11-25"


def session_plan(url: str, spec: ServerSpec) -> dict[str, Any]:
    allowed, allowed_args, _ = spec.allowed
    limited, limited_args = spec.limited
    steps: list[dict[str, Any]] = [
        {"op": "list_tools"},
        {"op": "call", "name": allowed, "args": allowed_args},
        {"op": "call", "name": spec.denied[0], "args": {}},
        {"op": "call", "name": spec.hidden, "args": {}},
        {"op": "call", "name": allowed, "args": allowed_args},
    ]
    steps += [{"op": "call", "name": limited, "args": limited_args}] * (LIMIT + 1)
    steps += [{"op": "call", "name": name, "args": args} for name, args, _ in spec.extra_allowed]
    steps += [{"op": "call", "name": allowed, "args": allowed_args}]
    return {"url": url, "transport": "http", "timeout_ms": 10000, "headers": harness.grant(), "steps": steps}


def text_of(step: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for part in step["result"].get("content", []))


def assert_allowed(run: harness.ClientRun, step: dict[str, Any], expected_text: str) -> None:
    assert step["ok"], f"{step['name']} should have passed:\n{run.describe()}"
    assert expected_text in text_of(step), run.describe()


def assert_refused(run: harness.ClientRun, step: dict[str, Any], code: int, tool: str, rule: str, reason: str = "") -> None:
    assert not step["ok"], f"{tool} should have been refused:\n{run.describe()}"
    error = step["error"]
    assert error["type"] == harness.MCP_ERROR_TYPE[run.client], run.describe()
    assert error["code"] == code, run.describe()
    assert f'Tool "{tool}"' in error["message"] and reason in error["message"], run.describe()
    data = error["data"]
    assert data["tool"] == tool and data["rule"] == rule, run.describe()
    assert data["decision"] == ("deny" if code == POLICY_DENIED else "rate_limited"), run.describe()
    assert reason in data["reason"], run.describe()


@pytest.mark.parametrize("client", CLIENTS)
def test_one_session_allowed_denied_hidden_rate_limited(
    client: str, mode: str, server: tuple[ServerSpec, int], envoys: EnvoyPool
) -> None:
    spec, port = server
    envoy = envoys.get(policy(), port, mode)
    run = harness.run_client(client, session_plan(envoy.url + spec.path, spec))
    assert run.out.get("connected"), run.describe()
    assert run.out["protocol_version"] == negotiated(client, spec), run.describe()

    listing = run.step(0)
    assert listing["ok"], run.describe()
    assert tuple(tool["name"] for tool in listing["result"]["tools"]) == spec.visible, run.describe()

    allowed, _, expected_text = spec.allowed
    assert_allowed(run, run.step(1), expected_text)
    denied, reason = spec.denied
    assert_refused(run, run.step(2), POLICY_DENIED, denied, f"tools.{denied}", reason)
    assert_refused(run, run.step(3), POLICY_DENIED, spec.hidden, "hide", "hidden by policy")
    assert_allowed(run, run.step(4), expected_text)  # the session survived both refusals

    limited = spec.limited[0]
    for step in run.steps[5 : 5 + LIMIT]:
        assert step["ok"], f"call within the budget refused:\n{run.describe()}"
    over = run.step(5 + LIMIT)
    assert_refused(run, over, RATE_LIMITED, limited, "limits.client_suite_budget", "rate limit")
    data = over["error"]["data"]
    assert (data["counter"], data["window"], data["max"]) == ("client_suite_budget", "day", LIMIT), run.describe()
    assert isinstance(data["retry_after_seconds"], int) and data["retry_after_seconds"] > 0, run.describe()

    index = 6 + LIMIT
    for _, _, text in spec.extra_allowed:
        assert_allowed(run, run.step(index), text)
        index += 1
    assert_allowed(run, run.step(index), expected_text)  # and after the rate limit too

    # Every refusal was the filter's own HTTP 200 answer, never a transport error.
    calls = run.posts("tools/call")
    assert calls and all(exchange["status"] == 200 for exchange in calls), run.describe()


@pytest.mark.parametrize("client", CLIENTS)
def test_tool_result_error_style(client: str, mode: str, server: tuple[ServerSpec, int],
                                 envoys: EnvoyPool) -> None:  # fmt: skip
    """`error_style: "tool_result"`: the refusal is a normal result with isError, text [POLICY DENIED]."""
    spec, port = server
    envoy = envoys.get(policy("tool_result"), port, mode)
    allowed, allowed_args, expected_text = spec.allowed
    denied, reason = spec.denied
    limited, limited_args = spec.limited
    steps = [{"op": "call", "name": denied, "args": {}}]
    steps += [{"op": "call", "name": limited, "args": limited_args}] * (LIMIT + 1)
    steps += [{"op": "call", "name": allowed, "args": allowed_args}]
    plan = {"url": envoy.url + spec.path, "transport": "http", "timeout_ms": 10000, "headers": harness.grant(),
            "steps": steps}  # fmt: skip
    run = harness.run_client(client, plan)
    assert run.out.get("connected"), run.describe()

    refused = run.step(0)
    assert refused["ok"], f"a tool_result refusal must come back as a result:\n{run.describe()}"
    assert refused["result"].get("isError") is True, run.describe()
    assert text_of(refused).startswith("[POLICY DENIED] ") and reason in text_of(refused), run.describe()
    limited_refusal = run.step(1 + LIMIT)
    assert limited_refusal["ok"] and limited_refusal["result"].get("isError") is True, run.describe()
    assert "rate limited" in text_of(limited_refusal), run.describe()
    assert_allowed(run, run.step(2 + LIMIT), expected_text)


def test_python_mcp2_routing_headers_on_the_wire(server: tuple[ServerSpec, int], envoys: EnvoyPool) -> None:
    """mcp 2.3.0 probes `server/discover`; only a 2026-07-28 connection carries Mcp-Method / Mcp-Name."""
    spec, port = server
    envoy = envoys.get(policy(), port, "hold")
    allowed, allowed_args, _ = spec.allowed
    steps = [{"op": "call", "name": allowed, "args": allowed_args}]
    steps += [{"op": "call", "name": name, "args": args} for name, args, _ in spec.extra_allowed]
    plan = {"url": envoy.url + spec.path, "transport": "http", "timeout_ms": 10000, "steps": steps}
    run = harness.run_client("py2", plan)
    assert all(step["ok"] for step in run.steps), run.describe()

    (probe,) = run.posts("server/discover")
    assert probe["mcp_method"] == "server/discover" and probe["protocol_version"] == "2026-07-28", run.describe()
    calls = run.posts("tools/call")
    if spec.kind == "modern":
        assert probe["status"] == 200 and not run.posts("initialize"), run.describe()
        assert [(c["mcp_method"], c["protocol_version"]) for c in calls] == [("tools/call", "2026-07-28")] * len(steps)
        names = [c["mcp_name"] for c in calls]
        encoded = "=?base64?" + base64.b64encode("grüßen".encode()).decode() + "?="
        assert names == [allowed] + [encoded] * len(spec.extra_allowed), run.describe()
    else:
        # A handshake-era server refuses the probe (server-everything: HTTP 400,
        # the Python servers: a JSON-RPC error); the client falls back to
        # initialize and then sends no routing headers.
        assert run.posts("initialize"), run.describe()
        assert all(c["mcp_method"] is None and c["mcp_name"] is None for c in calls), run.describe()
        assert all(c["protocol_version"] == "2025-11-25" for c in calls), run.describe()


def test_inspector_cli(server: tuple[ServerSpec, int], envoys: EnvoyPool) -> None:
    """`mcp-inspector --cli URL --transport http --method ...`: exit 0 and JSON, or exit 1 and the policy message."""
    spec, port = server
    url = envoys.get(policy(), port, "stream").url + spec.path
    listing = harness.run_inspector(url, "http", "tools/list")
    assert listing.returncode == 0, listing.stderr
    assert tuple(tool["name"] for tool in listing.result["tools"]) == spec.visible

    allowed, allowed_args, expected_text = spec.allowed
    ok = harness.run_inspector(url, "http", "tools/call", tool=allowed, args=allowed_args)
    assert ok.returncode == 0 and expected_text in ok.result["content"][0]["text"], ok.stderr

    denied, reason = spec.denied
    refused = harness.run_inspector(url, "http", "tools/call", tool=denied)
    assert refused.returncode == 1, refused.stdout
    assert f'Failed to call tool {denied}: MCP error -31001: Tool "{denied}" denied by policy: {reason}' in refused.stderr

    # One session per command: the budget is per grant, so the same credential counts across runs.
    credential = harness.grant()
    limited, limited_args = spec.limited
    runs = [harness.run_inspector(url, "http", "tools/call", tool=limited, args=limited_args, headers=credential)
            for _ in range(LIMIT + 1)]  # fmt: skip
    assert [r.returncode for r in runs] == [0] * LIMIT + [1], [r.stderr for r in runs]
    assert f"MCP error -31002: Tool \"{limited}\" rate limited by policy" in runs[-1].stderr

    # error_style "tool_result": the refusal is printed as a normal result.
    url = envoys.get(policy("tool_result"), port, "stream").url + spec.path
    as_result = harness.run_inspector(url, "http", "tools/call", tool=denied)
    assert as_result.returncode == 0, as_result.stderr
    assert as_result.result["isError"] is True
    assert as_result.result["content"][0]["text"].startswith(f'[POLICY DENIED] Tool "{denied}" denied by policy')
