"""The policy as plugin configuration: a bad one stops Envoy, with a useful log line.

A typo in a policy must never silently become "allow" (or "deny all"): the
filter refuses the configuration, Envoy (fail_open false) refuses to start,
and the log says where the problem is, what was found and what was expected.
Also checks that the policy text reaches the filter exactly as rendered.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from conftest import EnvoyPool
from policies import MAIN, SEED_POLICY_TEXT

BASE: dict[str, Any] = {"version": "1", "default": "deny", "tools": {"echo": {"action": "allow"}}}


def _with(**changes: Any) -> dict[str, Any]:
    policy = json.loads(json.dumps(BASE))
    policy.update(changes)
    return policy


# (policy, strings the log must contain)
INVALID: dict[str, tuple[str | dict, list[str]]] = {
    "action-maybe": (_with(tools={"foo": {"action": "maybe"}}), ["policy.tools.foo.action", '"maybe"', '"allow"', '"deny"']),
    "default-permit": (_with(default="permit"), ["policy.default", '"permit"', '"allow"', '"deny"']),
    "version-2": (_with(version="2"), ["policy.version", '"2"', '"1"']),
    "version-number": (_with(version=1), ["policy.version"]),
    "tools-not-object": (_with(tools=["echo"]), ["policy.tools"]),
    "rule-not-object": (_with(tools={"echo": "allow"}), ["policy.tools.echo"]),
    "window-fortnight": (
        _with(tools={"echo": {"limits": [{"counter": "c", "window": "fortnight", "max": 1, "scope": "grant"}]}}),
        ["policy.tools.echo.limits", "window", '"fortnight"', '"minute"'],
    ),
    "max-negative": (
        _with(tools={"echo": {"limits": [{"counter": "c", "window": "minute", "max": -1, "scope": "grant"}]}}),
        ["policy.tools.echo.limits", "max"],
    ),
    "error-style-html": (_with(settings={"error_style": "html"}), ["policy.settings.error_style", '"html"', '"jsonrpc"']),
    "header-mode-eventually": (_with(settings={"header_mode": "eventually"}), ["policy.settings.header_mode", '"eventually"']),
    "max-body-bytes-string": (_with(settings={"max_body_bytes": "big"}), ["policy.settings.max_body_bytes"]),
    "hide-not-list": (_with(hide="secret_tool"), ["policy.hide"]),
    "reason-number": (_with(tools={"echo": {"action": "deny", "reason": 5}}), ["policy.tools.echo.reason"]),
    "ambiguous-patterns": (
        _with(tools={"delete_*": {"action": "deny"}, "*_report": {}}),
        ['policy.tools["*_report"]', 'pattern "delete_*" at policy.tools["delete_*"]', "same specificity"],
    ),
    "double-star-pattern": (_with(hide=["debug_**"]), ["policy.hide[0]", "invalid pattern"]),
    "not-json": ('{"version": "1", "default": ', []),
    "json-array": ("[]", []),
    "empty": ("", []),
}


@pytest.mark.parametrize("case", INVALID.keys())
def test_invalid_policy_stops_envoy(envoys: EnvoyPool, case: str) -> None:
    policy, expected = INVALID[case]
    code, listening, log = envoys.start_failing(policy)
    assert not listening, f"Envoy served with an invalid policy:\n{log[-3000:]}"
    assert code not in (None, 0), f"Envoy did not exit with an error (code {code}):\n{log[-3000:]}"
    missing = [text for text in expected if text not in log]
    assert not missing, f"log lacks {missing}:\n" + "\n".join(line for line in log.splitlines() if "wasm" in line)[-3000:]


def test_invalid_policy_log_line_shape(envoys: EnvoyPool) -> None:
    """The example of the contract, word for word."""
    _, _, log = envoys.start_failing(INVALID["action-maybe"][0])
    assert re.search(r'policy\.tools\.foo\.action: got "maybe", expected one of "allow", "deny"', log), log[-3000:]


VALID: dict[str, str | dict] = {
    "seed-verbatim": SEED_POLICY_TEXT,
    "main": MAIN,
    "every-setting": {
        "version": "1",
        "default": "allow",
        "tools": {
            "*": {"limits": [{"counter": "all", "window": "second", "max": 1000, "scope": "grant"}]},
            "a": {"action": "allow", "limits": [{"counter": "a", "window": "hour", "max": 5, "scope": "grant"}]},
            "b": {"action": "deny", "reason": "naïve 😀 \"quoted\" \\ reason"},
            "c": {"limits": [{"counter": "shared", "window": "day", "max": 3, "scope": "grant"}]},
            "d": {"limits": [{"counter": "shared", "window": "day", "max": 3, "scope": "grant"}]},
        },
        "hide": ["a", "zzz"],
        "settings": {"max_body_bytes": 65536, "error_style": "tool_result", "header_mode": "stream"},
    },
    "pretty-printed-with-crlf": json.dumps(MAIN, indent=4).replace("\n", "\r\n") + "\r\n",
}


@pytest.mark.parametrize("case", VALID.keys())
def test_valid_policy_starts(envoys: EnvoyPool, case: str) -> None:
    envoy = envoys.envoy(VALID[case], allow_on_headers_stop_iteration=None)
    assert envoy.process is not None and envoy.process.poll() is None


def test_policy_text_reaches_envoy_verbatim(envoys: EnvoyPool) -> None:
    """The YAML rendering must not alter the JSON: compare with Envoy's own config dump."""
    policy = VALID["every-setting"]
    text = json.dumps(policy, indent=1, ensure_ascii=False)
    envoy = envoys.envoy(text, allow_on_headers_stop_iteration=None)
    dump = json.loads(envoy.admin_get("/config_dump?resource=static_listeners"))
    assert text in list(_string_values(dump)), "policy text changed on its way into Envoy"


def _string_values(node: Any) -> Any:
    """Every string stored under a key named "value", anywhere in `node`."""
    if isinstance(node, dict):
        for key, child in node.items():
            if key == "value" and isinstance(child, str):
                yield child
            else:
                yield from _string_values(child)
    elif isinstance(node, list):
        for child in node:
            yield from _string_values(child)
