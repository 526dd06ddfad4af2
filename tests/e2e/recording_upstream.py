"""A recording upstream: a minimal MCP server that remembers every request.

The point of the filter is what the MCP server never sees, so every test that
expects a refusal asks this server whether any byte of that request arrived.
It therefore records *everything*, parseable or not, and it records the
moment the request headers arrived separately from the moment the body was
complete: in header_mode "stream" Envoy forwards the headers of a request
before the filter has decided, and a refused request must then never deliver
its body (the upstream stream is reset instead).

It answers like a small Streamable HTTP MCP server:
- `initialize` with an `Mcp-Session-Id` header;
- `tools/list` with the Claude Code catalog plus a few extra tools, as
  `application/json`, or as `text/event-stream` when the path has `?sse=1` or
  the header `x-test-sse: 1` is present (`x-test-sse: prime` first sends an
  SSE priming event with empty data, as 2025-11-25 servers do);
- `tools/call` with a result echoing the tool name and arguments;
- `ping` and any other request with `{}`; notifications and responses 202;
- batches with an array of the answers; anything that is not JSON 200 `{}`.
`x-test-sse: notify` sends a `notifications/message` event before the answer.
`x-test-chunked-response: 1` makes it send a JSON answer chunked instead of
with Content-Length. `x-test-compress: gzip` makes it gzip the answer when
the request's Accept-Encoding allows gzip, as compression middleware does.
`x-test-jsonrpc-error: 1` makes it answer a `tools/call` with a JSON-RPC error
(a failed call, for refund tests).
"""

from __future__ import annotations

import gzip
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "demo"))

from claude_code_catalog import catalog  # noqa: E402

MARKER_HEADER = "x-test-marker"

EXTRA_TOOLS: list[dict[str, Any]] = [
    {
        "name": "echo",
        "description": "Echo the arguments back.",
        "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}}},
        "annotations": {"readOnlyHint": True},
    },
    {
        "name": "delete_everything",
        "description": "Delete every file the server can reach.",
        "inputSchema": {"type": "object", "properties": {}},
        "annotations": {"readOnlyHint": False, "destructiveHint": True},
    },
    {
        "name": "secret_tool",
        "description": "A tool the policies hide.",
        "inputSchema": {"type": "object", "properties": {}},
    },
    {
        "name": "read_notes",
        "description": "Read the notes (read-only by its annotations).",
        "inputSchema": {"type": "object", "properties": {}},
        "annotations": {"readOnlyHint": True, "destructiveHint": False},
    },
    {
        "name": "edit_note",
        "description": "Change a note: writes, but destroys nothing (by its annotations).",
        "inputSchema": {"type": "object", "properties": {}},
        "annotations": {"readOnlyHint": False, "destructiveHint": False},
    },
    {
        # Differs from an allowed tool only in case: must not pass as it.
        "name": "Claude_Code_Session",
        "description": "Case variant of claude_code_session.",
        "inputSchema": {"type": "object", "properties": {}},
    },
]


def upstream_tools() -> list[dict[str, Any]]:
    """Every tool the recording upstream announces, in announcement order."""
    return catalog() + [dict(tool) for tool in EXTRA_TOOLS]


# Parts of the tools/list result besides `tools`: the filter must keep them.
TOOLS_LIST_EXTRAS = {"nextCursor": "page-2", "_meta": {"recorder": "kept"}}


@dataclass
class RecordedRequest:
    """One request as the upstream saw it, filled in while it arrives."""

    seq: int
    method: str
    path: str
    headers: list[tuple[str, str]]
    headers_at: float
    body: bytes = b""  # bytes received so far (de-chunked)
    complete: bool = False  # the whole body arrived
    aborted: bool = False  # the connection ended before the body did
    completed_at: float | None = None
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def marker(self) -> str | None:
        return self.header(MARKER_HEADER)


class RecordingUpstream:
    """Threaded HTTP/1.1 server on 127.0.0.1 with a list of what it received."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._requests: list[RecordedRequest] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.upstream = self  # type: ignore[attr-defined]
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="recording-upstream", daemon=True)

    def start(self) -> RecordingUpstream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- recording (called by the handler threads) -------------------------

    def _new(self, method: str, path: str, headers: list[tuple[str, str]]) -> RecordedRequest:
        with self._lock:
            request = RecordedRequest(len(self._requests), method, path, headers, time.monotonic())
            self._requests.append(request)
            self._lock.notify_all()
            return request

    def _update(self, request: RecordedRequest, **changes: Any) -> None:
        with self._lock:
            for key, value in changes.items():
                setattr(request, key, value)
            self._lock.notify_all()

    # -- queries (called by tests) -----------------------------------------

    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def count(self) -> int:
        with self._lock:
            return len(self._requests)

    def matching(self, marker: str) -> list[RecordedRequest]:
        """Requests carrying `marker` in their marker header or anywhere in their body."""
        needle = marker.encode()
        with self._lock:
            return [r for r in self._requests if r.marker == marker or needle in r.body]

    def wait_for(self, marker: str, *, complete: bool = True, timeout: float = 10.0) -> RecordedRequest:
        """The first request with `marker` (whose body is complete, by default)."""
        deadline = time.monotonic() + timeout
        needle = marker.encode()
        with self._lock:
            while True:
                for r in self._requests:
                    if (r.marker == marker or needle in r.body) and (r.complete or not complete):
                        return r
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"upstream never received a complete request with marker {marker}")
                self._lock.wait(left)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Envoy's connection pool expects
    server_version = "recording-upstream"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # tests inspect the records, not a log

    @property
    def upstream(self) -> RecordingUpstream:
        return self.server.upstream  # type: ignore[attr-defined]

    def _handle(self) -> None:
        request = self.upstream._new(self.command, self.path, list(self.headers.items()))
        try:
            self._read_body(request)
        except (OSError, ValueError):
            self.upstream._update(request, aborted=True)
            self.close_connection = True
            return
        if not request.complete:
            self.upstream._update(request, aborted=True)
            self.close_connection = True
            return
        status, headers, body, chunked = _answer(request)
        if body and request.header("x-test-compress") == "gzip" and "gzip" in (request.header("accept-encoding") or ""):
            body = gzip.compress(body)
            headers = {**headers, "Content-Encoding": "gzip"}
        self._respond(status, headers, body, chunked)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _handle  # noqa: N815

    def _read_body(self, request: RecordedRequest) -> None:
        if "chunked" in (request.header("transfer-encoding") or "").lower():
            while True:
                size_line = self.rfile.readline(65537)
                if not size_line:
                    return
                size = int(size_line.split(b";")[0].strip(), 16)
                if size == 0:
                    trailers = []
                    while True:
                        line = self.rfile.readline(65537)
                        if line in (b"\r\n", b"\n", b""):
                            break
                        key, _, value = line.decode("latin-1").partition(":")
                        trailers.append((key.strip(), value.strip()))
                    self.upstream._update(request, trailers=trailers)
                    break
                if not self._read_exact(request, size):
                    return
                self.rfile.readline(3)  # CRLF after the chunk
        else:
            if not self._read_exact(request, int(request.header("content-length") or 0)):
                return
        self.upstream._update(request, complete=True, completed_at=time.monotonic())

    def _read_exact(self, request: RecordedRequest, size: int) -> bool:
        while size > 0:
            data = self.rfile.read1(min(size, 65536))  # type: ignore[attr-defined]
            if not data:
                return False
            self.upstream._update(request, body=request.body + data)
            size -= len(data)
        return True

    def _respond(self, status: int, headers: dict[str, str], body: bytes, chunked: bool) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            # Two chunks, flushed apart: the filter must reassemble answers.
            middle = len(body) // 2
            for part in (body[:middle], body[middle:]):
                if part:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                    self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.wfile.flush()


def _answer(request: RecordedRequest) -> tuple[int, dict[str, str], bytes, bool]:
    """Status, headers, body and chunking of the upstream's answer to `request`."""
    json_headers = {"Content-Type": "application/json"}
    chunked = request.header("x-test-chunked-response") == "1"
    if request.method == "GET":
        return 405, {"Allow": "POST, DELETE"}, b"", False
    if request.method == "DELETE" and not request.body:
        return 200, {}, b"", False
    try:
        message = json.loads(request.body)
    except (ValueError, RecursionError):
        return 200, json_headers, b"{}", chunked

    if isinstance(message, list):
        answers = [a for a in (_answer_one(m, request)[0] for m in message) if a is not None]
        if not answers:
            return 202, {}, b"", False
        return 200, json_headers, json.dumps(answers).encode(), chunked

    answer, extra_headers = _answer_one(message, request)
    if answer is None:
        return 202, {}, b"", False
    body = json.dumps(answer).encode()
    sse = request.header("x-test-sse")
    if isinstance(message, dict) and message.get("method") in LIST_METHODS and (sse or "sse=1" in request.path):
        events = b"event: message\ndata: " + body + b"\n\n"
        if sse == "prime":
            events = b"id: prime-0\ndata: \n\n" + events
        elif sse == "notify":
            log = {"jsonrpc": "2.0", "method": "notifications/message", "params": {"level": "info", "data": "listing"}}
            events = b"event: message\ndata: " + json.dumps(log).encode() + b"\n\n" + events
        return 200, {**extra_headers, "Content-Type": "text/event-stream", "Cache-Control": "no-cache"}, events, True
    return 200, {**json_headers, **extra_headers}, body, chunked


# Resources and prompts the upstream lists (names as server-everything's).
ITEM_LISTS: dict[str, dict[str, Any]] = {
    "resources/list": {
        "resources": [
            {"uri": "demo://resource/static/document/architecture.md", "name": "architecture.md"},
            {"uri": "demo://resource/static/document/secret.md", "name": "secret.md"},
            {"uri": "file:///etc/passwd", "name": "passwd"},
        ],
        "nextCursor": "page-2",
    },
    "resources/templates/list": {
        "resourceTemplates": [
            {"uriTemplate": "demo://resource/dynamic/text/{id}", "name": "dynamic text"},
            {"uriTemplate": "file:///{path}", "name": "any file"},
        ]
    },
    "prompts/list": {"prompts": [{"name": "simple-prompt"}, {"name": "complex-prompt"}, {"name": "resource-prompt"}]},
}
LIST_METHODS = {"tools/list", *ITEM_LISTS}


def _answer_one(message: Any, request: RecordedRequest) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """The answer to one JSON-RPC message (None for notifications/responses)."""
    if not isinstance(message, dict) or "id" not in message or "method" not in message:
        return None, {}
    method, params, msg_id = message["method"], message.get("params") or {}, message["id"]
    headers: dict[str, str] = {}
    if method == "initialize":
        headers["Mcp-Session-Id"] = uuid.uuid4().hex
        result: dict[str, Any] = {
            "protocolVersion": params.get("protocolVersion", "2025-06-18") if isinstance(params, dict) else "2025-06-18",
            "capabilities": {"tools": {"listChanged": False}, "resources": {}, "prompts": {}, "logging": {}},
            "serverInfo": {"name": "recording-upstream", "version": "0"},
        }
    elif method == "tools/list":
        result = {"tools": upstream_tools(), **TOOLS_LIST_EXTRAS}
    elif method in ITEM_LISTS:
        result = ITEM_LISTS[method]
    elif method == "resources/read" and isinstance(params, dict):
        result = {"contents": [{"uri": params.get("uri"), "mimeType": "text/plain", "text": "read"}]}
    elif method == "prompts/get" and isinstance(params, dict):
        result = {"messages": [{"role": "user", "content": {"type": "text", "text": str(params.get("name"))}}]}
    elif method == "tools/call" and request.header("x-test-jsonrpc-error") == "1":
        # A failed call (refund tests): a JSON-RPC error, not an isError result.
        return {"jsonrpc": "2.0", "id": msg_id, "error": {"code": -32603, "message": "upstream failed"}}, headers
    elif method == "tools/call" and isinstance(params, dict):
        echo = {"name": params.get("name"), "arguments": params.get("arguments")}
        result = {
            "content": [{"type": "text", "text": json.dumps(echo)}],
            "structuredContent": echo,
            "isError": False,
        }
    else:
        result = {}
    return {"jsonrpc": "2.0", "id": msg_id, "result": result}, headers
