//! Resources and prompts: judged only with their policy section; lists of
//! them filtered like `tools/list`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::testing::{FixedClock, MemoryStore};

const POLICY: &str = r#"{"version":"1","default":"deny",
    "tools":{"echo":{}},
    "resources":{"demo://resource/static/document/*":{},
                 "demo://resource/static/document/secret.md":{"action":"deny","reason":"secret"},
                 "demo://counted/*":{"limits":[{"counter":"reads","window":"minute","max":1,"scope":"grant"}]}},
    "prompts":{"simple-*":{},"complex-prompt":{"action":"deny"}}}"#;

fn engine(text: &str) -> Engine {
    Engine::new(crate::config::load(text.as_bytes()).unwrap())
}

fn decide(e: &Engine, store: &MemoryStore, body: &str) -> Verdict {
    let scopes = Scopes {
        grant: Some(b"Bearer a"),
        ..Scopes::default()
    };
    e.decide(
        body.as_bytes(),
        &scopes,
        store,
        &FixedClock::at_secs(1_795_478_430),
    )
}

fn read(uri: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{{"uri":"{uri}"}}}}"#)
}

fn get(name: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":4,"method":"prompts/get","params":{{"name":"{name}"}}}}"#)
}

fn refused(v: &Verdict) -> Option<String> {
    match v {
        Verdict::Reply { calls, .. } => Some(calls[0].rule.clone().unwrap_or_default()),
        _ => None,
    }
}

#[test]
fn resources_and_prompts_are_judged_by_their_sections() {
    let e = engine(POLICY);
    let s = MemoryStore::new();
    assert!(matches!(
        decide(&e, &s, &read("demo://resource/static/document/a.md")),
        Verdict::Forward(_)
    ));
    assert_eq!(
        refused(&decide(
            &e,
            &s,
            &read("demo://resource/static/document/secret.md")
        ))
        .as_deref(),
        Some("resources.demo://resource/static/document/secret.md")
    );
    assert_eq!(
        refused(&decide(&e, &s, &read("file:///etc/passwd"))).as_deref(),
        Some("default")
    );
    let sub =
        r#"{"jsonrpc":"2.0","id":5,"method":"resources/subscribe","params":{"uri":"file:///x"}}"#;
    assert!(refused(&decide(&e, &s, sub)).is_some());
    assert!(matches!(
        decide(&e, &s, &get("simple-prompt")),
        Verdict::Forward(_)
    ));
    assert_eq!(
        refused(&decide(&e, &s, &get("complex-prompt"))).as_deref(),
        Some("prompts.complex-prompt")
    );
    assert_eq!(
        refused(&decide(&e, &s, &get("other"))).as_deref(),
        Some("default")
    );
}

#[test]
fn resource_limits_count() {
    let e = engine(POLICY);
    let s = MemoryStore::new();
    assert!(matches!(
        decide(&e, &s, &read("demo://counted/1")),
        Verdict::Forward(_)
    ));
    assert_eq!(
        refused(&decide(&e, &s, &read("demo://counted/2"))).as_deref(),
        Some("limits.reads")
    );
}

#[test]
fn unreadable_governed_requests_are_refused() {
    let e = engine(POLICY);
    let s = MemoryStore::new();
    for body in [
        r#"{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"file:///x"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":7}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"URI":"file:///x","uri":"demo://resource/static/document/a"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"prompts/get"}"#,
    ] {
        match decide(&e, &s, body) {
            Verdict::Reply { reply, .. } => assert_eq!(reply.outcome, Outcome::Invalid, "{body}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn without_sections_nothing_changes() {
    let e = engine(r#"{"version":"1","default":"deny","tools":{"echo":{}}}"#);
    let s = MemoryStore::new();
    for body in [
        read("file:///etc/passwd"),
        get("anything"),
        r#"{"jsonrpc":"2.0","method":"resources/read","params":{"uri":7}}"#.to_string(),
        r#"{"jsonrpc":"2.0","id":9,"method":"resources/list"}"#.to_string(),
    ] {
        match decide(&e, &s, &body) {
            Verdict::Forward(f) => assert!(f.calls.is_empty() && f.list_ids.is_empty(), "{body}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn list_answers_lose_what_is_always_denied() {
    let e = engine(POLICY);
    let s = MemoryStore::new();
    let fwd = match decide(
        &e,
        &s,
        r#"{"jsonrpc":"2.0","id":"r","method":"resources/list"}"#,
    ) {
        Verdict::Forward(f) => f,
        other => panic!("{other:?}"),
    };
    let answer = r#"{"jsonrpc":"2.0","id":"r","result":{"resources":[
        {"uri":"demo://resource/static/document/a.md","name":"a"},
        {"uri":"demo://resource/static/document/secret.md","name":"s"},
        {"uri":"file:///etc/passwd","name":"p"}],"nextCursor":"c"}}"#;
    let out = e
        .filter_tools_list(answer.as_bytes(), &fwd.list_ids)
        .unwrap()
        .unwrap();
    assert!(
        out.contains("a.md") && !out.contains("secret") && !out.contains("passwd"),
        "{out}"
    );
    assert!(out.contains(r#""nextCursor":"c""#));

    let mut f = e.event_stream_filter();
    let sse = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{\"prompts\":[{\"name\":\"simple-prompt\"},{\"name\":\"complex-prompt\"}],\"resourceTemplates\":[{\"uriTemplate\":\"demo://resource/static/document/{id}\"},{\"uriTemplate\":\"file:///{path}\"}]}}\n\n";
    let out = e.filter_event_chunk(&mut f, sse.as_bytes(), true, &s);
    let text = String::from_utf8(out.bytes).unwrap();
    assert!(
        text.contains("simple-prompt") && !text.contains("complex-prompt"),
        "{text}"
    );
    assert!(
        text.contains("document/{id}") && !text.contains("file:///"),
        "{text}"
    );
}

/// A tool-result answer does not fit a resource or prompt result: every
/// official client would fail on its schema and lose the reason. So only a
/// `tools/call` takes the policy's `error_style`; items get JSON-RPC errors.
#[test]
fn refused_items_get_json_rpc_errors_whatever_the_error_style() {
    for style in ["tool_result", "intercept"] {
        let text = POLICY.replacen(
            r#""default":"deny","#,
            &format!(r#""default":"deny","settings":{{"error_style":"{style}"}},"#),
            1,
        );
        let e = engine(&text);
        let s = MemoryStore::new();
        for body in [
            read("demo://resource/static/document/secret.md"),
            get("complex-prompt"),
        ] {
            let Verdict::Reply { reply, .. } = decide(&e, &s, &body) else {
                panic!("{style}: {body} was not refused");
            };
            assert!(
                reply.body.contains(r#""error":{"code":-31001"#),
                "{style}: {}",
                reply.body
            );
            assert!(!reply.body.contains("isError"), "{style}: {}", reply.body);
        }
        let call = r#"{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"nope"}}"#;
        let Verdict::Reply { reply, .. } = decide(&e, &s, call) else {
            panic!("{style}: the unlisted tool was not refused");
        };
        assert!(
            reply.body.contains(r#""isError":true"#),
            "{style}: {}",
            reply.body
        );
    }
}
