"""Demo MCP server imitating the Claude Code MCP server, over Streamable HTTP.

It is the upstream of `make run` and of the end-to-end test that drives the
official MCP client through Envoy. It announces the real tool catalog
(`claude_code_catalog.py`) and answers with plausible fake results: no coding
agent runs, sessions are entries in a dict. Errors look like the real
server's: tool results with `isError: true` and `Error [CODE]: ...` text.

It is built on the official SDK's low-level `Server` (not FastMCP) so the
announced input schemas are exactly the catalog's JSON Schemas (enums,
required arguments), and the SDK validates arguments against them.

    python demo/claude_code_server.py [--host 127.0.0.1] [--port $PORT or 8000]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import mcp.types as types  # noqa: E402
import uvicorn  # noqa: E402
from mcp.server.lowlevel import Server  # noqa: E402
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager  # noqa: E402
from mcp.server.transport_security import TransportSecuritySettings  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.routing import Route  # noqa: E402
from starlette.types import Receive, Scope, Send  # noqa: E402

from claude_code_catalog import catalog  # noqa: E402

POLL_INTERVAL_MS = 2000


class Sessions:
    """Fake coding sessions: created running, completed on their first poll."""

    def __init__(self) -> None:
        self._sessions: dict[str, dict[str, Any]] = {}

    def start(self, prompt: str, cwd: str | None, parent: str | None = None) -> dict[str, Any]:
        session_id = str(uuid.uuid4())
        self._sessions[session_id] = {
            "sessionId": session_id,
            "status": "running",
            "prompt": prompt,
            "cwd": cwd or os.getcwd(),
            "createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "turns": 0,
            "parentSessionId": parent,
            "events": [],
        }
        return self._sessions[session_id]

    def get(self, session_id: Any) -> dict[str, Any] | None:
        return self._sessions.get(session_id) if isinstance(session_id, str) else None

    def all(self) -> list[dict[str, Any]]:
        return list(self._sessions.values())


def _text(payload: Any, *, is_error: bool = False) -> types.CallToolResult:
    text = payload if isinstance(payload, str) else json.dumps(payload, indent=2)
    return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=is_error)


def _error(code: str, message: str) -> types.CallToolResult:
    return _text(f"Error [{code}]: {message}", is_error=True)


def _summary(session: dict[str, Any], include_sensitive: bool = False) -> dict[str, Any]:
    keys = ["sessionId", "status", "createdAt", "turns", "parentSessionId"]
    if include_sensitive:
        keys += ["prompt", "cwd"]
    return {key: session[key] for key in keys}


def build_server() -> Server:
    """The MCP server object with the catalog and fake tool behaviour."""
    server: Server = Server("claude-code-mcp-demo", version="2.0.1-demo")
    sessions = Sessions()
    tools = [types.Tool.model_validate(tool) for tool in catalog()]

    @server.list_tools()
    async def list_tools() -> list[types.Tool]:
        return tools

    @server.call_tool()  # validates arguments against the catalog's inputSchema
    async def call_tool(name: str, args: dict[str, Any]) -> types.CallToolResult:
        if name == "claude_code":
            session = sessions.start(args["prompt"], args.get("cwd"))
            return _text({"sessionId": session["sessionId"], "status": "running", "pollInterval": POLL_INTERVAL_MS})

        if name == "claude_code_reply":
            session = sessions.get(args["sessionId"])
            if session is None:
                return _error("SESSION_NOT_FOUND", f"Session '{args['sessionId']}' not found")
            if args.get("forkSession"):
                session = sessions.start(args["prompt"], session["cwd"], parent=session["sessionId"])
            else:
                session.update(status="running", prompt=args["prompt"])
            return _text({"sessionId": session["sessionId"], "status": "running", "pollInterval": POLL_INTERVAL_MS})

        if name == "claude_code_session":
            action = args["action"]
            if action == "list":
                return _text({"sessions": [_summary(s, args.get("includeSensitive", False)) for s in sessions.all()]})
            if "sessionId" not in args:
                return _error("INVALID_ARGUMENT", f"sessionId is required for action '{action}'")
            session = sessions.get(args["sessionId"])
            if session is None:
                return _error("SESSION_NOT_FOUND", f"Session '{args['sessionId']}' not found")
            if action == "cancel":
                if session["status"] == "running":
                    session["status"] = "cancelled"
                return _text({"sessionId": session["sessionId"], "status": session["status"]})
            return _text(_summary(session, args.get("includeSensitive", False)))

        if name == "claude_code_check":
            session = sessions.get(args["sessionId"])
            if session is None:
                return _error("SESSION_NOT_FOUND", f"Session '{args['sessionId']}' not found")
            if args["action"] == "respond_permission":
                request_id = args.get("requestId", "")
                return _error("PERMISSION_REQUEST_NOT_FOUND", f"No pending permission request '{request_id}'")
            cursor = args.get("cursor", 0)
            if session["status"] == "running":
                session["turns"] += 1
                session["status"] = "completed"
                session["events"].append({"type": "result", "text": f"(demo) done: {session['prompt'][:200]}"})
            return _text(
                {
                    "sessionId": session["sessionId"],
                    "status": session["status"],
                    "events": session["events"][cursor:],
                    "nextCursor": len(session["events"]),
                }
            )

        return _error("UNKNOWN_TOOL", f"Unknown tool '{name}'")

    return server


class _StreamableHTTPEndpoint:
    """Raw ASGI endpoint, so /mcp is served as is (no redirect to /mcp/)."""

    def __init__(self, manager: StreamableHTTPSessionManager) -> None:
        self.manager = manager

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.manager.handle_request(scope, receive, send)


def build_app() -> Starlette:
    """Starlette app serving the MCP server at /mcp (Streamable HTTP, with sessions)."""
    manager = StreamableHTTPSessionManager(
        app=build_server(),
        # Reached through Envoy, the Host header is Envoy's (127.0.0.1:10000).
        security_settings=TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            # MCP_ALLOWED_HOSTS (comma-separated Host values, `name:*` for
            # any port) adds the names a deployment reaches it by.
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*", *_extra_allowed_hosts()],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        ),
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        async with manager.run():
            yield

    return Starlette(routes=[Route("/mcp", endpoint=_StreamableHTTPEndpoint(manager))], lifespan=lifespan)


def _extra_allowed_hosts() -> list[str]:
    return [h.strip() for h in os.environ.get("MCP_ALLOWED_HOSTS", "").split(",") if h.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Demo MCP server with the Claude Code tool catalog")
    parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--log-level", default="warning")
    args = parser.parse_args(argv)
    print(f"demo MCP server: http://{args.host}:{args.port}/mcp", flush=True)
    uvicorn.run(
        build_app(),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=2,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
