"""`make run`: the demo MCP server behind Envoy + mcp-policy, in the foreground.

Starts demo/claude_code_server.py, then Envoy with the filter
(dist/mcp_policy.wasm) and the seed policy (envoy/seed-policy.json), prints
how to try it, and stops both on Ctrl-C, SIGINT, SIGTERM or SIGHUP (exit 0),
or when either one dies (exit 1). The children run in their own session so
that only this script gets the terminal's Ctrl-C and stops them in order;
its handlers are installed even when SIGINT was inherited as ignored (a
shell's background job, `make test &`).

Ports (environment): ENVOY_PORT 10000, ENVOY_ADMIN_PORT 9901, DEMO_PORT 8000.
Envoy binary: $ENVOY_BIN, default .venv/bin/envoy. Policy: $POLICY_FILE,
default envoy/seed-policy.json. Module: $MCP_POLICY_WASM, default
dist/mcp_policy.wasm. The Envoy config is `mcp-policy render envoy` of the
policy with these values (the CLI renders envoy/envoy.yaml too).

A policy with an `approval` section (e.g. POLICY_FILE=envoy/examples/approval.json)
also starts the reference approval service demo/approval_service.py on
$APPROVAL_PORT (8500) in $APPROVAL_MODE (ask: it asks on this terminal), and
adds the cluster the policy names.

A policy that reads JWT claims (e.g. POLICY_FILE=envoy/examples/roles.json)
gets Envoy's jwt_authn in front of the filter with a fresh HMAC key, and the
lines printed carry a token per demo role (demo/jwt_demo.py).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

import envoy_config  # noqa: E402
import jwt_demo  # noqa: E402

REPO = envoy_config.REPO
WASM = Path(os.environ.get("MCP_POLICY_WASM") or REPO / envoy_config.DEFAULT_WASM).resolve()


def _port(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def _wait(check, what: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    """Poll `check()` until true; fail early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited with code {process.returncode} while starting")
        if check():
            return
        time.sleep(0.1)
    raise SystemExit(f"{what} not ready after {timeout:.0f}s")


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _envoy_ready(admin_port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/ready", timeout=1) as response:
            return response.read().strip() == b"LIVE"
    except OSError:
        return False


def _usage(port: int, admin_port: int, policy_file: Path) -> str:
    url = f"http://127.0.0.1:{port}/mcp"
    h = "-H 'content-type: application/json' -H 'accept: application/json, text/event-stream'"
    return f"""
mcp-policy is up: {url}  (policy: {policy_file.relative_to(REPO) if policy_file.is_relative_to(REPO) else policy_file})

Try it (paste into a shell; the demo server keeps MCP sessions, so the
first line opens one and the others send its id):

  # initialize: keep the Mcp-Session-Id the server answers with
  SID=$(curl -si {h} {url} -d '{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"curl","version":"1"}}}}}}' | tr -d '\\r' | awk -F': ' 'tolower($1)=="mcp-session-id" {{print $2}}'); echo "session $SID"
  curl -s {h} -H "mcp-session-id: $SID" {url} -d '{{"jsonrpc":"2.0","method":"notifications/initialized"}}'

  # tools/list: only claude_code_session is left
  curl -s {h} -H "mcp-session-id: $SID" {url} -d '{{"jsonrpc":"2.0","id":2,"method":"tools/list"}}'

  # allowed: claude_code_session (10 calls a minute per Authorization value)
  curl -s {h} -H "mcp-session-id: $SID" {url} -d '{{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{{"name":"claude_code_session","arguments":{{"action":"list"}}}}}}'

  # denied: claude_code (JSON-RPC error -31001; the server never sees it)
  curl -s {h} -H "mcp-session-id: $SID" {url} -d '{{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{{"name":"claude_code","arguments":{{"prompt":"hello"}}}}}}'

  # the same over HTTP/2 (h2c, prior knowledge)
  curl -s --http2-prior-knowledge {h} -H "mcp-session-id: $SID" {url} -d '{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"name":"claude_code","arguments":{{"prompt":"hello"}}}}}}'

Point an MCP client at it (Streamable HTTP transport):
  URL: {url}
  e.g. npx -y @modelcontextprotocol/inspector@1.0.3 --cli {url} --transport http --method tools/list
       (1.0.3 is the Inspector the tests use, on Node 20; later releases need Node 22)
       claude mcp add --transport http claude-code-demo {url}

Filter counters: curl -s http://127.0.0.1:{admin_port}/stats | grep -i wasm
Ctrl-C stops Envoy and the demo server.
"""


def _jwt_usage(port: int, policy_file: Path, secret: bytes) -> str:
    """Lines to try a claims-based policy: a token per demo role (HS256, valid 8 hours)."""
    url = f"http://127.0.0.1:{port}/mcp"
    h = "-H 'content-type: application/json' -H 'accept: application/json, text/event-stream'"
    tokens = "\n".join(
        f"  {role.upper()}={jwt_demo.hs256_token(secret, claims)}   # {json.dumps(claims)}"
        for role, claims in jwt_demo.ROLES.items()
    )
    s = f'-H "mcp-session-id: $SID" {url}'

    def call(action: str) -> str:
        return ('{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"claude_code_session",'
                f'"arguments":{{"action":"{action}","sessionId":"s-1"}}}}}}')  # fmt: skip

    init = '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
    return f"""
mcp-policy is up: {url}  (policy: {policy_file.name}), Envoy jwt_authn in front (issuer {jwt_demo.ISSUER}).

Tokens, one per demo role (paste into a shell):
{tokens}

  # initialize (any verified caller), keep the session id
  SID=$(curl -si {h} -H "authorization: Bearer $ADMIN" {url} -d '{init}' | tr -d '\r' | awk -F': ' 'tolower($1)=="mcp-session-id" {{print $2}}'); echo "session $SID"
  # each caller sees its own tools: the CI bot lacks claude_code and claude_code_check
  curl -s {h} -H "authorization: Bearer $ADMIN" {s} -d '{{"jsonrpc":"2.0","id":2,"method":"tools/list"}}'
  curl -s {h} -H "authorization: Bearer $CI" {s} -d '{{"jsonrpc":"2.0","id":2,"method":"tools/list"}}'
  # admin may cancel; ci may only list (ci's cancel: -31001, the server never sees it)
  curl -s {h} -H "authorization: Bearer $ADMIN" {s} -d '{call("cancel")}'
  curl -s {h} -H "authorization: Bearer $CI" {s} -d '{call("cancel")}'
  curl -s {h} -H "authorization: Bearer $CI" {s} -d '{call("list")}'
  # no token: refused (require_caller); a tampered token: 401 from jwt_authn
  curl -s {h} {s} -d '{call("list")}'
  curl -si {h} -H "authorization: Bearer ${{CI}}x" {s} -d '{call("list")}' | head -1

Ctrl-C stops Envoy and the demo server.
"""


def main() -> int:
    port = _port("ENVOY_PORT", envoy_config.DEFAULT_LISTEN_PORT)
    admin_port = _port("ENVOY_ADMIN_PORT", envoy_config.DEFAULT_ADMIN_PORT)
    demo_port = _port("DEMO_PORT", envoy_config.DEFAULT_UPSTREAM_PORT)
    envoy_bin = os.environ.get("ENVOY_BIN") or str(REPO / ".venv" / "bin" / "envoy")
    policy_file = Path(os.environ.get("POLICY_FILE") or envoy_config.SEED_POLICY).resolve()
    if not WASM.exists():
        raise SystemExit(f"{WASM} is missing: run `make build` (or just `make run`)")

    # A policy that asks for approval gets the reference approval service
    # (demo/approval_service.py) behind the cluster it names.
    policy_text = policy_file.read_text(encoding="utf-8")
    try:
        approval = json.loads(policy_text).get("approval") or {}
    except (ValueError, AttributeError):
        approval = {}  # let the filter report what is wrong with the policy
    approval_cluster = approval.get("cluster") if isinstance(approval, dict) else None
    approval_port = _port("APPROVAL_PORT", 8500)

    workdir = Path(tempfile.mkdtemp(prefix="mcp-policy-run-"))
    config = workdir / "envoy.yaml"
    try:
        rendered = envoy_config.cli_render(
            policy_file,
            "--listen", f"127.0.0.1:{port}",
            "--admin-port", str(admin_port),
            "--upstream", f"127.0.0.1:{demo_port}",
            "--wasm", str(WASM),
        )  # fmt: skip
    except (FileNotFoundError, RuntimeError) as error:
        raise SystemExit(str(error)) from None
    if isinstance(approval_cluster, str) and approval_cluster:
        bootstrap = envoy_config.with_extra_clusters(yaml.safe_load(rendered), ((approval_cluster, approval_port),))
        rendered = envoy_config.dump(bootstrap, header=f"rendered by demo/run.py: mcp-policy render envoy {policy_file}\n"
                                     f"plus the approval service's cluster {approval_cluster}")  # fmt: skip
    jwt_secret = os.urandom(32) if jwt_demo.uses_claims(policy_text) else None
    if jwt_secret is not None:
        rendered = jwt_demo.with_demo_jwt(rendered, jwt_secret)
    config.write_text(rendered, encoding="utf-8")

    children: list[subprocess.Popen] = []
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        if stopping:
            return  # a second Ctrl-C while the children stop
        stopping = True
        raise KeyboardInterrupt

    # Installed explicitly: a process started with SIGINT ignored (a shell
    # background job) would otherwise never see Ctrl-C or `kill -INT`.
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, stop)
    try:
        demo = subprocess.Popen(
            [sys.executable, str(REPO / "demo" / "claude_code_server.py"), "--port", str(demo_port)],
            start_new_session=True,
        )
        children.append(demo)
        _wait(lambda: _tcp_open(demo_port), "demo MCP server", demo)
        if isinstance(approval_cluster, str) and approval_cluster:
            mode = os.environ.get("APPROVAL_MODE", "ask")
            approver = subprocess.Popen(
                [sys.executable, str(REPO / "demo" / "approval_service.py"), "--port", str(approval_port), "--mode", mode],
                # "ask" mode reads this terminal: keep it in the foreground group.
                start_new_session=mode != "ask",
            )
            children.append(approver)
            _wait(lambda: _tcp_open(approval_port), "approval service", approver)

        envoy_log = workdir / "envoy.log"
        envoy = subprocess.Popen(
            [envoy_bin, "-c", str(config), "--disable-hot-restart", "--log-level", "info",
             "--component-log-level", "wasm:info", "--log-path", str(envoy_log)],
            cwd=REPO, start_new_session=True,
        )  # fmt: skip
        children.append(envoy)
        try:
            _wait(lambda: _envoy_ready(admin_port) and _tcp_open(port), "Envoy", envoy)
        except SystemExit:
            sys.stderr.write(envoy_log.read_text(errors="replace")[-4000:] if envoy_log.exists() else "")
            raise
        print(_usage(port, admin_port, policy_file) if jwt_secret is None else _jwt_usage(port, policy_file, jwt_secret), flush=True)
        print(f"Envoy config: {config}\nEnvoy log:    {envoy_log}\n", flush=True)

        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        if stopping:
            return 0
        dead = next(child for child in children if child.poll() is not None)
        name = "Envoy" if dead is envoy else "demo MCP server"
        print(f"{name} exited with code {dead.returncode}; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
        return 0
    finally:
        stopping = True  # later signals are ignored while the children stop
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in reversed(children):
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


if __name__ == "__main__":
    sys.exit(main())
