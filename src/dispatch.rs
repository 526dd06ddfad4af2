//! The proxy-wasm ABI entry points, routed to the root and request contexts.
//!
//! Our own instead of the SDK's dispatcher because a host only calls the
//! callbacks a module exports (proxy-wasm-cpp-host checks each one), and
//! the SDK exports all of them. Every call is a VM entry, the dearest part
//! of a Wasm filter (bench/README.md); this filter has no use for
//! `proxy_on_log` or `proxy_on_done`, nor for response trailers, queues or
//! network streams, so it does not export them: two VM entries fewer per
//! request. A request's state is dropped in `proxy_on_delete`, which Envoy
//! calls for every context it created.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use crate::abi;
use crate::filter::{Action, Request};
use crate::root::Root;

/// Context ids are small integers handed out by the host: a multiply is
/// enough to spread them, no SipHash per callback.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type IdMap<V> = HashMap<u32, V, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct Contexts {
    /// Root contexts by id: one per plugin sharing this VM.
    roots: IdMap<Root>,
    /// Live requests by context id.
    requests: IdMap<Request>,
}

thread_local! {
    static CONTEXTS: RefCell<Contexts> = RefCell::new(Contexts::default());
    /// Outstanding HTTP and gRPC callouts: token -> request context id.
    /// Needed: Envoy makes callouts on the root context, so their answers
    /// arrive with the root's id, not the waiting request's.
    static CALLOUTS: RefCell<Vec<(u32, u32)>> = const { RefCell::new(Vec::new()) };
    /// Contexts deleted while a callback held the state (Envoy destroys a
    /// stream synchronously when the filter resets it): dropped at the next
    /// context creation instead of leaking.
    static DOOMED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Drops the state of contexts whose deletion could not be done at once.
fn drop_doomed(c: &mut Contexts) {
    let ids = DOOMED.with(|d| d.try_borrow_mut().map(|mut d| std::mem::take(&mut *d)));
    for id in ids.unwrap_or_default() {
        if c.requests.remove(&id).is_none() {
            c.roots.remove(&id);
        }
    }
}

/// Remembers which request made callout `token` (see `http_call`).
pub fn register_callout(token: u32, context_id: u32) {
    CALLOUTS.with(|c| {
        if let Ok(mut c) = c.try_borrow_mut() {
            c.push((token, context_id));
        }
    });
}

/// The request that made callout `token`, forgetting the callout.
fn take_callout(token: u32) -> Option<u32> {
    CALLOUTS.with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        let at = c.iter().position(|(t, _)| *t == token)?;
        Some(c.swap_remove(at).1)
    })
}

/// Runs `f` on the root context `id`; `missing` when there is none (or the
/// state is busy, which a host does not do: it never re-enters a callback).
fn with_root<T>(id: u32, missing: T, f: impl FnOnce(&mut Root) -> T) -> T {
    CONTEXTS.with(|c| match c.try_borrow_mut() {
        Ok(mut c) => c.roots.get_mut(&id).map_or(missing, f),
        Err(_) => missing,
    })
}

/// Runs `f` on request `id`, or `None` when there is no such request.
fn with_request<T>(id: u32, f: impl FnOnce(&mut Request) -> T) -> Option<T> {
    CONTEXTS.with(|c| {
        let mut c = c.try_borrow_mut().ok()?;
        c.requests.get_mut(&id).map(f)
    })
}

/// A request callback for a context we do not know (its root had no valid
/// policy): never let it through unjudged.
fn refuse_unknown() -> u32 {
    let _ = abi::send_response(
        500,
        &[("content-type", b"text/plain")],
        b"mcp-policy: no policy loaded for this request\n",
    );
    Action::Pause as u32
}

fn request_action(id: u32, f: impl FnOnce(&mut Request) -> Action) -> u32 {
    with_request(id, f).map_or_else(refuse_unknown, |a| a as u32)
}

/// Memory the host fills for us (header maps, bodies, shared data); the
/// filter takes ownership as a `Vec<u8>` of exactly `size` bytes
/// (`abi::owned`).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    Box::into_raw(Box::<[u8]>::new_uninit_slice(size)).cast::<u8>()
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

extern "C" {
    fn __wasm_call_ctors();
}

/// Run once by the host before any callback.
#[no_mangle]
pub extern "C" fn _initialize() {
    // SAFETY: the reactor's constructors, run once, as the host expects.
    unsafe { __wasm_call_ctors() };
    crate::init();
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    CONTEXTS.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return;
        };
        drop_doomed(&mut c);
        if root_context_id == 0 {
            c.roots.insert(context_id, Root::default());
        } else if let Some(request) = c
            .roots
            .get(&root_context_id)
            .and_then(|root| root.create_request(context_id))
        {
            c.requests.insert(context_id, request);
        }
    });
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    let gone = CONTEXTS.with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            DOOMED.with(|d| {
                if let Ok(mut d) = d.try_borrow_mut() {
                    d.push(context_id);
                }
            });
            return None;
        };
        let request = c.requests.remove(&context_id);
        if request.is_none() {
            c.roots.remove(&context_id);
        }
        request
    });
    if gone.is_some() {
        // Envoy cancels a deleted context's callouts: forget their tokens.
        CALLOUTS.with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                c.retain(|(_, id)| *id != context_id);
            }
        });
    }
    // Dropped outside the borrow: a request's drop touches shared state.
    drop(gone);
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(context_id: u32, size: usize) -> u32 {
    with_root(context_id, false, |r| r.on_vm_start(size)).into()
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, size: usize) -> u32 {
    with_root(context_id, false, |r| r.on_configure(size)).into()
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    with_root(context_id, (), Root::on_tick);
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(context_id: u32, _headers: usize, eos: u32) -> u32 {
    request_action(context_id, |r| r.on_request_headers(eos != 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_body(context_id: u32, size: usize, eos: u32) -> u32 {
    request_action(context_id, |r| r.on_request_body(size, eos != 0))
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(context_id: u32, _trailers: usize) -> u32 {
    request_action(context_id, Request::on_request_trailers)
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context_id: u32, _headers: usize, _eos: u32) -> u32 {
    // An answer to a request we never knew carries nothing to filter for it.
    with_request(context_id, Request::on_response_headers).map_or(0, |a| a as u32)
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(context_id: u32, size: usize, eos: u32) -> u32 {
    with_request(context_id, |r| r.on_response_body(size, eos != 0)).map_or(0, |a| a as u32)
}

#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    _context_id: u32,
    token: u32,
    headers: usize,
    body_size: usize,
    _trailers: usize,
) {
    // A token we did not register (or already answered): nothing waits.
    let Some(id) = take_callout(token) else {
        return;
    };
    // Later host calls (resume, local answer) act on the waiting request.
    abi::set_effective_context(id);
    with_request(id, |r| r.on_http_call_response(headers, body_size));
}

/// A unary gRPC answer: its message (status 0 follows in `close`).
#[no_mangle]
pub extern "C" fn proxy_on_grpc_receive(_context_id: u32, token: u32, size: usize) {
    // A token we did not register (or already answered): nothing waits.
    let Some(id) = take_callout(token) else {
        return;
    };
    abi::set_effective_context(id);
    with_request(id, |r| r.on_grpc_call_response(0, size));
}

/// The gRPC call ended; a failure when no message came before.
#[no_mangle]
pub extern "C" fn proxy_on_grpc_close(_context_id: u32, token: u32, status: u32) {
    // Answered already (receive took the callout): nothing more to do.
    let Some(id) = take_callout(token) else {
        return;
    };
    abi::set_effective_context(id);
    with_request(id, |r| r.on_grpc_call_response(status, 0));
}
