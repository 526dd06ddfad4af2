"""The policy the client suite runs, and what it means for each server's tools.

One policy covers the three servers (their tool names do not overlap):
default deny; per server one plain allowed tool, one allowed tool with a
budget of 2 calls a day per grant (each client run presents a fresh grant,
so budgets never leak between runs, and a day window cannot roll over
between the second and third call of a run the way a minute could), one
denied tool with a reason, and one tool allowed by its rule but hidden.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

LIMIT = 2
DENY_REASON_IMAGE = "images are not for agents"
DENY_REASON_CODE = "autonomous coding sessions need a human at the keyboard"
NON_ASCII_TOOL = "grüßen"

_LIMITED = [{"counter": "client_suite_budget", "window": "day", "max": LIMIT, "scope": "grant"}]

POLICY: dict[str, Any] = {
    "version": "1",
    "description": "tests/clients: real MCP clients and servers through the filter",
    "default": "deny",
    "hide": ["get-env", "claude_code_reply"],
    "tools": {
        # server-everything (both transports) and tests/clients/modern_server.py
        "echo": {},
        "get-sum": {"limits": _LIMITED},
        "get-tiny-image": {"action": "deny", "reason": DENY_REASON_IMAGE},
        "get-env": {},
        NON_ASCII_TOOL: {},
        # demo/claude_code_server.py
        "claude_code_session": {},
        "claude_code_check": {"limits": _LIMITED},
        "claude_code": {"action": "deny", "reason": DENY_REASON_CODE},
        "claude_code_reply": {},
    },
}


def policy(error_style: str = "jsonrpc") -> dict[str, Any]:
    changed = copy.deepcopy(POLICY)
    if error_style != "jsonrpc":
        changed["settings"] = {"error_style": error_style}
    return changed


@dataclass(frozen=True)
class ServerSpec:
    """A server of the suite and what the policy makes of its tools."""

    kind: str  # harness.server_command kind
    path: str  # where clients connect
    visible: tuple[str, ...]  # tools/list through the filter, in order
    allowed: tuple[str, dict[str, Any], str]  # tool, arguments, text its answer contains
    limited: tuple[str, dict[str, Any]]
    denied: tuple[str, str]  # tool, reason
    hidden: str
    extra_allowed: tuple[tuple[str, dict[str, Any], str], ...] = field(default=())


EVERYTHING_TOOLS = dict(
    allowed=("echo", {"message": "hello through the filter"}, "Echo: hello through the filter"),
    limited=("get-sum", {"a": 2, "b": 3}),
    denied=("get-tiny-image", DENY_REASON_IMAGE),
    hidden="get-env",
)

SERVERS: dict[str, ServerSpec] = {
    "everything": ServerSpec("everything-http", "/mcp", ("echo", "get-sum"), **EVERYTHING_TOOLS),
    "demo": ServerSpec(
        "demo", "/mcp", ("claude_code_session", "claude_code_check"),
        allowed=("claude_code_session", {"action": "list"}, '"sessions"'),
        limited=("claude_code_check", {"action": "poll", "sessionId": "no-such-session"}),
        denied=("claude_code", DENY_REASON_CODE),
        hidden="claude_code_reply",
    ),  # fmt: skip
    "modern": ServerSpec(
        "modern", "/mcp", ("echo", "get-sum", NON_ASCII_TOOL), **EVERYTHING_TOOLS,
        extra_allowed=((NON_ASCII_TOOL, {"name": "Envoy"}, "Grüß Gott, Envoy"),),
    ),  # fmt: skip
    "everything-sse": ServerSpec("everything-sse", "/sse", (), **EVERYTHING_TOOLS),
}
