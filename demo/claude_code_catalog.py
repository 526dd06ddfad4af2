"""The Claude Code MCP server's tool catalog, as MCP `Tool` JSON.

The real server (xihuai18/claude-code-mcp 2.0.1) speaks stdio only and is not
installable here, so the demo server and the tests' recording upstream both
announce this imitation of its catalog: same tool names, same required
arguments and enums, so policies and tests use real names and shapes.

Annotations follow the catalog's risk column. MCP hints have no "execute"
class: a tool that starts an autonomous coding agent may change or delete
anything, so Execute tools are marked not read-only, destructive and
open-world; a tool that is Read for some actions and Destructive for others
takes the most severe class (destructive).
"""

from __future__ import annotations

import copy
from typing import Any

_SESSION_ID = {"type": "string", "description": "Session ID returned by claude_code."}
_TIMEOUT_MS = {"type": "integer", "minimum": 1}
_STRINGS = {"type": "array", "items": {"type": "string"}}

CLAUDE_CODE_TOOLS: list[dict[str, Any]] = [
    {
        "name": "claude_code",
        "title": "Start a Claude Code session",
        "description": (
            "Start an autonomous Claude Code coding session in the background. "
            "Returns {sessionId, status: 'running', pollInterval}; poll it with claude_code_check."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "prompt": {"type": "string", "description": "The task for Claude Code."},
                "cwd": {"type": "string", "description": "Working directory."},
                "allowedTools": {**_STRINGS, "description": "Tools Claude Code may use without asking."},
                "disallowedTools": {**_STRINGS, "description": "Tools Claude Code must not use."},
                "maxTurns": {"type": "integer", "exclusiveMinimum": 0},
                "model": {"type": "string"},
                "systemPrompt": {
                    "anyOf": [
                        {"type": "string"},
                        {
                            "type": "object",
                            "properties": {
                                "type": {"const": "preset"},
                                "preset": {"const": "claude_code"},
                                "append": {"type": "string"},
                            },
                            "required": ["type", "preset"],
                            "additionalProperties": False,
                        },
                    ]
                },
                "permissionRequestTimeoutMs": _TIMEOUT_MS,
                "advanced": {
                    "type": "object",
                    "properties": {
                        "tools": _STRINGS,
                        "agents": {"type": "object"},
                        "maxBudgetUsd": {"type": "number", "exclusiveMinimum": 0},
                        "effort": {"enum": ["low", "medium", "high", "max"]},
                        "mcpServers": {"type": "object"},
                        "sandbox": {"type": "object"},
                        "env": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                },
            },
            "required": ["prompt"],
            "additionalProperties": False,
        },
        "annotations": {
            "title": "Start a Claude Code session",
            "readOnlyHint": False,
            "destructiveHint": True,
            "idempotentHint": False,
            "openWorldHint": True,
        },
    },
    {
        "name": "claude_code_reply",
        "title": "Continue a Claude Code session",
        "description": "Send a follow-up prompt to an existing session (optionally forking it).",
        "inputSchema": {
            "type": "object",
            "properties": {
                "sessionId": _SESSION_ID,
                "prompt": {"type": "string"},
                "forkSession": {"type": "boolean"},
                "sessionInitTimeoutMs": _TIMEOUT_MS,
                "permissionRequestTimeoutMs": _TIMEOUT_MS,
                "diskResumeConfig": {"type": "object"},
            },
            "required": ["sessionId", "prompt"],
            "additionalProperties": False,
        },
        "annotations": {
            "title": "Continue a Claude Code session",
            "readOnlyHint": False,
            "destructiveHint": True,
            "idempotentHint": False,
            "openWorldHint": True,
        },
    },
    {
        "name": "claude_code_session",
        "title": "List, inspect or cancel sessions",
        "description": (
            "Manage sessions: action 'list' (all sessions), 'get' (one session), "
            "'cancel' (halts in-progress work)."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "action": {"enum": ["list", "get", "cancel"]},
                "sessionId": {**_SESSION_ID, "description": "Required for get and cancel."},
                "includeSensitive": {"type": "boolean"},
            },
            "required": ["action"],
            "additionalProperties": False,
        },
        "annotations": {
            "title": "List, inspect or cancel sessions",
            "readOnlyHint": False,  # list/get read, cancel destroys in-progress work
            "destructiveHint": True,
            "idempotentHint": True,
            "openWorldHint": False,
        },
    },
    {
        "name": "claude_code_check",
        "title": "Poll a session or answer its permission request",
        "description": (
            "action 'poll': new events of a session since cursor. action 'respond_permission': "
            "allow or deny a pending tool-permission request (interrupt=true stops the session)."
        ),
        "inputSchema": {
            "type": "object",
            "properties": {
                "action": {"enum": ["poll", "respond_permission"]},
                "sessionId": _SESSION_ID,
                "cursor": {"type": "integer", "minimum": 0},
                "responseMode": {"enum": ["minimal", "full"]},
                "maxEvents": {"type": "integer", "minimum": 1},
                "requestId": {"type": "string"},
                "decision": {"enum": ["allow", "deny"]},
                "denyMessage": {"type": "string"},
                "interrupt": {"type": "boolean"},
                "pollOptions": {"type": "object"},
                "permissionOptions": {"type": "object"},
            },
            "required": ["action", "sessionId"],
            "additionalProperties": False,
        },
        "annotations": {
            "title": "Poll a session or answer its permission request",
            "readOnlyHint": False,  # poll reads; respond_permission + interrupt stops a session
            "destructiveHint": True,
            "idempotentHint": False,
            "openWorldHint": False,
        },
    },
]

TOOL_NAMES = [tool["name"] for tool in CLAUDE_CODE_TOOLS]


def catalog() -> list[dict[str, Any]]:
    """A fresh deep copy, so callers may add to it without touching the original."""
    return copy.deepcopy(CLAUDE_CODE_TOOLS)
