//! The grant on a request: malformed credentials and `require_grant`.
#![allow(clippy::unwrap_used, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::credentials::{self, Grant};
use crate::testing::{FixedClock, MemoryStore};

const CAPPED: &str = r#"{"version":"1","default":"deny","tools":{
    "t":{"limits":[{"counter":"c","window":"minute","max":3,"scope":"grant"}]}}}"#;

fn engine(policy: &str) -> Engine {
    Engine::new(crate::config::load(policy.as_bytes()).unwrap())
}

fn call(id: u32) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"t"}}}}"#)
}

fn decide(e: &Engine, store: &MemoryStore, body: &str, grant: &Grant) -> Verdict {
    let scopes = Scopes {
        grant: grant.key(),
        grant_error: grant.problem(),
        ..Scopes::default()
    };
    e.decide(
        body.as_bytes(),
        &scopes,
        store,
        &FixedClock::at_secs(1_795_478_430),
    )
}

fn auth(value: &str) -> Grant {
    credentials::from_header("authorization", &[value.as_bytes()])
}

#[test]
fn respellings_of_one_credential_share_one_budget() {
    let e = engine(CAPPED);
    let store = MemoryStore::new();
    let spellings = [
        "Bearer s3cret",
        "bearer s3cret",
        "BEARER s3cret",
        "Bearer s3cret \t",
        "bEaReR s3cret",
    ];
    let forwarded = spellings
        .iter()
        .enumerate()
        .filter(|(i, s)| {
            let id = u32::try_from(*i).unwrap();
            matches!(decide(&e, &store, &call(id), &auth(s)), Verdict::Forward(_))
        })
        .count();
    assert_eq!(forwarded, 3);
    // Another token still has its own budget.
    assert!(matches!(
        decide(&e, &store, &call(9), &auth("Bearer other")),
        Verdict::Forward(_)
    ));
}

#[test]
fn a_malformed_credential_refuses_a_call_and_counts_nothing() {
    let e = engine(CAPPED);
    let store = MemoryStore::new();
    for bad in ["Bearer s3cret anything", "Bearer  s3cret", "Bearer a,b"] {
        let Verdict::Reply { reply, calls } = decide(&e, &store, &call(1), &auth(bad)) else {
            panic!("{bad} forwarded");
        };
        assert_eq!(reply.status, 400, "{bad}");
        assert!(reply.body.contains("-32600"), "{}", reply.body);
        assert!(
            reply.body.contains("authorization header"),
            "{}",
            reply.body
        );
        assert!(calls.is_empty());
    }
    let batch = format!(
        r#"[{},{{"jsonrpc":"2.0","id":2,"method":"ping"}}]"#,
        call(1)
    );
    assert!(matches!(
        decide(&e, &store, &batch, &auth("Bearer a b")),
        Verdict::Reply { .. }
    ));
    // Nothing was taken: the whole budget is still there.
    for id in 0..3 {
        assert!(matches!(
            decide(&e, &store, &call(id), &auth("Bearer s3cret")),
            Verdict::Forward(_)
        ));
    }
}

#[test]
fn a_malformed_credential_does_not_refuse_messages_that_are_not_calls() {
    let e = engine(CAPPED);
    let store = MemoryStore::new();
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    ] {
        assert!(
            matches!(
                decide(&e, &store, body, &auth("Bearer a b")),
                Verdict::Forward(_)
            ),
            "{body}"
        );
    }
}

#[test]
fn require_grant_refuses_calls_without_one() {
    let e = engine(r#"{"version":"1","default":"allow","settings":{"require_grant":true}}"#);
    let store = MemoryStore::new();
    let Verdict::Reply { reply, calls } = decide(&e, &store, &call(7), &Grant::Absent) else {
        panic!("forwarded without a grant");
    };
    assert_eq!(reply.status, 200);
    assert!(reply.body.contains("\"id\":7"), "{}", reply.body);
    assert!(
        reply.body.contains("settings.require_grant"),
        "{}",
        reply.body
    );
    assert!(
        reply.body.contains("header authorization"),
        "{}",
        reply.body
    );
    assert_eq!(calls.len(), 1);
    assert!(matches!(
        decide(&e, &store, &call(8), &auth("Bearer x")),
        Verdict::Forward(_)
    ));
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert!(matches!(
        decide(&e, &store, ping, &Grant::Absent),
        Verdict::Forward(_)
    ));
    // Off by default: calls without a grant share the anonymous bucket.
    let e = engine(r#"{"version":"1","default":"allow"}"#);
    assert!(matches!(
        decide(&e, &store, &call(1), &Grant::Absent),
        Verdict::Forward(_)
    ));
}

#[test]
fn settings_are_validated() {
    let bad = crate::config::load(
        br#"{"version":"1","settings":{"require_grant":"yes","hold_body_timeout_ms":0}}"#,
    )
    .unwrap_err();
    let text = format!("{bad:?}");
    assert!(text.contains("settings.require_grant"), "{text}");
    assert!(text.contains("settings.hold_body_timeout_ms"), "{text}");
    let ok = crate::config::load(br#"{"version":"1","settings":{"hold_body_timeout_ms":1500}}"#)
        .unwrap();
    assert_eq!(ok.settings.hold_body_timeout_ms, 1500);
}
