"""Intercept's own example policies (PolicyLayer/Intercept POLICY.md and its
test data, in tests/e2e/policies/intercept/, verbatim YAML) validate with the
CLI, render through `mcp-policy render envoy` (YAML in, the filter's JSON
out), load into the real Envoy and enforce what their source says: refusals
with the rule's `on_deny` text after `[INTERCEPT POLICY DENIED]`, budgets of
N calls per window, a daily spend cap counted by the charge's amount,
counters given back when the upstream call fails, hidden and unlisted tools.
The recording upstream must see exactly the allowed calls.

Intercept's windows are fixed UTC windows: a test that counts to a budget
first waits out a window about to end, so its calls fall in one window."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import envoy_config
from assertions import assert_json_answer, same_id
from conftest import EnvoyPool
from policy_proxy import PolicyProxy, new_marker
from test_approval import CLUSTER, ApprovalService, approver  # noqa: F401 (fixture)

CORPUS = Path(__file__).resolve().parent / "policies" / "intercept"
PREFIX = "[INTERCEPT POLICY DENIED] "


def rendered(name: str) -> str:
    """The filter configuration `mcp-policy render envoy` makes of a corpus file."""
    config = yaml.safe_load(envoy_config.cli_render(CORPUS / name, *envoy_config.COMMITTED_ARGS))
    return envoy_config.wasm_config(config)["configuration"]["value"]


def proxy_for(envoys: EnvoyPool, name: str, mode: str, tool: str, arguments: dict[str, Any]) -> PolicyProxy:
    # Hold mode from the VM settings, as envoy/envoy.yaml does: the policy stays verbatim.
    return envoys.proxy(
        rendered(name), mode, allowed_tool=tool, allowed_arguments=arguments,
        vm_settings={"header_mode": "hold"} if mode == "hold" else None,
    )  # fmt: skip


def wait_for_room(window_seconds: int, needed: float = 20.0) -> None:
    """Sleep past the current UTC window if fewer than `needed` seconds remain in it."""
    left = window_seconds - (time.time() % window_seconds)
    if left < needed:
        time.sleep(left + 0.5)


def allowed(proxy: PolicyProxy, tool: str, arguments: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    marker = new_marker()
    response = proxy.call(tool, {**arguments, "m": marker}, request_id=marker, marker=marker, headers=headers)
    return proxy.assert_upstream_answered(response, marker, marker)


def refused(proxy: PolicyProxy, tool: str, arguments: dict[str, Any], text: str, *, alive: bool = True) -> None:
    """Answered by the filter as Intercept answers: an isError result with `text`."""
    marker = new_marker()
    response = proxy.call(tool, {**arguments, "m": marker}, request_id=marker, marker=marker)
    message = assert_json_answer(response, 200)
    assert same_id(message.get("id"), marker), response.text
    result = message.get("result")
    assert isinstance(result, dict) and result.get("isError") is True, response.text
    assert result["content"] == [{"type": "text", "text": PREFIX + text}], response.text
    if alive:
        proxy.assert_refused_and_alive(marker)
    else:
        proxy.assert_not_forwarded(marker)


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.yaml")))
def test_every_example_validates_unedited(name: str) -> None:
    cli = envoy_config.cli_bin()
    result = subprocess.run([str(cli), "validate", str(CORPUS / name)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "valid" in result.stdout, result.stdout + result.stderr
    json.loads(rendered(name))


@pytest.mark.parametrize("name", sorted(p.name for p in CORPUS.glob("*.yaml")))
def test_canonical_form_loads_to_the_same_policy(name: str, tmp_path: Path) -> None:
    """`render --canonical` writes the model in today's vocabulary (counter
    `reason`s, `error_style: "intercept"`); written again, it is unchanged."""
    cli = str(envoy_config.cli_bin())

    def canonical(path: Path) -> str:
        result = subprocess.run([cli, "render", "--canonical", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        return result.stdout

    first = canonical(CORPUS / name)
    (tmp_path / "canonical.json").write_text(first, encoding="utf-8")
    assert canonical(tmp_path / "canonical.json") == first


# -- POLICY.md, "Complete examples: Stripe MCP server" --------------------------


@pytest.fixture
def stripe(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return proxy_for(envoys, "policy_md_stripe.yaml", mode, "list_customers", {})


def test_stripe_argument_rules_refuse_with_their_on_deny(stripe: PolicyProxy) -> None:
    refused(stripe, "create_charge", {"amount": 50001, "currency": "usd"}, "Single charge cannot exceed $500.00")
    refused(stripe, "create_charge", {"amount": 100, "currency": "gbp"}, "Only USD and EUR charges are permitted")
    # A missing amount fails `lte` (Intercept: a missing path fails its condition).
    refused(stripe, "create_charge", {"currency": "usd"}, "Single charge cannot exceed $500.00")
    refused(stripe, "create_refund", {"amount": 10001}, "Refunds over $100.00 require manual processing")
    refused(stripe, "delete_customer", {"customer": "cus_1"}, "Customer deletion is not permitted via AI agents")
    allowed(stripe, "create_refund", {"amount": 100})


def test_stripe_amounts_that_would_slip_past_are_refused(stripe: PolicyProxy) -> None:
    # A negative charge would lower Intercept's spend counter; here it is refused.
    refused(
        stripe, "create_charge", {"amount": -50000, "currency": "usd"},
        'limit "create_charge.daily_spend" counts argument args.amount, which must be a number >= 0',
    )  # fmt: skip
    # A number as a string, an amount only a case-folding server reads, a
    # number too large for a double: the cap cannot be judged, so it refuses.
    for arguments in (
        {"amount": "99999999", "currency": "usd"},
        {"Amount": 99999999, "currency": "usd"},
    ):
        refused(stripe, "create_charge", arguments, "Single charge cannot exceed $500.00")
    marker = new_marker()
    body = '{"jsonrpc":"2.0","id":"%s","method":"tools/call","params":{"name":"create_charge","arguments":{"amount":1e400,"currency":"usd"}}}' % marker
    response = stripe.post(body, marker=marker)
    assert PREFIX + "Single charge cannot exceed $500.00" in response.text, response.text
    stripe.assert_refused_and_alive(marker)


def test_stripe_daily_spend_is_counted_by_the_charged_amount(stripe: PolicyProxy) -> None:
    wait_for_room(86_400)
    # $10,000.00 a day in cents: twenty charges of $500.00 fill it exactly.
    for _ in range(20):
        allowed(stripe, "create_charge", {"amount": 50000, "currency": "eur"})
    refused(stripe, "create_charge", {"amount": 1, "currency": "usd"}, "Daily spending cap of $10,000.00 reached")
    # A zero charge still fits (the counter is at the cap, not over it).
    allowed(stripe, "create_charge", {"amount": 0, "currency": "usd"})


# -- POLICY.md, "Complete examples: GitHub MCP server" --------------------------


@pytest.fixture
def github(envoys: EnvoyPool, mode: str) -> PolicyProxy:
    return proxy_for(envoys, "policy_md_github.yaml", mode, "get_me", {})


def test_github_hidden_and_denied_tools(github: PolicyProxy) -> None:
    refused(github, "transfer_repository", {"repo": "r"}, 'Tool "transfer_repository" is hidden by policy')
    refused(github, "delete_repository", {"repo": "r"}, "Repository deletion is not permitted via AI agents")


def test_github_three_pull_requests_an_hour(github: PolicyProxy) -> None:
    wait_for_room(3600)
    for _ in range(3):
        allowed(github, "create_pull_request", {"title": "t"})
    refused(github, "create_pull_request", {"title": "t"}, "Hourly limit of 3 new pull requests reached")


def test_github_failed_calls_give_their_budget_back(github: PolicyProxy) -> None:
    wait_for_room(3600)
    failing = {"x-test-jsonrpc-error": "1"}
    for _ in range(3):
        marker = new_marker()
        response = github.call("create_issue", {"m": marker}, request_id=marker, marker=marker, headers=failing)
        message = assert_json_answer(response, 200)
        assert message["error"]["message"] == "upstream failed", response.text
        github.assert_forwarded(marker)
    # The three failures cost nothing: the five-an-hour budget is whole.
    for _ in range(5):
        allowed(github, "create_issue", {"title": "t"})
    refused(github, "create_issue", {"title": "t"}, "Hourly limit of 5 new issues reached")


# -- Intercept's test data: default deny with a global shorthand limit ----------


def test_default_deny_and_sixty_calls_a_minute(envoys: EnvoyPool, mode: str) -> None:
    proxy = proxy_for(envoys, "testdata_default_deny_policy.yaml", mode, "read_file", {"path": "a"})
    wait_for_room(60, needed=40.0)
    refused(proxy, "write_file", {"path": "a"}, 'Tool "write_file" is not permitted by policy')
    refused(proxy, "delete_customer", {}, "Customer deletion is not permitted")
    # Refused calls take nothing; the two liveness checks above took two.
    for _ in range(60 - proxy.allowed_calls):
        allowed(proxy, "read_file", {"path": "a"})
    refused(proxy, "read_file", {"path": "a"}, "Rate limit of 60 per minute reached. Try again later.", alive=False)


def test_scaffold_lists_tools_and_lets_them_through(envoys: EnvoyPool, mode: str) -> None:
    proxy = proxy_for(envoys, "scaffold_stripe.yaml", mode, "list_customers", {})
    allowed(proxy, "create_customer", {"name": "n"})
    allowed(proxy, "some_unlisted_tool", {})


def test_hide_example_refuses_every_hidden_tool(envoys: EnvoyPool, mode: str) -> None:
    proxy = proxy_for(envoys, "policy_md_hide.yaml", mode, "create_issue", {})
    for tool in ("delete_repository", "list_webhooks", "transfer_repository"):
        refused(proxy, tool, {}, f'Tool "{tool}" is hidden by policy')


# -- POLICY.md (PR #3), "Approval rules" -------------------------------------------------


def test_require_approval_asks_only_when_its_conditions_hold(envoys: EnvoyPool, mode: str, approver: ApprovalService) -> None:
    proxy = envoys.proxy(
        rendered("approval_rule.yaml"), mode, allowed_tool="create_charge", allowed_arguments={"amount": 1},
        vm_settings={"header_mode": "hold"} if mode == "hold" else None, extra_clusters=((CLUSTER, approver.port),),
    )  # fmt: skip
    small = new_marker()
    allowed_answer = proxy.call("create_charge", {"_m": small, "amount": 100}, request_id=small, marker=small)
    proxy.assert_upstream_answered(allowed_answer, small, small)
    assert approver.asked_about(small) == [], "a call below the threshold was sent for approval"

    yes = new_marker()
    approver.script(yes, "allow")
    answer = proxy.call("create_charge", {"_m": yes, "amount": 60000}, request_id=yes, marker=yes)
    proxy.assert_upstream_answered(answer, yes, yes)
    [asked] = approver.asked_about(yes)
    question = asked.json()
    assert question["reason"] == "Charges over $500.00 require human approval", question
    assert question["rule"] == "tools.create_charge.rules.large charge approval", question

    no = new_marker()
    approver.script(no, "deny")
    response = proxy.call("create_charge", {"_m": no, "amount": 60000}, request_id=no, marker=no)
    result = assert_json_answer(response, 200)["result"]
    assert result["isError"] is True and result["content"][0]["text"].startswith(PREFIX), response.text
    proxy.assert_refused_and_alive(no)
