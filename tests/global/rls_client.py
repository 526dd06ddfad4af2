"""A minimal client of Envoy's rate limit service API, for the tests.

`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit` is one unary
gRPC call: an HTTP/2 POST whose body is a 5-byte frame header and a protobuf
message, with the status in the `grpc-status` trailer. The `h2` package
(already pinned for the e2e suite) speaks the HTTP/2, and the few messages
are encoded and decoded here by hand, so the tests need neither grpcio nor
protoc. Field numbers follow envoy/service/ratelimit/v3/rls.proto and
envoy/extensions/common/ratelimit/v3/ratelimit.proto.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

import h2.config
import h2.connection
import h2.events

METHOD = "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"

# envoy.type.v3.RateLimitUnit / RateLimitResponse.RateLimit.Unit
UNITS = {"unknown": 0, "second": 1, "minute": 2, "hour": 3, "day": 4, "month": 5, "year": 6}
UNIT_NAMES = {number: name for name, number in UNITS.items()}
# RateLimitResponse.Code
UNKNOWN, OK, OVER_LIMIT = 0, 1, 2
# gRPC status codes the tests look for
GRPC_OK, GRPC_INVALID_ARGUMENT, GRPC_UNIMPLEMENTED, GRPC_UNAVAILABLE = 0, 3, 12, 14


# -- protobuf wire format ----------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[i]
        i += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, i


def decode_fields(buf: bytes) -> dict[int, list[int | bytes]]:
    """Field number -> values (ints for varints, bytes for everything else)."""
    fields: dict[int, list[int | bytes]] = {}
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        number, wire = key >> 3, key & 7
        value: int | bytes
        if wire == 0:
            value, i = _read_varint(buf, i)
        elif wire == 2:
            length, i = _read_varint(buf, i)
            value = buf[i : i + length]
            i += length
        elif wire == 1:
            value, i = buf[i : i + 8], i + 8
        elif wire == 5:
            value, i = buf[i : i + 4], i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        fields.setdefault(number, []).append(value)
    return fields


# -- messages ------------------------------------------------------------------


@dataclass
class Descriptor:
    """RateLimitDescriptor: entries in order, optional limit override and hits."""

    entries: list[tuple[str, str]]
    limit: tuple[int, str] | None = None  # (requests_per_unit, unit name)
    hits_addend: int | None = None  # per-descriptor UInt64Value (field 3)

    def encode(self) -> bytes:
        out = b""
        for key, value in self.entries:
            out += _field_bytes(1, _field_bytes(1, key.encode()) + _field_bytes(2, value.encode()))
        if self.limit is not None:
            requests, unit = self.limit
            out += _field_bytes(2, _field_varint(1, requests) + _field_varint(2, UNITS[unit]))
        if self.hits_addend is not None:
            out += _field_bytes(3, _field_varint(1, self.hits_addend))
        return out


def mcp_descriptor(counter: str, scope_value: str, tool: str, max_: int, unit: str, scope: str = "grant") -> Descriptor:
    """The descriptor mcp-policy sends for one global limit."""
    entries = [("counter", counter), ("scope", scope), ("scope_value", scope_value), ("tool", tool)]
    return Descriptor(entries, (max_, unit))


def encode_request(domain: str, descriptors: list[Descriptor], hits_addend: int = 0) -> bytes:
    out = _field_bytes(1, domain.encode())
    for descriptor in descriptors:
        out += _field_bytes(2, descriptor.encode())
    return out + _field_varint(3, hits_addend)


@dataclass
class DescriptorStatus:
    code: int
    limit: tuple[int, str] | None  # current_limit (requests_per_unit, unit name)
    remaining: int
    reset_seconds: float | None  # duration_until_reset


@dataclass
class Response:
    overall_code: int
    statuses: list[DescriptorStatus] = field(default_factory=list)


def _int(fields: dict[int, list[int | bytes]], number: int) -> int:
    values = fields.get(number) or [0]
    value = values[-1]
    assert isinstance(value, int), f"field {number} is not a varint"
    return value


def _message(fields: dict[int, list[int | bytes]], number: int) -> dict[int, list[int | bytes]] | None:
    values = fields.get(number)
    if not values:
        return None
    value = values[-1]
    assert isinstance(value, bytes), f"field {number} is not a message"
    return decode_fields(value)


def decode_response(buf: bytes) -> Response:
    fields = decode_fields(buf)
    response = Response(_int(fields, 1))
    for raw in fields.get(2, []):
        assert isinstance(raw, bytes)
        status = decode_fields(raw)
        limit = _message(status, 2)
        duration = _message(status, 4)
        response.statuses.append(
            DescriptorStatus(
                code=_int(status, 1),
                limit=(_int(limit, 1), UNIT_NAMES.get(_int(limit, 2), "?")) if limit is not None else None,
                remaining=_int(status, 3),
                reset_seconds=_int(duration, 1) + _int(duration, 2) / 1e9 if duration is not None else None,
            )
        )
    return response


# -- gRPC over HTTP/2 ------------------------------------------------------------


@dataclass
class GrpcResult:
    grpc_status: int
    grpc_message: str
    body: bytes  # the response message (without the 5-byte frame header)
    headers: dict[str, str]

    def response(self) -> Response:
        assert self.grpc_status == GRPC_OK, f"grpc-status {self.grpc_status}: {self.grpc_message}"
        return decode_response(self.body)


def grpc_unary(port: int, path: str, message: bytes, *, host: str = "127.0.0.1", timeout: float = 5.0) -> GrpcResult:
    """One unary call over a fresh cleartext HTTP/2 connection."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        conn.send_headers(
            stream,
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", f"{host}:{port}"),
                ("content-type", "application/grpc"),
                ("te", "trailers"),
            ],
        )
        conn.send_data(stream, b"\x00" + len(message).to_bytes(4, "big") + message, end_stream=True)
        sock.sendall(conn.data_to_send())
        headers: dict[str, str] = {}
        body = b""
        ended = False
        while not ended:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection before the call ended")
            for event in conn.receive_data(data):
                if isinstance(event, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                    headers.update(event.headers)
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                elif isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)) and event.stream_id == stream:
                    ended = True
            sock.sendall(conn.data_to_send())
    status = int(headers.get("grpc-status", "-1"))
    if body:
        assert body[0] == 0, "compressed gRPC frames are not expected"
        length = int.from_bytes(body[1:5], "big")
        body = body[5 : 5 + length]
    return GrpcResult(status, headers.get("grpc-message", ""), body, headers)


def should_rate_limit(
    port: int, domain: str, descriptors: list[Descriptor], hits_addend: int = 0, *, timeout: float = 5.0
) -> GrpcResult:
    return grpc_unary(port, METHOD, encode_request(domain, descriptors, hits_addend), timeout=timeout)
