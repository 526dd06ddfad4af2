//! The engine's per-call work (`Engine::decide` with the benchmark policy,
//! MemoryStore, FixedClock) in a timed loop, for every case and body size.
//! Built natively and for wasm32-wasip1, so the same code can be timed on
//! the host CPU, under V8 (node) and under Wasmtime.
//!
//!     decide_loop [millis per cell, default 1000] [filter substring]
//!
//! `DECIDE_QUERY=text` replaces the bodies' `query` value ("quarterly report
//! owners", which the `no-ddl` regex's prefilter skips) with `text`, e.g.
//! "quarterly tables owners" (same length; contains the required "table", so
//! the regex runs).
//!
//! Prints one JSON object per cell: {"case","size","ns_min","ns_median","calls"}
//! (nanoseconds per call over ~5 ms batches: minimum and median).

#[path = "../../../../engine/benches/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use mcp_policy_engine::json;
use mcp_policy_engine::testing::{FixedClock, MemoryStore};
use mcp_policy_engine::Verdict;

/// Times `f` in batches of about 5 ms for `budget` (after a warm-up that lets
/// V8 tier up); returns (minimum, median) ns per call over the batches and
/// the number of calls. The minimum is the estimate to trust on a shared
/// machine: interference only ever adds time.
fn time_it(budget: Duration, mut f: impl FnMut()) -> (f64, f64, u64) {
    let warm = Instant::now();
    let mut per_batch = 1u64;
    while warm.elapsed() < budget / 5 {
        let t = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        if t.elapsed() < Duration::from_millis(5) {
            per_batch *= 2;
        }
    }
    let start = Instant::now();
    let mut samples = Vec::new();
    let mut calls = 0u64;
    while start.elapsed() < budget || samples.len() < 5 {
        let t = Instant::now();
        for _ in 0..per_batch {
            f();
        }
        samples.push(t.elapsed().as_nanos() as f64 / per_batch as f64);
        calls += per_batch;
    }
    samples.sort_by(f64::total_cmp);
    let min = samples.first().copied().unwrap_or(f64::NAN);
    let median = samples.get(samples.len() / 2).copied().unwrap_or(f64::NAN);
    (min, median, calls)
}

/// `body` with its query value replaced by `DECIDE_QUERY`, if set.
fn with_query(body: Vec<u8>) -> Vec<u8> {
    match std::env::var("DECIDE_QUERY") {
        Ok(q) => String::from_utf8_lossy(&body)
            .replacen("\"quarterly report owners\"", &format!("\"{q}\""), 1)
            .into_bytes(),
        Err(_) => body,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let millis: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let only = args.get(2).cloned().unwrap_or_default();
    let budget = Duration::from_millis(millis);
    let Some(engine) = common::engine() else {
        std::process::exit(2);
    };
    let store = MemoryStore::new();
    let clock = FixedClock::at_secs(1_800_000_000);
    for (size, label) in common::SIZES {
        let mut cells: Vec<(String, Vec<u8>, Option<bool>)> = common::CASES
            .iter()
            .map(|c| {
                (
                    c.name.to_string(),
                    with_query(common::body(size, c.tool, c.limit)),
                    Some(c.forwarded),
                )
            })
            .collect();
        cells.push((
            "parse_only".to_string(),
            common::body(size, "search_docs", 10),
            None,
        ));
        for (name, body, forwarded) in cells {
            if !format!("{name}/{label}").contains(&only) {
                continue;
            }
            let (min, median, calls) = match forwarded {
                Some(expect) => {
                    let got = matches!(
                        engine.decide(&body, &common::SCOPES, &store, &clock),
                        Verdict::Forward(_)
                    );
                    if got != expect {
                        eprintln!("{name}/{label}: unexpected verdict");
                        std::process::exit(3);
                    }
                    time_it(budget, || {
                        black_box(engine.decide(black_box(&body), &common::SCOPES, &store, &clock));
                    })
                }
                None => time_it(budget, || {
                    black_box(json::parse(black_box(&body)).is_ok());
                }),
            };
            println!(
                "{{\"case\":\"{name}\",\"size\":\"{label}\",\"ns_min\":{min:.1},\"ns_median\":{median:.1},\"calls\":{calls}}}"
            );
        }
    }
}
