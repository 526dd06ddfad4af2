"""Resources and prompts through the official clients, Envoy + the filter,
to server-everything (which serves both).

The policy allows some documents, one resource template and two prompts,
denies one document and one prompt with a reason, and leaves the rest to
`default: deny`. Per client (TypeScript SDK, Python mcp 1.x and 2.x) and
header mode, on ONE session: the three lists show only what is allowed; an
allowed read and get work; each refused read and get raises the client's
MCP error type with -31001, the reason in its message and the filter's data;
the session keeps working. Between Envoy and the server sits
recording_proxy.py: the server never received a refused request (and did
receive the allowed ones, so the record is live); the filter's counters and
access log name each refusal.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import harness
from conftest import EnvoyPool, start_server

POLICY_DENIED = -31001
CLIENTS = ["ts", "py1", "py2"]

DOCS = "demo://resource/static/document/"
SECRET_DOC = DOCS + "architecture.md"
SECRET_REASON = "architecture notes are not for agents"
PROMPT_REASON = "prompts that embed resources are not for agents"
TEXT_TEMPLATE = "demo://resource/dynamic/text/{resourceId}"
BLOB_TEMPLATE = "demo://resource/dynamic/blob/{resourceId}"

POLICY: dict[str, Any] = {
    "version": "1",
    "default": "deny",
    "tools": {"echo": {}},
    "resources": {
        DOCS + "*": {},
        SECRET_DOC: {"action": "deny", "reason": SECRET_REASON},
        "demo://resource/dynamic/text/*": {},
    },
    "prompts": {
        "simple-prompt": {},
        "args-*": {},
        "resource-prompt": {"action": "deny", "reason": PROMPT_REASON},
    },
}

# (op, name, rule that refuses it, reason it gives); the rest are allowed.
REFUSED = [
    ("read_resource", SECRET_DOC, f"resources.{SECRET_DOC}", SECRET_REASON),
    ("read_resource", "demo://resource/dynamic/blob/1", "default", "not allowed by policy (default: deny)"),
    ("get_prompt", "resource-prompt", "prompts.resource-prompt", PROMPT_REASON),
    ("get_prompt", "completable-prompt", "default", "not allowed by policy (default: deny)"),
]
ALLOWED = [
    ("read_resource", DOCS + "instructions.md"),
    ("read_resource", "demo://resource/dynamic/text/1"),
    ("get_prompt", "simple-prompt"),
]


@pytest.fixture(scope="module")
def upstream(logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """server-everything behind the recording proxy: (proxy port, record file)."""
    record = tmp_path_factory.mktemp("record") / "requests.jsonl"
    record.touch()
    for server_port in start_server("everything-http", logs):
        port = harness.free_port()
        command = [str(harness.PY_MCP1), str(harness.RECORDING_PROXY), "--upstream",
                   f"http://127.0.0.1:{server_port}", "--port", str(port), "--record", str(record)]  # fmt: skip
        with harness.serving(command, port, logs / "recording-proxy.log") as ready:
            yield ready, record


def recorded(record: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines() if line]


def plan(url: str) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"op": "list_resources"}, {"op": "list_resource_templates"}, {"op": "list_prompts"}]
    for op, name in ALLOWED[:1]:
        steps.append({"op": op, "name": name})
    steps += [{"op": op, "name": name} for op, name, _, _ in REFUSED]
    steps += [{"op": op, "name": name} for op, name in ALLOWED]  # the session survived the refusals
    return {"url": url, "transport": "http", "timeout_ms": 10000, "headers": harness.grant(), "steps": steps}


def denied_count(envoy: Any) -> int:
    return envoy.stats("wasmcustom.mcp_policy.calls.denied").get("wasmcustom.mcp_policy.calls.denied", 0)


@pytest.mark.parametrize("client", CLIENTS)
def test_lists_reads_and_gets_through_each_client(
    client: str, mode: str, upstream: tuple[int, Path], envoys: EnvoyPool
) -> None:
    port, record = upstream
    envoy = envoys.get(POLICY, port, mode)
    denied_before = denied_count(envoy)
    run = harness.run_client(client, plan(envoy.url + "/mcp"))
    assert run.out.get("connected"), run.describe()

    resources, templates, prompts = run.step(0), run.step(1), run.step(2)
    assert resources["ok"] and templates["ok"] and prompts["ok"], run.describe()
    uris = [r["uri"] for r in resources["result"]["resources"]]
    assert DOCS + "instructions.md" in uris and SECRET_DOC not in uris, run.describe()
    assert all(uri.startswith(DOCS) for uri in uris), run.describe()
    assert [t["uriTemplate"] for t in templates["result"]["resourceTemplates"]] == [TEXT_TEMPLATE], run.describe()
    assert sorted(p["name"] for p in prompts["result"]["prompts"]) == ["args-prompt", "simple-prompt"], run.describe()

    first = run.step(3)
    assert first["ok"] and first["result"]["contents"][0]["uri"] == ALLOWED[0][1], run.describe()
    for step, (_, name, rule, reason) in zip(run.steps[4 : 4 + len(REFUSED)], REFUSED, strict=True):
        assert not step["ok"], f"{name} should have been refused:\n{run.describe()}"
        error = step["error"]
        assert error["type"] == harness.MCP_ERROR_TYPE[client], run.describe()
        assert error["code"] == POLICY_DENIED, run.describe()
        assert f'"{name}"' in error["message"] and reason in error["message"], run.describe()
        assert error["data"] == {"tool": name, "decision": "deny", "rule": rule, "reason": error["data"]["reason"]}
        assert reason in error["data"]["reason"], run.describe()
    after = run.steps[4 + len(REFUSED) :]
    assert all(step["ok"] for step in after), run.describe()
    assert after[0]["result"]["contents"][0]["uri"] == ALLOWED[0][1]
    assert after[1]["result"]["contents"][0]["uri"] == ALLOWED[1][1]
    assert after[2]["result"]["messages"], run.describe()

    # The server never saw a refused request; it saw the allowed ones.
    seen = recorded(record)
    asked = {(m["method"], (m["params"] or {}).get("uri") or (m["params"] or {}).get("name")) for m in seen}
    ops = {"read_resource": "resources/read", "get_prompt": "prompts/get"}
    for op, name, _, _ in REFUSED:
        assert (ops[op], name) not in asked, f"the server received {ops[op]} {name}"
    for op, name in ALLOWED:
        assert (ops[op], name) in asked, f"the record misses {ops[op]} {name}: {seen[-10:]}"
    # The filter counted each refusal and wrote its audit line.
    assert denied_count(envoy) - denied_before == len(REFUSED)
    audit = audit_lines(envoy)
    for _, name, rule, _ in REFUSED:
        assert any(a["tool"] == name and a["rule"] == rule and a["decision"] == "denied" for a in audit), audit


def audit_lines(envoy: Any) -> list[dict[str, Any]]:
    marker = "mcp-policy audit "
    return [json.loads(line.split(marker, 1)[1]) for line in envoy.log_text().splitlines() if marker in line]


def test_access_log_has_a_line_per_refusal(upstream: tuple[int, Path], envoys: EnvoyPool) -> None:
    """One access-log line per refused request, naming the URI or prompt and the rule."""
    port, _ = upstream
    envoy = envoys.get(POLICY, port, "hold")
    run = harness.run_client("py1", plan(envoy.url + "/mcp"))
    assert run.out.get("connected"), run.describe()
    deadline = time.monotonic() + 30  # Envoy flushes access logs on a timer
    while True:
        text = envoy.log_text()
        audit = audit_lines(envoy)
        missing = []
        for _, name, rule, _ in REFUSED:
            refused = sum(1 for a in audit if a["tool"] == name and a["decision"] == "denied")
            logged = text.count(f"mcp_decision=denied mcp_tool={name} mcp_rule={rule}\n")
            if refused == 0 or logged != refused:
                missing.append((name, refused, logged))
        if not missing:
            return
        if time.monotonic() > deadline:
            pytest.fail(f"access log lines (name, refused, logged): {missing}\n{envoy.log_tail()}")
        time.sleep(0.2)
