"""An MCP server (Python mcp 1.x) that checks bearer tokens with the SDK's own middleware.

The SDK reads the credential as `header.lower().startswith("bearer ")` and
takes the rest as the token; the verifier then accepts any token of the form
`tok-<32 hex>` exactly (each test uses its own, so budgets never mix). The
tool `echo` answers the token it ran for, so a test knows whose call ran.
Stateless Streamable HTTP with JSON answers: one POST, one answer.
"""

from __future__ import annotations

import argparse
import re

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings

TOKEN = re.compile(r"tok-[0-9a-f]{32}")


class ExactTokens:
    async def verify_token(self, token: str) -> AccessToken | None:
        if TOKEN.fullmatch(token):
            return AccessToken(token=token, client_id="test", scopes=[])
        return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    server = FastMCP(
        "bearer-check",
        host="127.0.0.1",
        port=port,
        stateless_http=True,
        json_response=True,
        # Requests come through Envoy with its Host; not what this test is about.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        token_verifier=ExactTokens(),
        auth=AuthSettings(
            issuer_url="http://127.0.0.1:9/",
            resource_server_url=f"http://127.0.0.1:{port}/mcp",
            validate_token_resource=False,
        ),
    )

    @server.tool()
    def echo(text: str = "") -> str:
        access = get_access_token()
        return f"ran for {access.token if access else None}: {text}"

    server.run("streamable-http")


if __name__ == "__main__":
    main()
