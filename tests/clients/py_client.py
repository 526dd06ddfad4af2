"""A scripted MCP client on the official Python SDK, 1.x or 2.x.

    .venv/bin/python      tests/clients/py_client.py '<plan JSON>'   # mcp 1.30.0
    .venv-mcp2/bin/python tests/clients/py_client.py '<plan JSON>'   # mcp 2.3.0

Same plan and output as ts_client.mjs: {"url", "transport": "http" | "sse",
"timeout_ms", "headers", "steps": [{"op": "list_tools" | "call" | "ping" |
"list_resources" | "list_resource_templates" | "read_resource" (URI in
"name") | "list_prompts" | "get_prompt", "name", "args"}]}; every step on ONE session, in order, a failing step does
not stop the plan. Prints one JSON object: negotiated protocol version, each
step's outcome and every HTTP exchange (with the routing headers sent).

mcp 2.x is driven the way its README shows, `mcp.Client(url)` (mode "auto":
a `server/discover` probe, then the initialize handshake on a legacy
server); mcp 1.x through `ClientSession` over the transport.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from importlib.metadata import version
from typing import Any

import anyio

MCP_VERSION = version("mcp")
V2 = int(MCP_VERSION.split(".")[0]) >= 2

if V2:
    import httpx2 as httpx
    from mcp import Client
    from mcp.shared.exceptions import MCPError as McpError
else:
    import httpx
    from mcp import ClientSession
    from mcp.shared.exceptions import McpError

from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

EXCHANGES: list[dict[str, Any]] = []


async def _on_request(request: httpx.Request) -> None:
    rpc_method: Any = None
    if request.method == "POST":
        try:
            body = json.loads(request.content)
            rpc_method = [m.get("method") for m in body] if isinstance(body, list) else body.get("method")
        except (ValueError, AttributeError):
            rpc_method = "<unparsable>"
    h = request.headers
    EXCHANGES.append({
        "http_method": request.method, "path": request.url.path, "rpc_method": rpc_method,
        "accept": h.get("accept"), "mcp_method": h.get("mcp-method"), "mcp_name": h.get("mcp-name"),
        "protocol_version": h.get("mcp-protocol-version"), "status": None, "content_type": None,
        "_id": id(request),
    })  # fmt: skip


async def _on_response(response: httpx.Response) -> None:
    for entry in reversed(EXCHANGES):
        if entry["_id"] == id(response.request):
            entry["status"] = response.status_code
            entry["content_type"] = response.headers.get("content-type")
            break


def _recording(client: httpx.AsyncClient) -> httpx.AsyncClient:
    client.event_hooks = {"request": [_on_request], "response": [_on_response]}
    return client


def _recording_factory(headers=None, timeout=None, auth=None) -> httpx.AsyncClient:  # noqa: ANN001
    return _recording(create_mcp_http_client(headers=headers, timeout=timeout, auth=auth))


def _describe(error: BaseException) -> dict[str, Any]:
    if isinstance(error, McpError):
        return {"type": type(error).__name__, "code": error.error.code, "message": error.error.message,
                "data": error.error.data}  # fmt: skip
    if isinstance(error, BaseExceptionGroup):
        inner = [_describe(e) for e in error.exceptions]
        return {"type": type(error).__name__, "code": None, "message": str(error), "data": inner}
    return {"type": type(error).__name__, "code": None, "message": str(error) or repr(error), "data": None}


def _dump(result: Any) -> Any:
    return result.model_dump(mode="json", by_alias=True, exclude_none=True) if hasattr(result, "model_dump") else result


async def _steps(session: Any, steps: list[dict[str, Any]], out: dict[str, Any]) -> None:
    for step in steps:
        started = time.monotonic()
        entry: dict[str, Any] = {"op": step["op"], "name": step.get("name")}
        try:
            if step["op"] == "list_tools":
                result = await session.list_tools()
            elif step["op"] == "call":
                result = await session.call_tool(step["name"], step.get("args") or {})
            elif step["op"] == "ping":
                result = await (session.session.send_ping() if V2 else session.send_ping())
            elif step["op"] == "list_resources":
                result = await session.list_resources()
            elif step["op"] == "list_resource_templates":
                result = await session.list_resource_templates()
            elif step["op"] == "read_resource":
                result = await session.read_resource(step["name"])
            elif step["op"] == "list_prompts":
                result = await session.list_prompts()
            elif step["op"] == "get_prompt":
                result = await session.get_prompt(step["name"], step.get("args") or {})
            else:
                raise ValueError(f"unknown op {step['op']}")
            entry.update(ok=True, result=_dump(result))
        except Exception as error:  # noqa: BLE001 - the driver wants to see every kind
            entry.update(ok=False, error=_describe(error))
        entry["elapsed_ms"] = round((time.monotonic() - started) * 1000)
        out["steps"].append(entry)


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    timeout = plan.get("timeout_ms", 5000) / 1000
    headers = plan.get("headers") or {}
    out: dict[str, Any] = {"client": f"python-mcp-{MCP_VERSION}", "transport": plan["transport"], "steps": [],
                           "exchanges": EXCHANGES}  # fmt: skip
    if plan["transport"] == "sse":
        transport = sse_client(plan["url"], headers=headers, httpx_client_factory=_recording_factory)
    else:
        http_client = _recording(create_mcp_http_client(headers=headers))
        transport = streamable_http_client(plan["url"], http_client=http_client)
    try:
        if V2:
            async with Client(transport, read_timeout_seconds=timeout) as client:
                out.update(connected=True, protocol_version=client.protocol_version,
                           server=_dump(client.server_info))  # fmt: skip
                await _steps(client, plan.get("steps", []), out)
        else:
            async with transport as streams:
                read, write = streams[0], streams[1]
                async with ClientSession(read, write, read_timeout_seconds=timedelta(seconds=timeout)) as session:
                    init = await session.initialize()
                    out.update(connected=True, protocol_version=init.protocolVersion, server=_dump(init.serverInfo))
                    await _steps(session, plan.get("steps", []), out)
    except BaseException as error:  # noqa: BLE001 - a crashed session is a finding, not a crash of the driver
        if isinstance(error, KeyboardInterrupt):
            raise
        out.setdefault("connected", False)
        out["session_error"] = _describe(error)
    for entry in EXCHANGES:
        entry.pop("_id", None)
    return out


def main() -> int:
    plan = json.loads(sys.argv[1])
    out = anyio.run(run, plan)
    sys.stdout.write(json.dumps(out, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
