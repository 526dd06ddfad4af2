"""Respellings the official SDK servers accept as one token share one budget.

Each server checks bearer tokens with its SDK's own code: Python mcp's
`BearerAuthBackend` (`lower().startswith("bearer ")`, the rest is the
token) and the TypeScript SDK's `requireBearerAuth` (`split(' ')`, the
second word is the token). First each spelling goes straight to the server,
to learn which ones it takes as the token; then all of them go through
Envoy + the filter under a limit of 3 per grant: the server may run at
most 3 calls for that token in all, over HTTP/1.1 or HTTP/2, and the
spellings the filter refuses (400) never reach it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EnvoyPool, start_server

from assertions import assert_http_error, parse_json
from raw_http import H2Request, RawResponse, h2_exchange, http1_exchange, http1_request, jsonrpc_bytes

MAX = 3
POLICY = {
    "version": "1",
    "default": "deny",
    "tools": {"echo": {"limits": [{"counter": "per_grant", "window": "day", "max": MAX, "scope": "grant"}]}},
}
HEADERS = [("content-type", "application/json"), ("accept", "application/json, text/event-stream")]


def spellings(token: str, protocol: str) -> list[str]:
    found = [f"Bearer {token}", f"bearer {token}", f"BEARER {token}", f"bEaReR {token}", f"Bearer {token} anything",
             f"Bearer  {token}", f"Bearer\t{token}", f"Bearer {token},"]  # fmt: skip
    if protocol == "h2":  # HTTP/1 parsers (Envoy's included) strip these; HTTP/2 carries them to the filter
        found += [f"Bearer {token} ", f"Bearer {token}\t", f" bearer {token}"]
    return found


def call(port: int, protocol: str, authorization: str, request_id: int) -> RawResponse:
    body = jsonrpc_bytes({"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
                          "params": {"name": "echo", "arguments": {}}})  # fmt: skip
    headers = [*HEADERS, ("authorization", authorization)]
    if protocol == "h2":
        [answer] = h2_exchange(port, [H2Request(headers=headers, body_parts=[body])], validate_headers=False)
    else:
        [answer] = http1_exchange(port, http1_request("POST", "/mcp", headers, body))
    return answer


def ran_for(answer: RawResponse) -> str | None:
    """The token the server ran the call for, or None if it did not run it."""
    if answer.status != 200:
        return None
    message = parse_json(answer.body)
    if "result" not in message:
        return None
    text = message["result"]["content"][0]["text"]
    return text.removeprefix("ran for ").split(":")[0].strip()


@pytest.fixture(scope="module", params=["bearer-py", "bearer-ts"])
def server(request: pytest.FixtureRequest, logs: Path) -> Iterator[int]:
    yield from start_server(request.param, logs)


@pytest.mark.parametrize("protocol", ["http1", "h2"])
def test_spellings_the_server_accepts_share_one_budget(server: int, envoys: EnvoyPool, mode: str, protocol: str) -> None:
    token = "tok-" + uuid.uuid4().hex
    tried = spellings(token, protocol)
    # What the server itself takes as this token (straight to it, HTTP/1.1:
    # the hop Envoy uses; surrounding whitespace arrives stripped there).
    accepted = [s for i, s in enumerate(tried) if ran_for(call(server, "http1", s, i)) == token]
    assert len(accepted) > MAX, f"the server accepts only {accepted!r}: nothing to show"

    envoy = envoys.get(POLICY, server, mode)
    ran = []
    for index, spelling in enumerate(tried):
        answer = call(envoy.port, protocol, spelling, index)
        who = ran_for(answer)
        if who is not None:
            assert who == token, (spelling, who)
            ran.append(spelling)
        elif spelling not in accepted or answer.status == 400:
            if answer.status == 400:
                assert_http_error(answer, 400, -32600, null_id=True)
        else:
            message = parse_json(answer.body)
            assert message["error"]["code"] == -31002, (spelling, answer.status, answer.text)
    assert len(ran) == MAX, f"the server ran {len(ran)} calls for one token under a cap of {MAX}: {ran!r}"
    # The spellings the filter refuses as malformed (a second word, which
    # the TypeScript SDK accepts) never ran.
    assert f"Bearer {token} anything" not in ran
