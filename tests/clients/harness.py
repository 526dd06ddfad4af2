"""Processes of the client suite: MCP servers, scripted clients, the Inspector CLI.

The clients are real SDK programs run as subprocesses (each with its own
runtime: Node for the TypeScript SDK and the Inspector, `.venv` for Python
mcp 1.x, `.venv-mcp2` for mcp 2.x). Each prints one JSON object that the
tests read; see ts_client.mjs / py_client.py for the plan format.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
NODE_MODULES = REPO / "node_modules"
NODE = shutil.which("node") or "node"
PY_MCP1 = REPO / ".venv" / "bin" / "python"
PY_MCP2 = Path(os.environ.get("MCP2_PYTHON") or REPO / ".venv-mcp2" / "bin" / "python")
TS_CLIENT = HERE / "ts_client.mjs"
PY_CLIENT = HERE / "py_client.py"
INSPECTOR = NODE_MODULES / "@modelcontextprotocol" / "inspector" / "cli" / "build" / "cli.js"
EVERYTHING = NODE_MODULES / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
DEMO_SERVER = REPO / "demo" / "claude_code_server.py"
MODERN_SERVER = HERE / "modern_server.py"
STATUS_REWRITER = HERE / "status_rewriter.py"
RECORDING_PROXY = HERE / "recording_proxy.py"

# What each client raises for a JSON-RPC error answer.
MCP_ERROR_TYPE = {"ts": "McpError", "py1": "McpError", "py2": "MCPError"}
CLIENT_NAMES = {"ts": "TypeScript SDK 1.32.2", "py1": "Python mcp 1.30.0", "py2": "Python mcp 2.3.0"}


def missing_prerequisites() -> list[str]:
    """What `make clients` installs and this suite needs, if absent."""
    needed = [TS_CLIENT, INSPECTOR, EVERYTHING, PY_MCP1, PY_MCP2]
    return [str(path) for path in needed if not path.exists()]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port} after {timeout}s")


@contextmanager
def serving(command: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> Iterator[int]:
    """Run a server until the block ends; its output goes to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=REPO,
        )  # fmt: skip
    try:
        wait_for_port(port, process)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def server_command(kind: str, port: int) -> tuple[list[str], dict[str, str]]:
    """Command and environment that start server `kind` on `port`."""
    if kind == "everything-http":
        return [NODE, str(EVERYTHING), "streamableHttp"], {"PORT": str(port)}
    if kind == "everything-sse":
        return [NODE, str(EVERYTHING), "sse"], {"PORT": str(port)}
    if kind == "demo":
        return [str(PY_MCP1), str(DEMO_SERVER), "--port", str(port)], {}
    if kind == "modern":
        return [str(PY_MCP2), str(MODERN_SERVER), "--port", str(port)], {}
    if kind == "bearer-py":
        return [str(PY_MCP1), str(HERE / "bearer_server.py"), "--port", str(port)], {}
    if kind == "bearer-ts":
        return [NODE, str(HERE / "bearer_server.mjs"), str(port)], {}
    raise ValueError(kind)


@dataclass
class ClientRun:
    """The JSON one scripted client printed, with helpers."""

    client: str
    out: dict[str, Any]
    stderr: str = ""

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.out.get("steps", [])

    def step(self, index: int) -> dict[str, Any]:
        return self.steps[index]

    def posts(self, rpc_method: str) -> list[dict[str, Any]]:
        return [e for e in self.out.get("exchanges", []) if e["http_method"] == "POST" and e["rpc_method"] == rpc_method]

    def describe(self) -> str:
        return json.dumps(self.out, indent=1, ensure_ascii=False)[:6000] + ("\nstderr:\n" + self.stderr[-3000:] if self.stderr else "")


def run_client(client: str, plan: dict[str, Any], timeout: float = 60.0) -> ClientRun:
    """Run one scripted client ("ts", "py1", "py2") through `plan`."""
    argv = {
        "ts": [NODE, str(TS_CLIENT)],
        "py1": [str(PY_MCP1), str(PY_CLIENT)],
        "py2": [str(PY_MCP2), str(PY_CLIENT)],
    }[client]
    done = subprocess.run(
        [*argv, json.dumps(plan)], capture_output=True, text=True, timeout=timeout, cwd=REPO,
        env={**os.environ, "NODE_NO_WARNINGS": "1"},
    )  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise AssertionError(f"{client} printed no result (exit {done.returncode}):\n{done.stdout}\n{done.stderr[-4000:]}")
    return ClientRun(client, json.loads(lines[-1]), done.stderr)


@dataclass
class InspectorRun:
    returncode: int
    stdout: str
    stderr: str
    result: Any = field(default=None)


def run_inspector(
    url: str, transport: str, method: str, *, tool: str | None = None, args: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None, timeout: float = 30.0,
) -> InspectorRun:  # fmt: skip
    """`mcp-inspector --cli URL --transport T --method M ...`, as a user runs it (one session per run)."""
    command = [NODE, str(INSPECTOR), "--cli", url, "--transport", transport, "--method", method]
    if tool is not None:
        command += ["--tool-name", tool]
    for key, value in (args or {}).items():
        command += ["--tool-arg", f"{key}={value if isinstance(value, str) else json.dumps(value)}"]
    for key, value in (headers or {}).items():
        command += ["--header", f"{key}: {value}"]
    # The CLI runs its work in a child `node`: a timeout must end the whole group.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                               start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    run = InspectorRun(process.returncode, stdout, stderr)
    if process.returncode == 0:
        run.result = json.loads(stdout)
    return run


def grant() -> dict[str, str]:
    """A fresh credential: rate limits with scope "grant" start at zero for it."""
    return {"Authorization": f"Bearer test-{uuid.uuid4().hex}"}
