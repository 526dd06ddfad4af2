//! Fixtures shared by the engine benchmarks (`decide.rs`) and the standalone
//! Wasm runtime probe (`bench/wasm-probes`): the benchmark policy and bodies
//! of the same shape and sizes as `bench/harness.py` builds.

use mcp_policy_engine::config;
use mcp_policy_engine::{Engine, Scopes};

pub const POLICY: &str = include_str!("../../../bench/policy.json");

/// Total body sizes, as in the end-to-end benchmark.
pub const SIZES: [(usize, &str); 3] =
    [(1024, "1KiB"), (16 * 1024, "16KiB"), (256 * 1024, "256KiB")];

/// Text of the padding argument: prose with JSON `\n` escapes, as a file or
/// a document carried in a tool argument looks.
pub const FILLER: &str =
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\\n";

/// A `tools/call` of exactly `size` bytes (mirrors `bench/harness.py::body`);
/// `filler` is the padding text (`FILLER`, or text without escapes).
pub fn body_with(size: usize, tool: &str, limit: u32, filler: &str) -> Vec<u8> {
    let head = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"{tool}\",\"arguments\":{{\"query\":\"quarterly report owners\",\"limit\":{limit},\"index\":\"engineering\",\"content\":\""
    );
    let tail = "\"}}}";
    let room = size.saturating_sub(head.len() + tail.len());
    let mut pad: String = filler.chars().cycle().take(room).collect();
    // Never end the string on half an escape.
    if pad.ends_with('\\') {
        pad.pop();
        pad.push(' ');
    }
    format!("{head}{pad}{tail}").into_bytes()
}

pub fn body(size: usize, tool: &str, limit: u32) -> Vec<u8> {
    body_with(size, tool, limit, FILLER)
}

/// An allowed `tools/call` whose arguments object has `n` keys.
pub fn many_keys(n: usize) -> Vec<u8> {
    let keys: Vec<String> = (0..n).map(|i| format!("\"field{i}\":{i}")).collect();
    format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"search_docs\",\"arguments\":{{\"query\":\"q\",\"limit\":10,{}}}}}}}",
        keys.join(",")
    )
    .into_bytes()
}

/// A batch of `n` calls to a tool the policy denies.
pub fn refused_batch(n: usize) -> Vec<u8> {
    let calls: Vec<String> = (0..n)
        .map(|i| format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"tools/call\",\"params\":{{\"name\":\"delete_repository\"}}}}"))
        .collect();
    format!("[{}]", calls.join(",")).into_bytes()
}

pub struct Case {
    pub name: &'static str,
    pub tool: &'static str,
    pub limit: u32,
    /// Expected: forwarded (true) or answered locally (false).
    pub forwarded: bool,
}

pub const CASES: [Case; 3] = [
    Case {
        name: "allowed",
        tool: "search_docs",
        limit: 10,
        forwarded: true,
    },
    // Refused by name (`action: deny`): what the native RBAC comparison does.
    Case {
        name: "refused_tool",
        tool: "delete_repository",
        limit: 10,
        forwarded: false,
    },
    // Refused by an argument rule (`require args.limit <= 100`).
    Case {
        name: "refused_rule",
        tool: "search_docs",
        limit: 500,
        forwarded: false,
    },
];

/// The engine with `bench/policy.json`; None (with the problems printed) if
/// the policy no longer loads.
pub fn engine() -> Option<Engine> {
    match config::load(POLICY.as_bytes()) {
        Ok(policy) => Some(Engine::new(policy)),
        Err(errors) => {
            for e in errors {
                eprintln!("bench/policy.json: {e}");
            }
            None
        }
    }
}

pub const SCOPES: Scopes<'static> = Scopes {
    grant: Some(b"bearer bench-token"),
    grant_error: None,
    session: Some(b"bench-session"),
    source: Some(b"127.0.0.1"),
    request_id: None,
    caller: None,
};
