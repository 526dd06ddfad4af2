"""The demo as a user meets it: the official MCP client, through Envoy, to the demo server.

This is what the recording upstream cannot show: that a real SDK client
stays usable when the filter refuses a call (McpError with -31001, session
intact), that the SDK's own SSE answers are filtered, and that `make run`
(demo/run.py) starts and stops cleanly.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import pytest
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import McpError

from assertions import POLICY_DENIED
from conftest import EnvoyPool
from envoy_process import WASM, Envoy, envoy_bin
from policies import SEED_POLICY_TEXT

REPO = Path(__file__).resolve().parents[2]
DEMO_SERVER = REPO / "demo" / "claude_code_server.py"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"process exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listening on {port} after {timeout}s")


@pytest.fixture(scope="module")
def demo_server() -> Iterator[int]:
    port = _free_port()
    process = subprocess.Popen([sys.executable, str(DEMO_SERVER), "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        _wait_for_port(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture(scope="module", params=["stream", "hold"])
def demo_envoy(request: pytest.FixtureRequest, envoys: EnvoyPool, demo_server: int) -> Envoy:
    """The seed policy, verbatim, in front of the demo server.

    "stream" is the filter's default; "hold" (from the VM settings) is what
    envoy/envoy.yaml and `make run` use.
    """
    if request.param == "stream":
        return envoys.envoy(SEED_POLICY_TEXT, upstream_port=demo_server, allow_on_headers_stop_iteration=None)
    return envoys.envoy(SEED_POLICY_TEXT, upstream_port=demo_server, vm_settings={"header_mode": "hold"})


async def _client_session_scenario(url: str) -> dict[str, object]:
    seen: dict[str, object] = {}
    async with streamable_http_client(url) as (read, write, _):
        async with ClientSession(read, write) as session:
            await session.initialize()
            seen["tools"] = [tool.name for tool in (await session.list_tools()).tools]
            listing = await session.call_tool("claude_code_session", {"action": "list"})
            seen["list"] = (listing.isError, json.loads(listing.content[0].text))
            missing = await session.call_tool("claude_code_session", {"action": "get", "sessionId": "nope"})
            seen["missing"] = (missing.isError, missing.content[0].text)
            try:
                await session.call_tool("claude_code", {"prompt": "delete the repo"})
                seen["denied"] = None
            except McpError as error:
                seen["denied"] = (error.error.code, error.error.message, error.error.data)
            again = await session.call_tool("claude_code_session", {"action": "list"})
            seen["after"] = again.isError
            await session.send_ping()
    return seen


def test_official_client_through_envoy(demo_envoy: Envoy) -> None:
    seen = anyio.run(_client_session_scenario, demo_envoy.url + "/mcp")
    assert seen["tools"] == ["claude_code_session"]
    assert seen["list"] == (False, {"sessions": []})
    assert seen["missing"][0] is True and seen["missing"][1].startswith("Error [SESSION_NOT_FOUND]")
    assert seen["denied"] is not None, "claude_code was not refused"
    code, message, data = seen["denied"]
    assert code == POLICY_DENIED and "claude_code" in message
    assert isinstance(data, dict) and data.get("tool") == "claude_code" and data.get("decision") == "deny"
    assert seen["after"] is False, "session unusable after a refusal"


def test_demo_server_alone_has_the_whole_catalog(demo_server: int) -> None:
    """Without Envoy the demo server offers all four tools, with annotations."""

    async def scenario() -> list:
        async with streamable_http_client(f"http://127.0.0.1:{demo_server}/mcp") as (read, write, _):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return (await session.list_tools()).tools

    tools = anyio.run(scenario)
    assert [t.name for t in tools] == ["claude_code", "claude_code_reply", "claude_code_session", "claude_code_check"]
    session_tool = tools[2]
    assert session_tool.inputSchema["required"] == ["action"]
    assert session_tool.inputSchema["properties"]["action"]["enum"] == ["list", "get", "cancel"]
    assert session_tool.annotations is not None and session_tool.annotations.destructiveHint is True


def _ignore_sigint() -> None:
    """What a shell does for a background job (`make test &`): SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


# How `make run` gets stopped: Ctrl-C in a terminal (the whole foreground
# process group gets SIGINT), a script's `kill -INT` on a run that inherited
# SIGINT as ignored (a background job), and a service manager's SIGTERM.
STOPS = {
    "ctrl-c": (signal.SIGINT, True, None),
    "sigint-background-job": (signal.SIGINT, False, _ignore_sigint),
    "sigterm": (signal.SIGTERM, False, None),
}


@pytest.mark.parametrize("stop", list(STOPS))
def test_make_run_starts_and_stops_cleanly(stop: str) -> None:
    """demo/run.py with free ports: usable, its printed lines work pasted, and every way to stop it exits 0."""
    if not WASM.exists():
        pytest.fail(f"{WASM} does not exist: run `make build` first", pytrace=False)
    number, whole_group, preexec = STOPS[stop]
    ports = {"ENVOY_PORT": _free_port(), "ENVOY_ADMIN_PORT": _free_port(), "DEMO_PORT": _free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "ENVOY_BIN": envoy_bin()}
    process = subprocess.Popen(
        [sys.executable, str(REPO / "demo" / "run.py")], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True, preexec_fn=preexec,
    )  # fmt: skip
    output = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        for line in process.stdout:
            output.append(line)
            if "Ctrl-C stops" in line or time.monotonic() > deadline:
                break
        text = "".join(output)
        assert "Ctrl-C stops" in text, text
        url = f"http://127.0.0.1:{ports['ENVOY_PORT']}/mcp"
        assert url in text and "curl" in text
        if stop == "ctrl-c":
            _printed_lines_work_pasted(text)
        if whole_group:
            os.killpg(process.pid, number)
        else:
            process.send_signal(number)
        code = process.wait(20)
        rest = process.stdout.read()
        assert code == 0, text + rest
        assert "Traceback" not in rest and "exited with code" not in rest, rest
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    for port in ports.values():
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()


def _printed_lines_work_pasted(text: str) -> None:
    """The curl lines as printed, run by a shell: a session opens, the allowed call runs, the denied is refused."""
    assert "\r" not in text, "a literal carriage return would break the pasted line"
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith(("SID=", "curl "))]
    assert len(lines) >= 4, text
    script = "\n".join(lines[:5]) + "\n"
    result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert re.search(r"^session \S+", out, re.M), out
    assert '"claude_code_session"' in out and str(POLICY_DENIED) in out, out
