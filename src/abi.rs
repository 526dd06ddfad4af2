//! Panic-free host calls.
//!
//! The proxy-wasm SDK's `hostcalls` functions `panic!` on any host status
//! they do not expect and `unwrap` header values as UTF-8. Envoy does return
//! such statuses on request paths (request headers are `BadArgument` once
//! the headers callback has continued), and an agent controls header bytes;
//! a panic kills the VM and every request on that worker. So the filter
//! declares the ABI functions it uses itself, with plain integer types, and
//! turns every failure into a `Result`/`Option`. The entry points the host
//! calls are in `dispatch`.

use std::ptr::{null, null_mut};
use std::time::Duration;

/// A host status other than Ok (proxy-wasm ABI numbering).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostError(pub u32);

const OK: u32 = 0;
const NOT_FOUND: u32 = 1;
const CAS_MISMATCH: u32 = 8;

pub const MAP_REQUEST_HEADERS: u32 = 0;
pub const MAP_RESPONSE_HEADERS: u32 = 2;
pub const MAP_HTTP_CALL_RESPONSE_HEADERS: u32 = 6;

pub const BUFFER_REQUEST_BODY: u32 = 0;
pub const BUFFER_RESPONSE_BODY: u32 = 1;
pub const BUFFER_HTTP_CALL_RESPONSE: u32 = 4;
pub const BUFFER_GRPC_RECEIVE: u32 = 5;
pub const BUFFER_VM_CONFIGURATION: u32 = 6;
pub const BUFFER_PLUGIN_CONFIGURATION: u32 = 7;

const STREAM_HTTP_REQUEST: u32 = 0;
const METRIC_COUNTER: u32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
    fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_buffer_data: *mut *mut u8,
        return_buffer_size: *mut usize,
    ) -> u32;
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        buffer_data: *const u8,
        buffer_size: usize,
    ) -> u32;
    fn proxy_get_header_map_value(
        map_type: u32,
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_remove_header_map_value(map_type: u32, key_data: *const u8, key_size: usize) -> u32;
    fn proxy_get_header_map_pairs(
        map_type: u32,
        return_map_data: *mut *mut u8,
        return_map_size: *mut usize,
    ) -> u32;
    fn proxy_get_property(
        path_data: *const u8,
        path_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
    ) -> u32;
    fn proxy_set_property(
        path_data: *const u8,
        path_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> u32;
    fn proxy_get_shared_data(
        key_data: *const u8,
        key_size: usize,
        return_value_data: *mut *mut u8,
        return_value_size: *mut usize,
        return_cas: *mut u32,
    ) -> u32;
    fn proxy_set_shared_data(
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
        cas: u32,
    ) -> u32;
    fn proxy_send_local_response(
        status_code: u32,
        status_code_details_data: *const u8,
        status_code_details_size: usize,
        body_data: *const u8,
        body_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        grpc_status: i32,
    ) -> u32;
    fn proxy_continue_stream(stream_type: u32) -> u32;
    fn proxy_close_stream(stream_type: u32) -> u32;
    fn proxy_define_metric(
        metric_type: u32,
        name_data: *const u8,
        name_size: usize,
        return_id: *mut u32,
    ) -> u32;
    fn proxy_increment_metric(metric_id: u32, offset: i64) -> u32;
    fn proxy_set_tick_period_milliseconds(period: u32) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_http_call(
        upstream_data: *const u8,
        upstream_size: usize,
        headers_data: *const u8,
        headers_size: usize,
        body_data: *const u8,
        body_size: usize,
        trailers_data: *const u8,
        trailers_size: usize,
        timeout_ms: u32,
        return_token: *mut u32,
    ) -> u32;
    fn proxy_grpc_call(
        upstream_data: *const u8,
        upstream_size: usize,
        service_name_data: *const u8,
        service_name_size: usize,
        method_name_data: *const u8,
        method_name_size: usize,
        initial_metadata_data: *const u8,
        initial_metadata_size: usize,
        message_data: *const u8,
        message_size: usize,
        timeout_ms: u32,
        return_callout_id: *mut u32,
    ) -> u32;
}

fn check(status: u32) -> Result<(), HostError> {
    if status == OK {
        Ok(())
    } else {
        Err(HostError(status))
    }
}

/// Takes ownership of bytes the host allocated through the SDK's
/// `proxy_on_memory_allocate` (a `Vec<u8>` allocation of exactly `size`).
fn owned(data: *mut u8, size: usize) -> Vec<u8> {
    if data.is_null() || size == 0 {
        return Vec::new();
    }
    // SAFETY: the host wrote `size` bytes into memory it obtained from our
    // allocator with capacity `size`, and hands its ownership to us.
    unsafe { Vec::from_raw_parts(data, size, size) }
}

/// Calls a host function returning (data, size); None on NotFound.
fn fetch(call: impl FnOnce(*mut *mut u8, *mut usize) -> u32) -> Result<Option<Vec<u8>>, HostError> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    match call(&mut data, &mut size) {
        OK => Ok(Some(owned(data, size))),
        NOT_FOUND => Ok(None),
        other => Err(HostError(other)),
    }
}

pub fn log(level: u32, message: &str) {
    // SAFETY: pointer and length describe a live string.
    let _ = unsafe { proxy_log(level, message.as_ptr(), message.len()) };
}

/// Nanoseconds since the Unix epoch (0 if the host cannot tell).
pub fn now_nanos() -> u64 {
    let mut t: u64 = 0;
    // SAFETY: writes one u64 to a local.
    match unsafe { proxy_get_current_time_nanoseconds(&mut t) } {
        OK => t,
        _ => 0,
    }
}

pub fn get_buffer(buffer: u32, start: usize, max: usize) -> Result<Option<Vec<u8>>, HostError> {
    // SAFETY: out-pointers to locals.
    fetch(|d, s| unsafe { proxy_get_buffer_bytes(buffer, start, max, d, s) })
}

pub fn set_buffer(buffer: u32, start: usize, size: usize, value: &[u8]) -> Result<(), HostError> {
    // SAFETY: pointer and length describe a live slice.
    check(unsafe { proxy_set_buffer_bytes(buffer, start, size, value.as_ptr(), value.len()) })
}

/// A header's raw bytes (None when absent or not accessible now).
pub fn header(map: u32, name: &str) -> Option<Vec<u8>> {
    // SAFETY: key is a live string; out-pointers to locals.
    fetch(|d, s| unsafe { proxy_get_header_map_value(map, name.as_ptr(), name.len(), d, s) })
        .ok()
        .flatten()
}

/// A header as text, if present and UTF-8.
pub fn header_text(map: u32, name: &str) -> Option<String> {
    header(map, name).and_then(|b| String::from_utf8(b).ok())
}

/// A whole header map fetched in one host call (each single-header lookup
/// is a host call of its own; a request needs about ten).
#[derive(Default)]
pub struct HeaderMap {
    raw: Vec<u8>,
    /// (name range, value range) into `raw`.
    entries: Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>,
}

impl HeaderMap {
    /// The map, or an empty one when the host cannot give it now.
    pub fn fetch(map: u32) -> HeaderMap {
        // SAFETY: out-pointers to locals.
        let raw = fetch(|d, s| unsafe { proxy_get_header_map_pairs(map, d, s) })
            .ok()
            .flatten()
            .unwrap_or_default();
        let entries = parse_pairs(&raw).unwrap_or_default();
        HeaderMap { raw, entries }
    }

    /// The value of header `name` (lowercase, as Envoy stores names).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| self.raw.get(k.clone()) == Some(name.as_bytes()))
            .and_then(|(_, v)| self.raw.get(v.clone()))
    }

    /// Every value of header `name`, in order (a header may repeat).
    pub fn all(&self, name: &str) -> Vec<&[u8]> {
        self.entries
            .iter()
            .filter(|(k, _)| self.raw.get(k.clone()) == Some(name.as_bytes()))
            .filter_map(|(_, v)| self.raw.get(v.clone()))
            .collect()
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Reads the serialized map: count, (key len, value len) pairs, then
/// NUL-terminated keys and values. None if it is malformed.
fn parse_pairs(raw: &[u8]) -> Option<Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>> {
    let word = |at: usize| -> Option<usize> {
        let bytes = raw.get(at..at + 4)?;
        usize::try_from(u32::from_le_bytes(<[u8; 4]>::try_from(bytes).ok()?)).ok()
    };
    if raw.is_empty() {
        return Some(Vec::new());
    }
    let count = word(0)?;
    let mut at = count.checked_mul(8)?.checked_add(4)?;
    let mut entries = Vec::with_capacity(count.min(256));
    for n in 0..count {
        let key_len = word(4 + n * 8)?;
        let value_len = word(8 + n * 8)?;
        let key = at..at.checked_add(key_len)?;
        at = key.end.checked_add(1)?;
        let value = at..at.checked_add(value_len)?;
        at = value.end.checked_add(1)?;
        if value.end > raw.len() {
            return None;
        }
        entries.push((key, value));
    }
    Some(entries)
}

pub fn remove_header(map: u32, name: &str) {
    // SAFETY: key is a live string.
    let _ = unsafe { proxy_remove_header_map_value(map, name.as_ptr(), name.len()) };
}

/// A property path as proxy-wasm encodes it (segments joined by NUL); a
/// one-segment path (every filter-state write) is its own bytes.
fn property_path<'p>(path: &[&'p str]) -> std::borrow::Cow<'p, [u8]> {
    match path {
        [one] => std::borrow::Cow::Borrowed(one.as_bytes()),
        _ => std::borrow::Cow::Owned(path.join("\0").into_bytes()),
    }
}

pub fn get_property(path: &[&str]) -> Option<Vec<u8>> {
    let p = property_path(path);
    // SAFETY: path buffer is live; out-pointers to locals.
    fetch(|d, s| unsafe { proxy_get_property(p.as_ptr(), p.len(), d, s) })
        .ok()
        .flatten()
}

/// Like [`get_property`], telling a host error apart from "not found".
pub fn get_property_checked(path: &[&str]) -> Result<Option<Vec<u8>>, HostError> {
    let p = property_path(path);
    // SAFETY: path buffer is live; out-pointers to locals.
    fetch(|d, s| unsafe { proxy_get_property(p.as_ptr(), p.len(), d, s) })
}

pub fn set_property(path: &[&str], value: &[u8]) {
    let p = property_path(path);
    // SAFETY: both buffers are live.
    let _ = unsafe { proxy_set_property(p.as_ptr(), p.len(), value.as_ptr(), value.len()) };
}

/// (value, cas) of a shared-data key; None when absent or unreadable.
pub fn get_shared_data(key: &str) -> Option<(Vec<u8>, u32)> {
    let mut data: *mut u8 = null_mut();
    let mut size: usize = 0;
    let mut cas: u32 = 0;
    // SAFETY: key is a live string; out-pointers to locals.
    let status =
        unsafe { proxy_get_shared_data(key.as_ptr(), key.len(), &mut data, &mut size, &mut cas) };
    match status {
        OK => Some((owned(data, size), cas)),
        _ => None,
    }
}

/// Outcome of a shared-data write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOutcome {
    Written,
    CasMismatch,
    Failed,
}

pub fn set_shared_data(key: &str, value: &[u8], cas: u32) -> SetOutcome {
    // SAFETY: both buffers are live.
    let status =
        unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) };
    match status {
        OK => SetOutcome::Written,
        CAS_MISMATCH => SetOutcome::CasMismatch,
        _ => SetOutcome::Failed,
    }
}

/// The proxy-wasm map serialization: count, (key len, value len) pairs,
/// then NUL-terminated keys and values.
fn serialize_map(pairs: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_le_bytes();
    out.extend_from_slice(&len32(pairs.len()));
    for (k, v) in pairs {
        out.extend_from_slice(&len32(k.len()));
        out.extend_from_slice(&len32(v.len()));
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v);
        out.push(0);
    }
    out
}

pub fn send_response(status: u32, headers: &[(&str, &[u8])], body: &[u8]) -> Result<(), HostError> {
    let h = serialize_map(headers);
    // SAFETY: all buffers are live for the call.
    check(unsafe {
        proxy_send_local_response(
            status,
            null(),
            0,
            body.as_ptr(),
            body.len(),
            h.as_ptr(),
            h.len(),
            -1,
        )
    })
}

pub fn resume_request() {
    // SAFETY: no pointers.
    let _ = unsafe { proxy_continue_stream(STREAM_HTTP_REQUEST) };
}

pub fn reset_request() {
    // SAFETY: no pointers.
    let _ = unsafe { proxy_close_stream(STREAM_HTTP_REQUEST) };
}

/// Starts an HTTP call to `cluster`; the token routes the answer back
/// (`dispatch::register_callout`: Envoy answers on the root context).
pub fn http_call(
    cluster: &str,
    headers: &[(&str, &[u8])],
    body: &[u8],
    timeout: Duration,
) -> Result<u32, HostError> {
    let headers = serialize_map(headers);
    let trailers = serialize_map(&[]);
    // SAFETY: all buffers are live for the call; token points to a local.
    with_token(|token| unsafe {
        proxy_http_call(
            cluster.as_ptr(),
            cluster.len(),
            headers.as_ptr(),
            headers.len(),
            body.as_ptr(),
            body.len(),
            trailers.as_ptr(),
            trailers.len(),
            millis(timeout),
            token,
        )
    })
}

/// Starts a unary gRPC call (no initial metadata).
pub fn grpc_call(
    cluster: &str,
    service: &str,
    method: &str,
    message: &[u8],
    timeout: Duration,
) -> Result<u32, HostError> {
    let metadata = serialize_map(&[]);
    // SAFETY: all buffers are live for the call; token points to a local.
    with_token(|token| unsafe {
        proxy_grpc_call(
            cluster.as_ptr(),
            cluster.len(),
            service.as_ptr(),
            service.len(),
            method.as_ptr(),
            method.len(),
            metadata.as_ptr(),
            metadata.len(),
            message.as_ptr(),
            message.len(),
            millis(timeout),
            token,
        )
    })
}

/// Runs a callout host call that writes its token; the token, or the status.
fn with_token(call: impl FnOnce(*mut u32) -> u32) -> Result<u32, HostError> {
    let mut token: u32 = 0;
    check(call(&mut token))?;
    Ok(token)
}

fn millis(timeout: Duration) -> u32 {
    u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX)
}

pub fn define_counter(name: &str) -> Option<u32> {
    let mut id: u32 = 0;
    // SAFETY: name is a live string; id is a local.
    match unsafe { proxy_define_metric(METRIC_COUNTER, name.as_ptr(), name.len(), &mut id) } {
        OK => Some(id),
        _ => None,
    }
}

pub fn increment(metric: u32) {
    // SAFETY: no pointers.
    let _ = unsafe { proxy_increment_metric(metric, 1) };
}

pub fn set_tick_period_ms(period: u32) {
    // SAFETY: no pointers.
    let _ = unsafe { proxy_set_tick_period_milliseconds(period) };
}

/// Makes later host calls act on the HTTP context `context_id` (from a
/// root-context callback such as `on_tick`).
pub fn set_effective_context(context_id: u32) -> bool {
    // SAFETY: no pointers.
    unsafe { proxy_set_effective_context(context_id) == OK }
}

/// A `log` backend on `proxy_log` that never panics (the SDK's unwraps).
pub struct HostLogger;

impl log::Log for HostLogger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        let level = match record.level() {
            log::Level::Error => 4,
            log::Level::Warn => 3,
            log::Level::Info => 2,
            log::Level::Debug => 1,
            log::Level::Trace => 0,
        };
        log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}
