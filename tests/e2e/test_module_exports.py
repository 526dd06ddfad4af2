"""The module exports exactly the proxy-wasm callbacks the filter uses.

Envoy (proxy-wasm-cpp-host) calls only the callbacks a module exports, and
each call is a VM entry on the request path. `src/dispatch.rs` therefore
exports its own entry points instead of the SDK's full set: no `proxy_on_log`
or `proxy_on_done` (two entries per request), no response trailers, queues
or network-filter callbacks. A dependency that brings the SDK's dispatcher
back, or a new callback, shows up here; every e2e test checks that what is
exported behaves.
"""

from __future__ import annotations

from envoy_process import WASM

CALLBACKS = {
    "proxy_on_context_create",
    "proxy_on_delete",
    "proxy_on_vm_start",
    "proxy_on_configure",
    "proxy_on_tick",
    "proxy_on_request_headers",
    "proxy_on_request_body",
    "proxy_on_request_trailers",
    "proxy_on_response_headers",
    "proxy_on_response_body",
    "proxy_on_http_call_response",
    "proxy_on_grpc_receive",
    "proxy_on_grpc_close",
}
RUNTIME = {"_initialize", "proxy_abi_version_0_2_1", "proxy_on_memory_allocate", "memory"}


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, at


def exports(module: bytes) -> set[str]:
    """Names in the module's export section (id 7)."""
    assert module[:4] == b"\0asm", "not a wasm module"
    at, names = 8, set()
    while at < len(module):
        section = module[at]
        size, at = _leb128(module, at + 1)
        end = at + size
        if section == 7:
            count, at = _leb128(module, at)
            for _ in range(count):
                length, at = _leb128(module, at)
                names.add(module[at : at + length].decode())
                _, at = _leb128(module, at + length + 1)  # kind byte, then index
        at = end
    return names


def test_only_the_callbacks_the_filter_uses_are_exported() -> None:
    found = exports(WASM.read_bytes())
    # Named first: each would be a VM entry on every request for nothing.
    for name in ("proxy_on_log", "proxy_on_done", "proxy_on_response_trailers", "proxy_on_queue_ready"):
        assert name not in found, f"{name} is exported: Envoy would enter the VM for it on every request"
    assert found == CALLBACKS | RUNTIME, (
        f"unexpected: {sorted(found - CALLBACKS - RUNTIME)}, missing: {sorted((CALLBACKS | RUNTIME) - found)}"
    )
