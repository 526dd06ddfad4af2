//! mcp-policy: the proxy-wasm adapter.
//!
//! Thin by design: it moves bytes between Envoy and the host-free engine
//! (`mcp-policy-engine`) and turns the engine's verdicts into host calls.
//! Compiled only for wasm32-wasip1 (the Envoy module); on other targets the
//! crate is empty so `cargo test --workspace` stays native.

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod abi;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod filter;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod host;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod identity;
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod root;

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod dispatch;

/// Rust's allocations go to talc instead of wasi-libc's dlmalloc (which
/// stays in the module for libc's own use): every request allocates, and
/// each VM entry starts cold, so the allocator's code is part of every
/// request's footprint; talc's allocate/free paths are a third of
/// dlmalloc's (-198 simulated L1i misses per allowed call in Envoy, for
/// +1.5 MiB RSS at one worker; bench/README.md "Code footprint"). Memory the
/// host asks for (`proxy_on_memory_allocate`) comes from the same
/// allocator, so the ownership `abi::owned` takes back stays valid; talc
/// takes its pages from `memory.grow`, apart from libc's heap.
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
#[global_allocator]
static ALLOCATOR: talc::wasm::WasmDynamicTalc = talc::wasm::new_wasm_dynamic_allocator();

/// Our own logger and panic hook (run by `_initialize`): the SDK's
/// versions unwrap host results.
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
fn init() {
    let _ = log::set_logger(&abi::HostLogger);
    log::set_max_level(log::LevelFilter::Info);
    std::panic::set_hook(Box::new(|info| {
        abi::log(5, &format!("mcp-policy: panic, the VM will stop: {info}"));
    }));
}
