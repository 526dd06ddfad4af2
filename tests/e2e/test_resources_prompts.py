"""`resources` and `prompts` sections: a denied resource or prompt never
reaches the server, and list answers (JSON and event streams) show only
what is allowed. Without the sections everything passes as before."""

from __future__ import annotations

import json

import pytest

from conftest import EnvoyPool, policy_for
from policy_proxy import new_marker

POLICY = {
    "version": "1",
    "default": "deny",
    "tools": {"echo": {}},
    "resources": {
        "demo://resource/static/document/*": {},
        "demo://resource/static/document/secret.md": {"action": "deny", "reason": "not for agents"},
        "demo://resource/dynamic/*": {
            "limits": [{"counter": "rp_reads", "window": "day", "max": 1, "scope": "grant"}]
        },
    },
    "prompts": {"simple-*": {}, "complex-prompt": {"action": "deny"}},
}


def _read(uri: str, marker: str) -> dict:
    return {"jsonrpc": "2.0", "id": marker, "method": "resources/read", "params": {"uri": uri, "m": marker}}


def _get(name: str, marker: str) -> dict:
    return {"jsonrpc": "2.0", "id": marker, "method": "prompts/get", "params": {"name": name, "arguments": {"m": marker}}}


@pytest.fixture
def proxy(envoys: EnvoyPool, mode: str):
    return envoys.proxy(policy_for(POLICY, mode), mode)


@pytest.mark.parametrize(
    "body",
    [
        lambda m: _read("demo://resource/static/document/secret.md", m),
        lambda m: _read("file:///etc/passwd", m),
        lambda m: {**_read("demo://resource/static/document/secret.md", m), "method": "resources/subscribe"},
        lambda m: _get("complex-prompt", m),
        lambda m: _get("unlisted", m),
        # Smuggling: a batch, a notification, an escaped method, a case-variant key.
        lambda m: [_read("demo://resource/static/document/a.md", m), _read("file:///etc/passwd", m + "b")],
        lambda m: {k: v for k, v in _read("file:///etc/passwd", m).items() if k != "id"},
        lambda m: json.dumps(_read("file:///etc/passwd", m)).replace("resources/read", "resources\\/read"),
        lambda m: {**_read("demo://resource/static/document/a.md", m),
                   "params": {"uri": "demo://resource/static/document/a.md", "URI": "file:///etc/passwd", "m": m}},
    ],
    ids=["denied", "default", "subscribe", "prompt", "prompt-default", "batch", "notification", "escaped", "case"],
)
def test_refused_resources_and_prompts_never_reach_the_server(proxy, body) -> None:
    marker = new_marker()
    response = proxy.post(body(marker), marker=marker)
    assert response.status_code in (200, 400), response.text
    assert "result" not in response.text, response.text
    proxy.assert_refused_and_alive(marker)


def test_allowed_resources_and_prompts_are_forwarded(proxy) -> None:
    for body in (_read("demo://resource/static/document/a.md", "x"), _get("simple-prompt", "y")):
        marker = new_marker()
        body["id"] = marker
        proxy.assert_upstream_answered(proxy.post(body, marker=marker), marker, marker)


def test_resource_limits_count(envoys: EnvoyPool) -> None:
    proxy = envoys.proxy(policy_for(POLICY, "hold"), "hold")
    grant = {"authorization": "Bearer rp-" + new_marker()}
    marker = new_marker()
    ok = proxy.post(_read("demo://resource/dynamic/text/1", marker), marker=marker, headers=grant)
    proxy.assert_upstream_answered(ok, marker)
    marker = new_marker()
    refused = proxy.post(_read("demo://resource/dynamic/text/2", marker), marker=marker, headers=grant)
    assert refused.json()["error"]["code"] == -31002
    proxy.assert_not_forwarded(marker)


@pytest.mark.parametrize("sse", [False, True], ids=["json", "sse"])
def test_lists_show_only_what_is_allowed(proxy, sse: bool) -> None:
    headers = {"x-test-sse": "1"} if sse else {}
    seen = {}
    for method, member, key in [
        ("resources/list", "resources", "uri"),
        ("resources/templates/list", "resourceTemplates", "uriTemplate"),
        ("prompts/list", "prompts", "name"),
    ]:
        response = proxy.post({"jsonrpc": "2.0", "id": 7, "method": method}, headers=headers)
        text = response.text
        if sse:
            assert response.headers["content-type"].startswith("text/event-stream")
            text = next(line[len("data: "):] for line in text.splitlines() if line.startswith("data: {"))
        seen[member] = [entry[key] for entry in json.loads(text)["result"][member]]
    assert seen["resources"] == ["demo://resource/static/document/architecture.md"]
    assert seen["resourceTemplates"] == ["demo://resource/dynamic/text/{id}"]
    assert seen["prompts"] == ["simple-prompt"]


def test_without_sections_resources_and_prompts_pass(envoys: EnvoyPool) -> None:
    policy = {"version": "1", "default": "deny", "tools": {"echo": {}}}
    proxy = envoys.proxy(policy_for(policy, "hold"), "hold")
    marker = new_marker()
    proxy.assert_upstream_answered(proxy.post(_read("file:///etc/passwd", marker), marker=marker), marker)
    response = proxy.post({"jsonrpc": "2.0", "id": 1, "method": "prompts/list"})
    assert len(response.json()["result"]["prompts"]) == 3
