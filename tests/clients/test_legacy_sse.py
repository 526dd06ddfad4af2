"""The legacy HTTP+SSE transport (2024-11-05) through the filter: what each client does.

The client GETs /sse and POSTs every message to /message?sessionId=...;
the server answers each POST with 202 and sends the JSON-RPC answer on the
GET stream. The filter judges the POSTs (a refused tools/call never reaches
the server) but can only answer on the POST itself. What the clients make
of that, established here against server-everything `sse`:

- HTTP 200 + JSON-RPC error (what the filter sends): every SDK ignores the
  POST's body and waits for an answer on the stream that never comes: the
  call fails with the client's *timeout* error (TS SDK -32001 after its
  60 s default, Python 1.x McpError 408 / 2.x MCPError -32001 after the
  read timeout, which 1.x leaves unset = forever). The session survives.
- HTTP 403 + the same body (simulated by status_rewriter.py): the TS SDK
  rejects the call at once with a plain Error "Error POSTing to endpoint
  (HTTP 403): <the JSON-RPC error>" and the session survives (the Inspector
  CLI, built on it, exits 1 with that text at once); both Python
  SDKs log the HTTPStatusError, still time the call out, and their session
  is dead (the POST writer stops: every later request fails).
- tools/list answers travel on the GET stream; the filter rewrites every
  event stream as it flows (list answers recognised by shape), so legacy
  clients do not see denied or hidden tools either.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import harness
from conftest import EnvoyPool, start_server
from specs import SERVERS, policy

SPEC = SERVERS["everything-sse"]
CLIENTS = ["ts", "py1", "py2"]
TIMEOUT_MS = 2000
ALLOWED, ALLOWED_ARGS, ALLOWED_TEXT = SPEC.allowed
DENIED = SPEC.denied[0]
# What each client raises when no answer came in time.
TIMEOUT_ERROR = {"ts": ("McpError", -32001), "py1": ("McpError", 408), "py2": ("MCPError", -32001)}


@pytest.fixture(scope="module")
def sse_server(logs) -> Iterator[int]:  # noqa: ANN001
    yield from start_server(SPEC.kind, logs)


def plan(url: str) -> dict:
    steps = [
        {"op": "list_tools"},
        {"op": "call", "name": ALLOWED, "args": ALLOWED_ARGS},
        {"op": "call", "name": DENIED, "args": {}},
        {"op": "call", "name": ALLOWED, "args": ALLOWED_ARGS},
    ]
    return {"url": url, "transport": "sse", "timeout_ms": TIMEOUT_MS, "steps": steps}


@pytest.mark.parametrize("client", CLIENTS)
def test_refused_post_times_out_and_the_session_survives(client: str, mode: str, sse_server: int,
                                                         envoys: EnvoyPool) -> None:  # fmt: skip
    envoy = envoys.get(policy(), sse_server, mode)
    run = harness.run_client(client, plan(envoy.url + SPEC.path))
    assert run.out.get("connected") and run.out["protocol_version"] == "2025-11-25", run.describe()

    listing = run.step(0)
    names = {tool["name"] for tool in listing["result"]["tools"]}
    # The answer came on the GET /sse stream: filtered event by event there.
    assert not ({DENIED, SPEC.hidden} & names), run.describe()
    assert ALLOWED in names, run.describe()

    assert run.step(1)["ok"] and ALLOWED_TEXT in run.step(1)["result"]["content"][0]["text"], run.describe()
    refused = run.step(2)
    assert not refused["ok"], run.describe()
    assert (refused["error"]["type"], refused["error"]["code"]) == TIMEOUT_ERROR[client], run.describe()
    assert refused["elapsed_ms"] >= TIMEOUT_MS - 100, run.describe()
    assert run.step(3)["ok"], f"session lost after a refusal:\n{run.describe()}"

    # On the wire: the filter answered the refused POST itself (200, JSON), the server the others (202).
    statuses = [(e["status"], e["content_type"]) for e in run.posts("tools/call")]
    assert statuses == [(202, None), (200, "application/json"), (202, None)], run.describe()


@pytest.fixture(scope="module")
def rewriter(sse_server: int, envoys: EnvoyPool, logs) -> Iterator[str]:  # noqa: ANN001
    """The filter's refusals turned into HTTP 403 (same body): what a 4xx would do."""
    envoy = envoys.get(policy(), sse_server, "stream")
    port = harness.free_port()
    command = [str(harness.PY_MCP1), str(harness.STATUS_REWRITER), "--upstream", envoy.url, "--port", str(port),
               "--status", "403"]  # fmt: skip
    with harness.serving(command, port, logs / "status-rewriter.log") as ready:
        yield f"http://127.0.0.1:{ready}"


@pytest.mark.parametrize("client", CLIENTS)
def test_what_a_403_would_do(client: str, rewriter: str) -> None:
    run = harness.run_client(client, plan(rewriter + SPEC.path))
    assert run.out.get("connected"), run.describe()
    refused, after = run.step(2), run.step(3)
    assert not refused["ok"], run.describe()
    if client == "ts":
        # Immediate, readable, and the session goes on.
        assert refused["error"]["type"] == "Error" and refused["elapsed_ms"] < TIMEOUT_MS, run.describe()
        message = refused["error"]["message"]
        assert message.startswith("Error POSTing to endpoint (HTTP 403): "), run.describe()
        assert '"code":-31001' in message and "images are not for agents" in message, run.describe()
        assert after["ok"], run.describe()
    else:
        # The Python transports stop their POST writer on the HTTPStatusError:
        # the call still times out, and the session is gone.
        assert (refused["error"]["type"], refused["error"]["code"]) == TIMEOUT_ERROR[client], run.describe()
        assert not after["ok"], run.describe()
        assert "HTTPStatusError" in run.stderr and "403" in run.stderr, run.describe()


def test_what_a_403_would_do_to_the_inspector(rewriter: str) -> None:
    refused = harness.run_inspector(rewriter + SPEC.path, "sse", "tools/call", tool=DENIED, timeout=20)
    assert refused.returncode == 1, refused.stdout
    assert f"Failed to call tool {DENIED}: Error POSTing to endpoint (HTTP 403): " in refused.stderr, refused.stderr
    assert '"code":-31001' in refused.stderr, refused.stderr


def test_inspector_cli_over_sse(sse_server: int, envoys: EnvoyPool) -> None:
    url = envoys.get(policy(), sse_server, "stream").url + SPEC.path
    listing = harness.run_inspector(url, "sse", "tools/list")
    assert listing.returncode == 0, listing.stderr
    assert not ({DENIED, SPEC.hidden} & {tool["name"] for tool in listing.result["tools"]})  # filtered, as above
    ok = harness.run_inspector(url, "sse", "tools/call", tool=ALLOWED, args=ALLOWED_ARGS)
    assert ok.returncode == 0 and ALLOWED_TEXT in ok.result["content"][0]["text"], ok.stderr
    # A refused call waits for the SDK's 60 s request timeout; we only check it is still waiting.
    with pytest.raises(harness.subprocess.TimeoutExpired):
        harness.run_inspector(url, "sse", "tools/call", tool=DENIED, timeout=4)
