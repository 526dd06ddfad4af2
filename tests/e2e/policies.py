"""The policies the end-to-end tests run the filter with.

Most tests use MAIN, which has no rate limits, so tests can call allowed
tools as often as they like. The seed policy (the product's reference
configuration) caps `claude_code_session` at 10 calls a minute, so tests
using it keep count (`PolicyProxy.allowed_budget`).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SEED_POLICY_PATH = REPO / "envoy" / "seed-policy.json"
SEED_POLICY_TEXT = SEED_POLICY_PATH.read_text(encoding="utf-8")
SEED_POLICY = json.loads(SEED_POLICY_TEXT)
SEED_RATE_LIMIT = 10

CLAUDE_CODE_REASON = "autonomous coding sessions need a human at the keyboard"
DELETE_REASON = "destroys data"

# Default deny; echo and claude_code_session allowed; two denials with
# reasons; secret_tool allowed by its rule but hidden (hidden wins).
MAIN: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "tools": {
        "claude_code_session": {"action": "allow"},
        "echo": {"action": "allow"},
        "secret_tool": {"action": "allow"},
        "claude_code": {"action": "deny", "reason": CLAUDE_CODE_REASON},
        "delete_everything": {"action": "deny", "reason": DELETE_REASON},
    },
    "hide": ["secret_tool"],
}

# Default allow: only the explicit denial and the hidden tool are refused.
ALLOW_BY_DEFAULT: dict[str, Any] = {
    "version": "1",
    "default": "allow",
    "tools": {"delete_everything": {"action": "deny", "reason": DELETE_REASON}},
    "hide": ["secret_tool"],
}


def with_settings(policy: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """A copy of `policy` with these `settings` entries added."""
    changed = copy.deepcopy(policy)
    changed.setdefault("settings", {}).update(settings)
    return changed
