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
//! make bench-micro   # the same with short measurement times
//! ```
// A benchmark aborting on a broken fixture is the right outcome.
#![allow(clippy::expect_used, clippy::panic)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use common::{body, body_with, CASES, SCOPES, SIZES};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mcp_policy_engine::json;
use mcp_policy_engine::testing::{FixedClock, MemoryStore};
use mcp_policy_engine::Verdict;

/// Strict parse only: the part of `decide` that scales with the body. The
/// `plain` variant pads with text without escapes, to show what the escapes
/// in the padding cost.
fn parse(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse");
    for (size, label) in SIZES {
        for (variant, b) in [
            ("escaped", body(size, "search_docs", 10)),
            (
                "plain",
                body_with(
                    size,
                    "search_docs",
                    10,
                    "Lorem ipsum dolor sit amet, consectetur adipiscing elit. ",
                ),
            ),
        ] {
            assert_eq!(b.len(), size);
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(variant, label), |bench| {
                bench.iter(|| black_box(json::parse(black_box(&b)).expect("bench body parses")))
            });
        }
    }
    group.finish();
}

/// Parse + classify + decide + counters + answer, per call.
fn decide(c: &mut Criterion) {
    let engine = common::engine().expect("bench/policy.json loads");
    let store = MemoryStore::new();
    let clock = FixedClock::at_secs(1_800_000_000);
    let mut group = c.benchmark_group("decide");
    for case in &CASES {
        for (size, label) in SIZES {
            let b = body(size, case.tool, case.limit);
            assert_eq!(b.len(), size);
            // Check the fixture once: a benchmark of the wrong path is worthless.
            let verdict = engine.decide(&b, &SCOPES, &store, &clock);
            assert_eq!(
                matches!(verdict, Verdict::Forward(_)),
                case.forwarded,
                "{} {label}: {verdict:?}",
                case.name
            );
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_function(BenchmarkId::new(case.name, label), |bench| {
                bench.iter(|| black_box(engine.decide(black_box(&b), &SCOPES, &store, &clock)))
            });
        }
    }
    // Adversarial shapes: an arguments object with many keys (the folded-key
    // check is per object), and a batch of 12,000 refused calls.
    for (b, name, label) in [
        (common::many_keys(1000), "many_keys", "1000keys"),
        (common::many_keys(10_000), "many_keys", "10000keys"),
        (common::refused_batch(12_000), "refused_batch", "12000msgs"),
    ] {
        group.throughput(Throughput::Bytes(b.len() as u64));
        group.bench_function(BenchmarkId::new(name, label), |bench| {
            bench.iter(|| black_box(engine.decide(black_box(&b), &SCOPES, &store, &clock)))
        });
    }
    group.finish();
}

/// Who is calling: decoding a typical JWT payload from Envoy's metadata
/// (once per request when the policy reads claims), and a 1 KiB decision
/// with a role rule, a scope rule and a subject-keyed budget.
fn caller(c: &mut Criterion) {
    use mcp_policy_engine::caller::{Caller, CallerSettings};
    use mcp_policy_engine::metadata::encode;
    let claims = r#"{"iss":"https://auth.example.com","sub":"ci-bot","aud":"mcp-server","exp":1800003600,"iat":1800000000,"jti":"6f1c2a","scope":"sessions:read sessions:poll","realm":{"roles":["ci","reader"]},"groups":["platform","oncall"],"email":"ci@example.com"}"#;
    let md = encode::metadata("envoy.filters.http.jwt_authn", "jwt_payload", claims);
    let path = CallerSettings::default().claims_path;
    let mut group = c.benchmark_group("caller");
    group.bench_function("claims_from_metadata", |bench| {
        bench.iter(|| {
            let mut caller = Caller::default();
            caller.claims_from_metadata(black_box(&md), &path);
            black_box(caller)
        })
    });
    let policy = r#"{"version":"1","default":"deny","settings":{"grant_from":"claims.sub"},"tools":{"search_docs":{
      "rules":[{"name":"readers","require":[{"path":"caller.claims.realm.roles","op":"contains","value":"reader"}]},
               {"name":"scope","require":[{"path":"caller.claims.scope","op":"contains_word","value":"sessions:read"}]}],
      "limits":[{"counter":"c","window":"minute","max":1000000000,"scope":"grant"}]}}}"#;
    let engine = mcp_policy_engine::Engine::new(config_load(policy));
    let mut caller = Caller::default();
    caller.claims_from_metadata(&md, &path);
    let scopes = mcp_policy_engine::Scopes {
        caller: Some(&caller),
        ..SCOPES
    };
    let store = MemoryStore::new();
    let clock = FixedClock::at_secs(1_800_000_000);
    let b = body(1024, "search_docs", 10);
    assert!(matches!(
        engine.decide(&b, &scopes, &store, &clock),
        Verdict::Forward(_)
    ));
    group.bench_function("decide_1KiB_with_claims", |bench| {
        bench.iter(|| black_box(engine.decide(black_box(&b), &scopes, &store, &clock)))
    });
    group.finish();
}

fn config_load(text: &str) -> mcp_policy_engine::Policy {
    mcp_policy_engine::config::load(text.as_bytes()).expect("caller bench policy loads")
}

/// `Policy::decide` for one tool name under 400 pattern entries (plus 100
/// exact ones): an exact hit, a pattern hit, a miss that tries every
/// pattern, and a 300-byte name built to make a backtracking matcher slow.
fn patterns(c: &mut Criterion) {
    let mut tools: Vec<String> = (0..100).map(|i| format!(r#""exact_{i}":{{}}"#)).collect();
    tools.extend((0..200).map(|i| format!(r#""svc{i}_*":{{}}"#)));
    tools.extend((0..199).map(|i| format!(r#""drop{i}_*":{{"action":"deny"}}"#)));
    tools.push(r#""*a*a*a*a*a*a*a*a*b":{"action":"deny"}"#.to_string());
    let text = format!(
        r#"{{"version":"1","default":"deny","tools":{{{}}}}}"#,
        tools.join(",")
    );
    let policy = mcp_policy_engine::config::load(text.as_bytes()).expect("pattern policy loads");
    assert_eq!(policy.patterns.len(), 400);
    let adversarial = "a".repeat(300);
    let mut group = c.benchmark_group("patterns");
    for (label, name) in [
        ("exact", "exact_50"),
        ("pattern", "svc150_list"),
        ("miss", "unlisted_tool_name"),
        ("adversarial-300B", adversarial.as_str()),
    ] {
        group.bench_function(BenchmarkId::new("decide", label), |bench| {
            bench.iter(|| black_box(policy.decide(black_box(name))))
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    // Short by default (2 cores, noisy machine); criterion's CLI flags
    // (--measurement-time, --warm-up-time, --sample-size) override these.
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(30);
    targets = parse, decide, caller, patterns
}
criterion_main!(benches);
