"""One Envoy + filter + policy in front of the recording upstream, as tests use it.

Every request a test sends carries a fresh marker (header `x-test-marker`,
and usually inside the body too), so the upstream's records can answer "did
any part of *this* request get through?" while other tests' traffic, earlier
or later, never interferes.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from assertions import assert_json_answer, assert_jsonrpc_error, same_id
from envoy_process import Envoy
from recording_upstream import MARKER_HEADER, RecordedRequest, RecordingUpstream

JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


def new_marker() -> str:
    return "mk-" + uuid.uuid4().hex


def call_message(name: Any, arguments: Any = None, request_id: Any = 1, **extra: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"name": name}
    if arguments is not None:
        params["arguments"] = arguments
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call", "params": params, **extra}


def to_bytes(body: bytes | str | dict | list) -> bytes:
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body, separators=(",", ":")).encode()


@dataclass
class PolicyProxy:
    envoy: Envoy
    upstream: RecordingUpstream
    mode: str  # header_mode: "hold" (upstream sees nothing) or "stream" (headers may go first)
    allowed_tool: str  # a tool the policy lets through, for "still serving" checks
    allowed_arguments: dict[str, Any]
    allowed_budget: int | None = None  # calls of allowed_tool the policy's rate limit permits
    allowed_calls: int = 0
    client: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.client = httpx.Client(base_url=self.envoy.url, timeout=15.0)

    @property
    def port(self) -> int:
        return self.envoy.port

    def close(self) -> None:
        self.client.close()

    # -- sending ---------------------------------------------------------

    def post(
        self,
        body: bytes | str | dict | list,
        *,
        path: str = "/mcp",
        method: str = "POST",
        headers: dict[str, str] | None = None,
        marker: str | None = None,
    ) -> httpx.Response:
        """Send one request over HTTP/1.1; every request is tagged with a marker header."""
        all_headers = {**JSON_HEADERS, MARKER_HEADER: marker or new_marker(), **(headers or {})}
        return self.client.request(method, path, content=to_bytes(body), headers=all_headers)

    def call(self, name: Any, arguments: Any = None, request_id: Any = 1, **kwargs: Any) -> httpx.Response:
        return self.post(call_message(name, arguments, request_id), **kwargs)

    # -- checks ------------------------------------------------------------

    def assert_forwarded(self, marker: str, body: bytes | str | dict | list | None = None) -> RecordedRequest:
        """The upstream received the whole request; byte-identical body when given."""
        received = self.upstream.wait_for(marker)
        if body is not None:
            assert received.body == to_bytes(body), f"body changed on the way:\n{received.body[:500]!r}"
        return received

    def assert_not_forwarded(self, marker: str) -> None:
        """No part of the request tagged `marker` reached the MCP server.

        Hold mode: the upstream saw nothing at all. Stream mode: it may have
        seen the headers (they go first), never a byte of the body.
        """
        seen = self.upstream.matching(marker)
        if self.mode == "hold":
            assert not seen, f"upstream saw a refused request: {[(r.method, r.path, r.body[:200]) for r in seen]}"
        for request in seen:
            assert not request.complete and request.body == b"", (
                f"upstream received the body of a refused request: {request.method} {request.path} "
                f"complete={request.complete} body={request.body[:200]!r}"
            )

    def assert_still_serves(self) -> None:
        """An allowed tools/call is answered by the upstream."""
        if self.allowed_budget is not None:
            assert self.allowed_calls < self.allowed_budget, "test design: rate limit budget of the allowed tool spent"
        self.allowed_calls += 1
        marker = new_marker()
        arguments = {**self.allowed_arguments}
        response = self.call(self.allowed_tool, arguments, request_id=marker, marker=marker)
        message = assert_json_answer(response, 200)
        assert same_id(message.get("id"), marker) and "result" in message, response.text
        self.assert_forwarded(marker)

    def assert_refused_and_alive(self, marker: str) -> None:
        """The refused request never reached the upstream, and the filter still serves.

        The allowed call goes first: once the upstream has it, anything the
        refused request (sent earlier) could have leaked has arrived too.
        """
        self.assert_still_serves()
        self.assert_not_forwarded(marker)

    def assert_outcomes_since(self, since: int, forwarded: list[str], refused: list[str]) -> None:
        """For many calls at once, among what the upstream received from record `since` on:
        each `forwarded` marker arrived complete, and no `refused` one did (one scan for all).

        Same meaning as assert_forwarded / assert_not_forwarded per marker, at
        the cost of one pass over the new records rather than one over all
        records per marker (which grows with the whole session's traffic).
        """
        records = self.upstream.requests()[since:]
        complete = {r.marker for r in records if r.complete}
        missing = [m for m in forwarded if m not in complete]
        assert not missing, f"{len(missing)} allowed calls never reached the upstream, e.g. {missing[:3]}"
        refused_set = set(refused)
        for r in records:
            if r.marker in refused_set:
                assert self.mode != "hold", f"upstream saw a refused request in hold mode: {r.method} {r.path} {r.body[:200]!r}"
                assert not r.complete and r.body == b"", f"upstream received the body of a refused request: {r.body[:200]!r}"
        bodies = b"\n".join(r.body for r in records)
        leaked = [m for m in refused if m.encode() in bodies]
        assert not leaked, f"refused calls leaked into upstream bodies: {leaked[:3]}"

    def assert_upstream_answered(self, response: httpx.Response, marker: str, request_id: Any = ...) -> Any:
        """The answer came from the upstream (a JSON-RPC result), not from the filter."""
        message = assert_json_answer(response, 200)
        assert "result" in message, response.text
        if request_id is not ...:
            assert same_id(message["id"], request_id), response.text
        self.assert_forwarded(marker)
        return message


def assert_refused_as(response: Any, status: int, code: int) -> None:
    """A local answer with this HTTP status and JSON-RPC code (for 4xx refusals)."""
    message = assert_json_answer(response, status)
    if isinstance(message, list):
        raise AssertionError(f"expected one error object, got an array: {message}")
    assert_jsonrpc_error(message, code, response=response)


def mcp_policy_stats(envoy: Envoy) -> dict[str, int]:
    """The filter's counters from Envoy's Prometheus endpoint, by name."""
    values = {}
    for line in envoy.admin_get("/stats/prometheus").splitlines():
        match = re.match(r"^(mcp_policy_\w+)\{\} (\d+)$", line)
        if match:
            values[match.group(1)] = int(match.group(2))
    return values
