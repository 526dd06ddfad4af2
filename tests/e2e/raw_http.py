"""HTTP clients that send exactly the bytes and frames a test describes.

httpx normalises what it sends (Content-Length, one write per body); the
smuggling tests need chunk boundaries inside a tool name, pauses between
chunks, lying Content-Length headers, pipelined requests, and HTTP/2 request
trailers. These helpers write raw HTTP/1.1 on a socket and drive the `h2`
protocol library by hand.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import h2.config
import h2.connection
import h2.events

from assertions import parse_json


@dataclass
class RawResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    reset: bool = False  # HTTP/2: the stream was reset instead of answered
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def json(self) -> Any:
        return parse_json(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


# -- HTTP/1.1 ------------------------------------------------------------


def http1_exchange(
    port: int, parts: list[bytes], *, pause: float = 0.05, responses: int = 1, timeout: float = 10.0
) -> list[RawResponse]:
    """Send `parts` one write at a time, `pause` seconds apart, then read up to `responses` answers.

    The pause is the point of these tests (the filter must see the body
    arrive in several callbacks), not a wait for readiness.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for index, part in enumerate(parts):
            if index and pause:
                time.sleep(pause)
            try:
                sock.sendall(part)
            except OSError:
                break  # Envoy answered early and closed; read what it said
        reader = sock.makefile("rb")
        answers = []
        for _ in range(responses):
            answer = _read_response(reader)
            if answer is None:
                break
            answers.append(answer)
        return answers


def _read_response(reader: Any) -> RawResponse | None:
    while True:
        try:
            status_line = reader.readline(65536)
        except (TimeoutError, OSError):
            return None
        if not status_line:
            return None
        status = int(status_line.split()[1])
        headers = []
        while True:
            line = reader.readline(65536)
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            headers.append((key.strip(), value.strip()))
        if 100 <= status < 200:
            continue  # 100 Continue: the real answer follows
        break
    response = RawResponse(status, headers, b"")
    if "chunked" in (response.header("transfer-encoding") or "").lower():
        body = b""
        while True:
            size = int(reader.readline(65536).split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while reader.readline(65536) not in (b"\r\n", b"\n", b""):
                    pass
                break
            body += reader.read(size)
            reader.readline(3)
        response.body = body
    elif response.header("content-length") is not None:
        response.body = reader.read(int(response.header("content-length")))
    elif (response.header("connection") or "").lower() == "close":
        response.body = reader.read()
    return response


def http1_request(
    method: str, path: str, headers: list[tuple[str, str]], body: bytes, *, chunks: list[bytes] | None = None
) -> list[bytes]:
    """Wire bytes of one request: Content-Length framing, or chunked when `chunks` is given.

    Returned as a list of writes: the head, then one write per chunk.
    """
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    head += "".join(f"{key}: {value}\r\n" for key, value in headers)
    if chunks is None:
        if not any(key.lower() == "content-length" for key, _ in headers):
            head += f"Content-Length: {len(body)}\r\n"
        return [head.encode() + b"\r\n" + body]
    head += "Transfer-Encoding: chunked\r\n\r\n"
    writes = [head.encode()]
    writes += [b"%x\r\n%s\r\n" % (len(chunk), chunk) for chunk in chunks if chunk]
    writes.append(b"0\r\n\r\n")
    return writes


def simultaneous_posts(
    port: int, requests: list[tuple[list[tuple[str, str]], bytes]], *, path: str = "/mcp", timeout: float = 20.0
) -> list[RawResponse | str]:
    """POST each (headers, body) on its own connection, all released at the same instant.

    Every connection is open before any request is written; a barrier then
    lets all writers go at once, so the requests meet on Envoy's workers (the
    kernel spreads connections over them). `Connection: close`: no reuse.
    Returns, in order, each answer or a text saying what went wrong.
    """
    results: list[RawResponse | str] = ["not run"] * len(requests)
    barrier = threading.Barrier(len(requests), timeout=timeout)

    def one(index: int, headers: list[tuple[str, str]], body: bytes) -> None:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                wire = b"".join(http1_request("POST", path, [*headers, ("Connection", "close")], body))
                barrier.wait()
                sock.sendall(wire)
                answer = _read_response(sock.makefile("rb"))
                results[index] = answer if answer is not None else "connection closed without an answer"
        except Exception as error:  # noqa: BLE001 - reported in the results
            barrier.abort()
            results[index] = f"{type(error).__name__}: {error}"

    threads = [threading.Thread(target=one, args=(i, h, b), daemon=True) for i, (h, b) in enumerate(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    return results


# -- HTTP/2 (h2c, prior knowledge) ------------------------------------------


@dataclass
class H2Request:
    method: str = "POST"
    path: str = "/mcp"  # empty: no :scheme and :path (a CONNECT request)
    headers: list[tuple[str, str]] = field(default_factory=list)
    body_parts: list[bytes] = field(default_factory=list)
    trailers: list[tuple[str, str]] | None = None


def h2_exchange(
    port: int, requests: list[H2Request], *, pause: float = 0.0, timeout: float = 10.0, validate_headers: bool = True
) -> list[RawResponse]:
    """Send every request as a stream of one HTTP/2 connection; return the answers in order.

    Streams are opened together, so their bodies interleave on the wire.
    Each DATA part goes out as its own frame(s), `pause` seconds apart.
    `validate_headers=False` sends header values exactly as given (e.g.
    with surrounding whitespace, which `h2` refuses by default).
    """
    config = h2.config.H2Configuration(
        client_side=True, header_encoding="utf-8", validate_outbound_headers=validate_headers,
        normalize_outbound_headers=validate_headers,
    )  # fmt: skip
    conn = h2.connection.H2Connection(config=config)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        conn.initiate_connection()
        sock.sendall(conn.data_to_send())
        state: dict[int, RawResponse] = {}
        done: set[int] = set()
        ids = []
        for request in requests:
            stream_id = conn.get_next_available_stream_id()
            ids.append(stream_id)
            state[stream_id] = RawResponse(0, [], b"")
            pseudo = [(":method", request.method), (":scheme", "http"), (":authority", f"127.0.0.1:{port}"),
                      (":path", request.path)]  # fmt: skip
            if not request.path:  # CONNECT: only :method and :authority
                pseudo = [(":method", request.method), (":authority", f"127.0.0.1:{port}")]
            end = not request.body_parts and request.trailers is None
            conn.send_headers(stream_id, pseudo + request.headers, end_stream=end)
        sock.sendall(conn.data_to_send())

        longest = max((len(r.body_parts) for r in requests), default=0)
        for index in range(longest):
            if index and pause:
                time.sleep(pause)
            for stream_id, request in zip(ids, requests):
                if index >= len(request.body_parts) or stream_id in done:
                    continue
                last = index == len(request.body_parts) - 1 and request.trailers is None
                _send_data(conn, sock, stream_id, request.body_parts[index], last, state, done)
        for stream_id, request in zip(ids, requests):
            if request.trailers is not None and stream_id not in done:
                conn.send_headers(stream_id, request.trailers, end_stream=True)
        sock.sendall(conn.data_to_send())

        deadline = time.monotonic() + timeout
        while len(done) < len(ids) and time.monotonic() < deadline:
            if not _pump(conn, sock, state, done):
                break
        return [state[stream_id] for stream_id in ids]


def _send_data(conn, sock, stream_id, data, end_stream, state, done) -> None:
    """Send `data` on a stream, waiting for flow-control window as needed."""
    view = memoryview(data)
    while True:
        if stream_id in done:
            return  # answered (e.g. 413) or reset: stop sending
        window = min(conn.local_flow_control_window(stream_id), conn.max_outbound_frame_size)
        if window <= 0 and len(view):
            if not _pump(conn, sock, state, done):
                return
            continue
        piece, view = view[:window], view[window:]
        last = end_stream and not len(view)
        conn.send_data(stream_id, bytes(piece), end_stream=last)
        sock.sendall(conn.data_to_send())
        if not len(view):
            return


def _pump(conn, sock, state, done) -> bool:
    """Read once from the socket and apply the events; False when the connection ended."""
    try:
        data = sock.recv(65536)
    except (TimeoutError, OSError):
        return False
    if not data:
        return False
    for event in conn.receive_data(data):
        stream_id = getattr(event, "stream_id", None)
        response = state.get(stream_id) if stream_id is not None else None
        if isinstance(event, h2.events.ResponseReceived) and response is not None:
            headers = [(k, v) for k, v in event.headers]
            response.status = int(dict(headers)[":status"])
            response.headers = [(k, v) for k, v in headers if not k.startswith(":")]
        elif isinstance(event, h2.events.DataReceived) and response is not None:
            response.body += event.data
            conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
        elif isinstance(event, h2.events.TrailersReceived) and response is not None:
            response.trailers = list(event.headers)
        elif isinstance(event, h2.events.StreamEnded):
            done.add(stream_id)
        elif isinstance(event, h2.events.StreamReset):
            if response is not None:
                response.reset = True
            done.add(stream_id)
        elif isinstance(event, h2.events.ConnectionTerminated):
            done.update(state)
    outgoing = conn.data_to_send()
    if outgoing:
        sock.sendall(outgoing)
    return True


def jsonrpc_bytes(message: Any) -> bytes:
    """Compact JSON bytes of a message built as Python data."""
    return json.dumps(message, separators=(",", ":")).encode()
