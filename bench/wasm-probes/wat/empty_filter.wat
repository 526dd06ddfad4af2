;; The smallest module Envoy accepts as a proxy-wasm HTTP filter: every
;; callback continues, no SDK, no allocator beyond a bump pointer, one page of
;; linear memory. Envoy + this, minus Envoy passthrough, is what V8 itself
;; costs (engine, one isolate per VM, Envoy's Wasm plumbing) before any
;; module code: bench/envoy_memory.py. Built with wat2wasm (Debian: wabt).
(module
  (memory (export "memory") 1)
  (global $next (mut i32) (i32.const 1024))
  ;; Envoy copies configuration and host-call results in through this.
  (func (export "proxy_on_memory_allocate") (param $size i32) (result i32)
    (local $at i32)
    (local.set $at (global.get $next))
    (global.set $next (i32.add (global.get $next) (local.get $size)))
    ;; Never grows: restart at the bottom once the page would overflow
    ;; (nothing here keeps what it was handed).
    (if (i32.gt_u (global.get $next) (i32.const 65536))
      (then
        (local.set $at (i32.const 1024))
        (global.set $next (i32.add (i32.const 1024) (local.get $size)))))
    (local.get $at))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_request_trailers") (param i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_trailers") (param i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))
