"""An MCP server on Python `mcp` 2.3.0 (`MCPServer`), Streamable HTTP at /mcp.

It speaks the stateless 2026-07-28 protocol to clients that probe
`server/discover` (Python mcp 2.x) and the initialize handshake to older
ones, so the client suite sees the newest wire format (`Mcp-Method`,
`Mcp-Name`, no session) go through the filter. One tool has a non-ASCII
name, which a 2.x client sends as a base64 `=?base64?...?=` Mcp-Name.

    .venv-mcp2/bin/python tests/clients/modern_server.py --port PORT
"""

from __future__ import annotations

import argparse

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

NON_ASCII_TOOL = "grüßen"

server = MCPServer("mcp-policy-modern-test-server")


@server.tool(description="Echoes back the input string")
def echo(message: str) -> str:
    return f"Echo: {message}"


@server.tool(name="get-sum", description="Returns the sum of two numbers")
def get_sum(a: float, b: float) -> str:
    return f"The sum of {a:g} and {b:g} is {a + b:g}."


@server.tool(name="get-tiny-image", description="Denied by the test policy")
def get_tiny_image() -> str:
    return "the policy should never let this run"


@server.tool(name="get-env", description="Hidden by the test policy")
def get_env() -> str:
    return "the policy should never let this run"


@server.tool(name=NON_ASCII_TOOL, description="A tool whose name is not ASCII")
def greet(name: str) -> str:
    return f"Grüß Gott, {name}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Behind Envoy the Host header is Envoy's address: no DNS-rebinding check.
    server.run(
        "streamable-http", host="127.0.0.1", port=args.port,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )  # fmt: skip


if __name__ == "__main__":
    main()
