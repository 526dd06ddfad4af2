//! Criterion micro-benchmarks of the host-free engine: what the filter does
//! per request once the body is buffered (strict parse, classification, the
//! policy decision, rate-limit counters in the shared store, the refusal
//! answer), without Envoy or a Wasm runtime.
//!
//! Policy: `bench/policy.json` (the one the end-to-end benchmark loads).
//! Bodies: the same shape and sizes as `bench/harness.py` builds.
//!
//! ```sh
//! cargo bench -p mcp-policy-engine --features testing --bench decide
//! make bench   # runs this with short measurement times, then the Envoy runs
//! ```
// A benchmark aborting on a broken fixture is the right outcome.
#![allow(clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mcp_policy_engine::config;
use mcp_policy_engine::json;
use mcp_policy_engine::testing::{FixedClock, MemoryStore};
use mcp_policy_engine::{Engine, Scopes, Verdict};

const POLICY: &str = include_str!("../../bench/policy.json");

/// Total body sizes, as in the end-to-end benchmark.
const SIZES: [(usize, &str); 3] = [(1024, "1KiB"), (16 * 1024, "16KiB"), (256 * 1024, "256KiB")];

/// Text of the padding argument: prose with JSON `\n` escapes, as a file or
/// a document carried in a tool argument looks.
const FILLER: &str =
    "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor.\\n";

/// A `tools/call` of exactly `size` bytes (mirrors `bench/harness.py::body`).
fn body(size: usize, tool: &str, limit: u32) -> Vec<u8> {
    let head = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"{tool}\",\"arguments\":{{\"query\":\"quarterly report owners\",\"limit\":{limit},\"index\":\"engineering\",\"content\":\""
    );
    let tail = "\"}}}";
    let room = size
        .checked_sub(head.len() + tail.len())
        .expect("size too small for the body shape");
    let mut pad: String = FILLER.chars().cycle().take(room).collect();
    // Never end the string on half an escape.
    if pad.ends_with('\\') {
        pad.pop();
        pad.push(' ');
    }
    let out = format!("{head}{pad}{tail}").into_bytes();
    assert_eq!(out.len(), size);
    out
}

struct Case {
    name: &'static str,
    tool: &'static str,
    limit: u32,
    /// Expected: forwarded (true) or answered locally (false).
    forwarded: bool,
}

const CASES: [Case; 3] = [
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

fn engine() -> Engine {
    let policy = config::load(POLICY.as_bytes()).unwrap_or_else(|errors| {
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        panic!("bench/policy.json invalid: {}", text.join("; "))
    });
    Engine::new(policy)
}

const SCOPES: Scopes<'static> = Scopes {
    grant: Some(b"Bearer bench-token"),
    session: Some(b"bench-session"),
    source: Some(b"127.0.0.1"),
    request_id: None,
};

/// Strict parse only: the part of `decide` that scales with the body.
fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (size, label) in SIZES {
        let b = body(size, "search_docs", 10);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(label), |bench| {
            bench.iter(|| {
                black_box(json::parse(black_box(&b)).expect("bench body parses"));
            })
        });
    }
    group.finish();
}

/// Parse + classify + decide + counters + answer, per call.
fn decide(c: &mut Criterion) {
    let engine = engine();
    let store = MemoryStore::new();
    let clock = FixedClock::at_secs(1_800_000_000);
    let mut group = c.benchmark_group("decide");
    for case in &CASES {
        for (size, label) in SIZES {
            let b = body(size, case.tool, case.limit);
            // Check the fixture once: a benchmark of the wrong path is worthless.
            let forwarded = matches!(
                engine.decide(&b, &SCOPES, &store, &clock),
                Verdict::Forward(_)
            );
            assert_eq!(forwarded, case.forwarded, "{} {label}", case.name);
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(case.name, label), |bench| {
                bench.iter(|| black_box(engine.decide(black_box(&b), &SCOPES, &store, &clock)))
            });
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Short by default (2 cores, noisy machine); criterion's CLI flags
    // (--measurement-time, --warm-up-time, --sample-size) override these.
    config = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(500))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(30);
    targets = parse, decide
}
criterion_main!(benches);
