#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::answer::{CODE_DENIED, CODE_INVALID_REQUEST, CODE_PARSE_ERROR, CODE_RATE_LIMITED};
use crate::testing::{FixedClock, MemoryStore};

const SEED_POLICY: &str = include_str!("../../../envoy/seed-policy.json");
/// 2026-11-24T00:00:30Z: thirty seconds into a UTC minute.
const NOW: u64 = 1_795_478_430;
const GRANT: &[u8] = b"Bearer agent-a";

// ---------------------------------------------------------------- harness

struct Harness {
    engine: Engine,
    store: MemoryStore,
    clock: FixedClock,
}

fn harness(policy_text: &str) -> Harness {
    let policy = crate::config::load(policy_text.as_bytes())
        .unwrap_or_else(|e| panic!("{policy_text} refused: {e:#?}"));
    harness_for(policy)
}

fn harness_for(policy: Policy) -> Harness {
    Harness {
        engine: Engine::new(policy),
        store: MemoryStore::new(),
        clock: FixedClock::at_secs(NOW),
    }
}

fn grant(g: &[u8]) -> Scopes<'_> {
    Scopes {
        grant: Some(g),
        ..Scopes::default()
    }
}

impl Harness {
    fn decide_as(&self, body: &str, scopes: &Scopes<'_>) -> Verdict {
        self.engine
            .decide(body.as_bytes(), scopes, &self.store, &self.clock)
    }

    fn decide(&self, body: &str) -> Verdict {
        self.decide_as(body, &grant(GRANT))
    }

    fn reply(&self, body: &str) -> (LocalReply, Vec<CallRecord>) {
        match self.decide(body) {
            Verdict::Reply { reply, calls } => (reply, calls),
            other => panic!("{body} not answered locally: {other:?}"),
        }
    }

    fn forwarded(&self, body: &str) -> Forwarded {
        match self.decide(body) {
            Verdict::Forward(f) => f,
            other => panic!("{body} not forwarded: {other:?}"),
        }
    }

    fn is_forwarded_as(&self, body: &str, scopes: &Scopes<'_>) -> bool {
        matches!(self.decide_as(body, scopes), Verdict::Forward(_))
    }
}

fn call(id: &str, tool: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
    )
}

fn batch(items: &[String]) -> String {
    format!("[{}]", items.join(","))
}

fn header<'r>(reply: &'r LocalReply, name: &str) -> Option<&'r str> {
    reply
        .headers
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

/// The raw JSON text at `path` in `text` (keys, or indexes for arrays).
fn raw_at(text: &str, path: &[&str]) -> String {
    let doc = json::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
    let mut node = &doc.root;
    for step in path {
        node = match &node.value {
            Value::Array(items) => &items[step.parse::<usize>().unwrap()],
            _ => node
                .get(step)
                .unwrap_or_else(|| panic!("no {step} in {}", node.raw(text))),
        };
    }
    node.raw(text).to_string()
}

/// The decoded string at `path`.
fn str_at(text: &str, path: &[&str]) -> String {
    let raw = raw_at(text, path);
    json::parse(raw.as_bytes())
        .unwrap()
        .root
        .as_str()
        .unwrap_or_else(|| panic!("{raw} is not a string"))
        .to_string()
}

fn has(text: &str, path: &[&str], key: &str) -> bool {
    let raw = raw_at(text, path);
    json::parse(raw.as_bytes()).unwrap().root.get(key).is_some()
}

fn array_len(text: &str) -> usize {
    json::parse(text.as_bytes())
        .unwrap()
        .root
        .as_array()
        .unwrap()
        .len()
}

/// Asserts a 4xx answer with a JSON-RPC error of `code` and id null.
fn assert_invalid(h: &Harness, body: &str, status: u32, code: i64) -> String {
    let (reply, calls) = h.reply(body);
    assert_eq!(reply.status, status, "{body}: {}", reply.body);
    assert_eq!(reply.outcome, Outcome::Invalid);
    assert_eq!(raw_at(&reply.body, &["error", "code"]), code.to_string());
    assert_eq!(raw_at(&reply.body, &["id"]), "null");
    assert_eq!(str_at(&reply.body, &["jsonrpc"]), "2.0");
    assert!(calls.is_empty());
    str_at(&reply.body, &["error", "message"])
}

const DENY_ALL_BUT_ECHO: &str = r#"{"version":"1","default":"deny","tools":{"echo":{},"rm":{"action":"deny","reason":"no deleting"}}}"#;

// ---------------------------------------------------------------- forwarding

#[test]
fn allowed_call_is_forwarded_and_recorded() {
    let h = harness(SEED_POLICY);
    let f = h.forwarded(&call("1", "claude_code_session"));
    assert_eq!(
        f.calls,
        [CallRecord {
            tool: "claude_code_session".into(),
            outcome: Outcome::Allowed,
            rule: None,
            reason: None,
        }]
    );
    assert_eq!(f.charges.len(), 1);
    assert!(f.list_ids.is_empty());
}

#[test]
fn allowed_call_without_limits_takes_no_charge() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let f = h.forwarded(&call("1", "echo"));
    assert!(f.charges.is_empty());
    assert_eq!(h.store.keys(), 0);
}

#[test]
fn batch_of_allowed_calls_is_forwarded() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let f = h.forwarded(&batch(&[call("1", "echo"), call("2", "echo")]));
    assert_eq!(f.calls.len(), 2);
    assert!(f.calls.iter().all(|c| c.outcome == Outcome::Allowed));
}

#[test]
fn protocol_messages_pass_under_default_deny() {
    let h = harness(SEED_POLICY);
    for body in [
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":2,"method":"resources/list"}"#,
        r#"{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"x"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
        r#"{"jsonrpc":"2.0","id":7,"result":{"roots":[]}}"#,
        r#"{"jsonrpc":"2.0","id":4,"method":"tools/list"}"#,
    ] {
        let f = h.forwarded(body);
        assert!(f.calls.is_empty(), "{body}");
        assert!(f.charges.is_empty(), "{body}");
    }
}

#[test]
fn tools_list_ids_are_collected_for_answer_filtering() {
    let h = harness(SEED_POLICY);
    let f = h.forwarded(&batch(&[
        r#"{"jsonrpc":"2.0","id":2,"method":"tools/list"}"#.to_string(),
        r#"{"jsonrpc":"2.0","id":"x","method":"tools/list","params":{"cursor":"c"}}"#.to_string(),
        r#"{"jsonrpc":"2.0","method":"tools/list"}"#.to_string(),
    ]));
    assert_eq!(f.list_ids, [ListId::Num(2.0), ListId::Str("x".into())]);
}

// ---------------------------------------------------------------- refusals

#[test]
fn denied_call_gets_a_jsonrpc_error_with_http_200() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let (reply, calls) = h.reply(&call("\"req-1\"", "rm"));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.outcome, Outcome::Denied);
    assert_eq!(header(&reply, "content-type"), Some("application/json"));
    assert_eq!(header(&reply, "x-mcp-policy"), Some("denied"));
    assert_eq!(header(&reply, "retry-after"), None);
    let body = &reply.body;
    assert_eq!(str_at(body, &["jsonrpc"]), "2.0");
    assert_eq!(raw_at(body, &["id"]), "\"req-1\"");
    assert_eq!(raw_at(body, &["error", "code"]), CODE_DENIED.to_string());
    let message = str_at(body, &["error", "message"]);
    assert!(message.contains("\"rm\""), "{message}");
    assert!(message.contains("no deleting"), "{message}");
    assert_eq!(str_at(body, &["error", "data", "tool"]), "rm");
    assert_eq!(str_at(body, &["error", "data", "decision"]), "deny");
    assert_eq!(str_at(body, &["error", "data", "rule"]), "tools.rm");
    assert_eq!(str_at(body, &["error", "data", "reason"]), "no deleting");
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].outcome, Outcome::Denied);
    assert_eq!(calls[0].rule.as_deref(), Some("tools.rm"));
}

#[test]
fn default_deny_refusal_names_the_default_rule() {
    let h = harness(SEED_POLICY);
    let (reply, _) = h.reply(&call("1", "claude_code"));
    assert_eq!(str_at(&reply.body, &["error", "data", "rule"]), "default");
    assert!(str_at(&reply.body, &["error", "message"]).contains("\"claude_code\""));
}

#[test]
fn refusal_echoes_the_id_exactly() {
    let h = harness(DENY_ALL_BUT_ECHO);
    for id in [
        r#""abc""#,
        r#""""#,
        r#""a\"b\u0041\n""#,
        r#""😀""#,
        "0",
        "7",
        "-3",
        "1.50",
        "-0.0",
        "1e3",
        "1E+2",
        "12345678901234567890",
        "123456789012345678901234567890",
    ] {
        let (reply, _) = h.reply(&call(id, "rm"));
        assert_eq!(raw_at(&reply.body, &["id"]), id, "{}", reply.body);
    }
}

#[test]
fn tool_result_style_answers_with_an_error_result() {
    let h = harness(
        r#"{"version":"1","default":"deny","tools":{"rm":{"action":"deny","reason":"no deleting"}},"settings":{"error_style":"tool_result"}}"#,
    );
    let (reply, _) = h.reply(&call("9", "rm"));
    let body = &reply.body;
    assert_eq!(reply.status, 200);
    assert_eq!(raw_at(body, &["id"]), "9");
    assert!(!has(body, &[], "error"), "{body}");
    assert_eq!(raw_at(body, &["result", "isError"]), "true");
    assert_eq!(array_len(&raw_at(body, &["result", "content"])), 1);
    assert_eq!(str_at(body, &["result", "content", "0", "type"]), "text");
    let text = str_at(body, &["result", "content", "0", "text"]);
    assert!(text.starts_with("[POLICY DENIED] "), "{text}");
    assert!(text.contains("no deleting"), "{text}");
}

// ---------------------------------------------------------------- batches

#[test]
fn batch_with_one_refused_call_answers_every_request_element() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let body = batch(&[
        call("1", "echo"),
        call("\"b\"", "rm"),
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{}}"#.to_string(),
        r#"{"jsonrpc":"2.0","id":3,"method":"ping"}"#.to_string(),
        r#"{"jsonrpc":"2.0","id":99,"result":{}}"#.to_string(),
    ]);
    let (reply, calls) = h.reply(&body);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.outcome, Outcome::Denied);
    let out = &reply.body;
    assert_eq!(array_len(out), 3, "{out}");
    // In request order: the allowed call, the refused call, the ping.
    assert_eq!(raw_at(out, &["0", "id"]), "1");
    assert_eq!(raw_at(out, &["1", "id"]), "\"b\"");
    assert_eq!(raw_at(out, &["2", "id"]), "3");
    for i in ["0", "2"] {
        assert_eq!(raw_at(out, &[i, "error", "code"]), CODE_DENIED.to_string());
        assert!(str_at(out, &[i, "error", "message"]).contains("Not forwarded"));
    }
    assert_eq!(
        str_at(out, &["1", "error", "data", "reason"]),
        "no deleting"
    );
    assert_eq!(str_at(out, &["1", "error", "data", "tool"]), "rm");
    // Both calls are recorded as not forwarded.
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].rule.as_deref(), Some("batch"));
    assert_eq!(calls[1].rule.as_deref(), Some("tools.rm"));
}

#[test]
fn refused_batch_of_notifications_and_one_call_has_one_element() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let body = batch(&[
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_string(),
        call("5", "rm"),
    ]);
    let (reply, _) = h.reply(&body);
    assert_eq!(array_len(&reply.body), 1);
    assert_eq!(raw_at(&reply.body, &["0", "id"]), "5");
}

#[test]
fn single_refused_message_is_not_wrapped_in_an_array() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let (reply, _) = h.reply(&call("5", "rm"));
    assert!(reply.body.starts_with('{'), "{}", reply.body);
}

#[test]
fn refused_batch_consumes_no_quota() {
    let h = harness(SEED_POLICY);
    for _ in 0..5 {
        h.reply(&batch(&[
            call("1", "claude_code_session"),
            call("2", "claude_code"),
        ]));
    }
    for i in 0..10 {
        assert!(
            matches!(
                h.decide(&call("1", "claude_code_session")),
                Verdict::Forward(_)
            ),
            "call {i}"
        );
    }
}

#[test]
fn empty_batch_is_an_invalid_request() {
    let h = harness(SEED_POLICY);
    let message = assert_invalid(&h, "[]", 400, CODE_INVALID_REQUEST);
    assert!(message.contains("empty batch"), "{message}");
}

#[test]
fn nested_arrays_are_invalid_requests() {
    let h = harness(SEED_POLICY);
    let message = assert_invalid(
        &h,
        &format!("[[{}]]", call("1", "claude_code")),
        400,
        CODE_INVALID_REQUEST,
    );
    assert!(message.contains("batch element 0"), "{message}");
    assert!(message.contains("array"), "{message}");
}

#[test]
fn one_invalid_batch_element_refuses_the_whole_batch() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let body = batch(&[
        call("1", "echo"),
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#.to_string(),
    ]);
    let message = assert_invalid(&h, &body, 400, CODE_INVALID_REQUEST);
    assert!(message.contains("batch element 1"), "{message}");
}

// ---------------------------------------------------------------- invalid requests

#[test]
fn tool_calls_that_cannot_be_judged_are_invalid_requests() {
    let h = harness(DENY_ALL_BUT_ECHO);
    for body in [
        // notification
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"rm"}}"#,
        // null id
        r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"rm"}}"#,
        // missing name
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{}}}"#,
        // non-string name
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":["rm"]}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":42}}"#,
        // non-object params
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["rm"]}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
        // bad envelope
        r#"{"id":1,"method":"tools/call","params":{"name":"rm"}}"#,
        r#"{"jsonrpc":"2.0","id":{},"method":"tools/call","params":{"name":"rm"}}"#,
    ] {
        assert_invalid(&h, body, 400, CODE_INVALID_REQUEST);
    }
}

#[test]
fn name_key_in_another_case_is_refused() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let message = assert_invalid(
        &h,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"x"}}"#,
        400,
        CODE_INVALID_REQUEST,
    );
    assert!(message.contains("\"Name\""), "{message}");
}

#[test]
fn case_variant_name_next_to_an_allowed_name_is_refused() {
    // A case-folding server could run "rm" while we judged "echo".
    let h = harness(DENY_ALL_BUT_ECHO);
    assert_invalid(
        &h,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","NAME":"rm"}}"#,
        400,
        CODE_INVALID_REQUEST,
    );
}

#[test]
fn method_key_in_another_case_is_not_a_method() {
    let h = harness(DENY_ALL_BUT_ECHO);
    assert_invalid(
        &h,
        r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"rm"}}"#,
        400,
        CODE_INVALID_REQUEST,
    );
}

#[test]
fn unreadable_bodies_are_parse_errors() {
    let h = harness(SEED_POLICY);
    for body in [
        "",
        "not json",
        "{\"jsonrpc\":\"2.0\",",
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"} {}",
        "\u{feff}{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}",
    ] {
        let message = assert_invalid(&h, body, 400, CODE_PARSE_ERROR);
        assert!(message.starts_with("Parse error: "), "{message}");
    }
}

#[test]
fn duplicate_name_keys_are_parse_errors_not_a_bypass() {
    let h = harness(DENY_ALL_BUT_ECHO);
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","name":"rm"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","n\u0061me":"rm"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"ping","method":"tools/call","params":{"name":"rm"}}"#,
    ] {
        let message = assert_invalid(&h, body, 400, CODE_PARSE_ERROR);
        assert!(message.contains("duplicate key"), "{message}");
    }
}

#[test]
fn invalid_utf8_body_is_a_parse_error() {
    let h = harness(SEED_POLICY);
    let verdict = h.engine.decide(
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"\xff\"}}",
        &Scopes::default(),
        &h.store,
        &h.clock,
    );
    match verdict {
        Verdict::Reply { reply, .. } => {
            assert_eq!(reply.status, 400);
            assert_eq!(
                raw_at(&reply.body, &["error", "code"]),
                CODE_PARSE_ERROR.to_string()
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn nesting_past_the_configured_depth_is_a_parse_error() {
    let h = harness(r#"{"version":"1","default":"allow","settings":{"max_depth":3}}"#);
    h.forwarded(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{}}}"#,
    );
    let message = assert_invalid(
        &h,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","arguments":{"a":{}}}}"#,
        400,
        CODE_PARSE_ERROR,
    );
    assert!(message.contains("nesting deeper than 3"), "{message}");
}

// ---------------------------------------------------------------- escapes

#[test]
fn escaped_tools_call_method_is_still_judged() {
    let h = harness(DENY_ALL_BUT_ECHO);
    for method in [r#"tools\/call"#, r#"\u0074ools/call"#, r#"tools\u002Fcall"#] {
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{"name":"rm"}}}}"#);
        let (reply, _) = h.reply(&body);
        assert_eq!(reply.outcome, Outcome::Denied, "{method}");
    }
}

#[test]
fn escaped_tool_name_is_judged_unescaped() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let (reply, _) = h.reply(&call("1", r#"\u0072m"#));
    assert_eq!(str_at(&reply.body, &["error", "data", "tool"]), "rm");
    assert_eq!(str_at(&reply.body, &["error", "data", "rule"]), "tools.rm");
    h.forwarded(&call("2", r#"e\u0063ho"#));
}

#[test]
fn escaped_name_counts_against_the_same_limit() {
    let h = harness(SEED_POLICY);
    for i in 0..10 {
        let name = if i % 2 == 0 {
            "claude_code_session"
        } else {
            r#"claude_code_\u0073ession"#
        };
        h.forwarded(&call("1", name));
    }
    let (reply, _) = h.reply(&call("1", r#"\u0063laude_code_session"#));
    assert_eq!(reply.outcome, Outcome::RateLimited);
}

#[test]
fn tool_names_are_exact_in_requests() {
    let h = harness(DENY_ALL_BUT_ECHO);
    for name in ["Echo", " echo", "echo ", "ech\u{f6}"] {
        let (reply, _) = h.reply(&call("1", name));
        assert_eq!(
            str_at(&reply.body, &["error", "data", "rule"]),
            "default",
            "{name:?}"
        );
    }
}

// ---------------------------------------------------------------- rate limits

#[test]
fn seed_policy_allows_ten_calls_a_minute_per_grant() {
    let h = harness(SEED_POLICY);
    for i in 0..10 {
        assert!(
            h.is_forwarded_as(&call("1", "claude_code_session"), &grant(GRANT)),
            "call {i}"
        );
    }
    let verdict = h.decide(&call("\"eleventh\"", "claude_code_session"));
    let Verdict::Reply { reply, calls } = verdict else {
        panic!("11th call forwarded");
    };
    assert_eq!(reply.status, 200);
    assert_eq!(reply.outcome, Outcome::RateLimited);
    assert_eq!(header(&reply, "x-mcp-policy"), Some("rate_limited"));
    // Sliding: the ten units all leave the window 60 s after they were taken.
    assert_eq!(header(&reply, "retry-after"), Some("60"));
    let body = &reply.body;
    assert_eq!(raw_at(body, &["id"]), "\"eleventh\"");
    assert_eq!(
        raw_at(body, &["error", "code"]),
        CODE_RATE_LIMITED.to_string()
    );
    assert_eq!(str_at(body, &["error", "data", "decision"]), "rate_limited");
    assert_eq!(
        str_at(body, &["error", "data", "counter"]),
        "claude_code_session_rate"
    );
    assert_eq!(str_at(body, &["error", "data", "window"]), "minute");
    assert_eq!(raw_at(body, &["error", "data", "max"]), "10");
    assert_eq!(
        raw_at(body, &["error", "data", "retry_after_seconds"]),
        "60"
    );
    assert_eq!(
        str_at(body, &["error", "data", "rule"]),
        "limits.claude_code_session_rate"
    );
    let reason = str_at(body, &["error", "data", "reason"]);
    assert!(
        reason.contains("10 calls per minute (per grant)"),
        "{reason}"
    );
    assert_eq!(calls[0].outcome, Outcome::RateLimited);
}

#[test]
fn another_grant_has_its_own_budget() {
    let h = harness(SEED_POLICY);
    for _ in 0..10 {
        assert!(h.is_forwarded_as(&call("1", "claude_code_session"), &grant(b"A")));
    }
    assert!(!h.is_forwarded_as(&call("1", "claude_code_session"), &grant(b"A")));
    assert!(h.is_forwarded_as(&call("1", "claude_code_session"), &grant(b"B")));
}

#[test]
fn budget_returns_sixty_seconds_after_it_was_spent() {
    let h = harness(SEED_POLICY);
    for _ in 0..10 {
        h.forwarded(&call("1", "claude_code_session"));
    }
    assert!(!h.is_forwarded_as(&call("1", "claude_code_session"), &grant(GRANT)));
    // The next UTC minute starts 30 s later: still refused (no 2 x max).
    h.clock.advance_secs(30);
    assert!(!h.is_forwarded_as(&call("1", "claude_code_session"), &grant(GRANT)));
    h.clock.advance_secs(29);
    assert!(!h.is_forwarded_as(&call("1", "claude_code_session"), &grant(GRANT)));
    h.clock.advance_secs(1);
    assert!(h.is_forwarded_as(&call("1", "claude_code_session"), &grant(GRANT)));
}

#[test]
fn fixed_algorithm_budget_returns_in_the_next_utc_minute() {
    let h = harness(
        r#"{"version":"1","default":"deny","tools":{"claude_code_session":{"limits":[
            {"counter":"claude_code_session_rate","window":"minute","max":10,"scope":"grant","algorithm":"fixed"}]}}}"#,
    );
    for _ in 0..10 {
        h.forwarded(&call("1", "claude_code_session"));
    }
    let (reply, _) = h.reply(&call("1", "claude_code_session"));
    assert_eq!(header(&reply, "retry-after"), Some("30"));
    h.clock.advance_secs(30);
    assert!(h.is_forwarded_as(&call("1", "claude_code_session"), &grant(GRANT)));
}

#[test]
fn limit_algorithm_setting_makes_every_limit_fixed() {
    let h = harness(
        r#"{"version":"1","default":"deny","settings":{"limit_algorithm":"fixed"},"tools":{"claude_code_session":{"limits":[
            {"counter":"claude_code_session_rate","window":"minute","max":10,"scope":"grant"}]}}}"#,
    );
    for _ in 0..10 {
        h.forwarded(&call("1", "claude_code_session"));
    }
    h.clock.advance_secs(30);
    assert!(h.is_forwarded_as(&call("1", "claude_code_session"), &grant(GRANT)));
}

#[test]
fn requests_without_a_grant_share_one_anonymous_budget() {
    let h = harness(SEED_POLICY);
    let none = Scopes::default();
    let empty = grant(b"");
    for i in 0..10 {
        let scopes = if i % 2 == 0 { &none } else { &empty };
        assert!(h.is_forwarded_as(&call("1", "claude_code_session"), scopes));
    }
    assert!(!h.is_forwarded_as(&call("1", "claude_code_session"), &none));
    assert!(!h.is_forwarded_as(&call("1", "claude_code_session"), &empty));
    assert!(h.is_forwarded_as(&call("1", "claude_code_session"), &grant(b"named")));
}

#[test]
fn tools_naming_one_counter_share_its_budget() {
    let h = harness(
        r#"{"version":"1","default":"deny","tools":{
            "a":{"limits":[{"counter":"shared","window":"minute","max":3,"scope":"session"}]},
            "b":{"limits":[{"counter":"shared","window":"minute","max":3,"scope":"session"}]}}}"#,
    );
    let session = Scopes {
        session: Some(b"s-1"),
        ..Scopes::default()
    };
    assert!(h.is_forwarded_as(&call("1", "a"), &session));
    assert!(h.is_forwarded_as(&call("2", "b"), &session));
    assert!(h.is_forwarded_as(&call("3", "a"), &session));
    assert!(!h.is_forwarded_as(&call("4", "b"), &session));
    let other = Scopes {
        session: Some(b"s-2"),
        ..Scopes::default()
    };
    assert!(h.is_forwarded_as(&call("5", "b"), &other));
}

#[test]
fn global_scope_ignores_who_calls() {
    let h = harness(
        r#"{"version":"1","tools":{"t":{"limits":[{"counter":"g","window":"hour","max":2}]}}}"#,
    );
    assert!(h.is_forwarded_as(&call("1", "t"), &grant(b"a")));
    assert!(h.is_forwarded_as(&call("1", "t"), &grant(b"b")));
    assert!(!h.is_forwarded_as(&call("1", "t"), &grant(b"c")));
}

#[test]
fn source_scope_uses_the_downstream_address() {
    let h = harness(
        r#"{"version":"1","tools":{"t":{"limits":[{"counter":"s","window":"day","max":1,"scope":"source"}]}}}"#,
    );
    let from = |addr: &'static [u8]| Scopes {
        source: Some(addr),
        ..Scopes::default()
    };
    assert!(h.is_forwarded_as(&call("1", "t"), &from(b"10.0.0.1:5000")));
    assert!(!h.is_forwarded_as(&call("1", "t"), &from(b"10.0.0.1:5000")));
    assert!(h.is_forwarded_as(&call("1", "t"), &from(b"10.0.0.2:5000")));
}

#[test]
fn wildcard_limit_counts_every_tool() {
    let h = harness(
        r#"{"version":"1","default":"allow","tools":{"*":{"limits":[{"counter":"all","window":"minute","max":3}]}}}"#,
    );
    h.forwarded(&call("1", "a"));
    h.forwarded(&call("2", "b"));
    h.forwarded(&call("3", "c"));
    assert_eq!(h.reply(&call("4", "d")).0.outcome, Outcome::RateLimited);
}

#[test]
fn exhausted_second_limit_gives_back_the_first() {
    let h = harness(
        r#"{"version":"1","tools":{"t":{"limits":[
            {"counter":"wide","window":"minute","max":100},
            {"counter":"narrow","window":"minute","max":1}]},
            "u":{"limits":[{"counter":"wide","window":"minute","max":100}]}}}"#,
    );
    h.forwarded(&call("1", "t"));
    for _ in 0..5 {
        assert_eq!(h.reply(&call("1", "t")).0.outcome, Outcome::RateLimited);
    }
    // Only the first call took from "wide": 99 left.
    for i in 0..99 {
        assert!(
            h.is_forwarded_as(&call("1", "u"), &grant(GRANT)),
            "call {i}"
        );
    }
    assert!(!h.is_forwarded_as(&call("1", "u"), &grant(GRANT)));
}

#[test]
fn batch_over_the_limit_is_refused_whole_and_takes_nothing() {
    let h = harness(SEED_POLICY);
    for _ in 0..9 {
        h.forwarded(&call("1", "claude_code_session"));
    }
    let (reply, _) = h.reply(&batch(&[
        call("1", "claude_code_session"),
        call("2", "claude_code_session"),
    ]));
    assert_eq!(reply.outcome, Outcome::RateLimited);
    assert_eq!(array_len(&reply.body), 2);
    // The tenth unit is still there.
    h.forwarded(&call("3", "claude_code_session"));
}

#[test]

fn batch_rate_refusal_names_the_element_that_exhausted_the_limit() {
    let h = harness(SEED_POLICY);
    for _ in 0..9 {
        h.forwarded(&call("1", "claude_code_session"));
    }
    let (reply, _) = h.reply(&batch(&[
        call("\"fits\"", "claude_code_session"),
        call("\"over\"", "claude_code_session"),
    ]));
    assert_eq!(
        raw_at(&reply.body, &["1", "error", "code"]),
        CODE_RATE_LIMITED.to_string(),
        "{}",
        reply.body
    );
    assert_eq!(
        raw_at(&reply.body, &["0", "error", "code"]),
        CODE_DENIED.to_string()
    );
}

#[test]
fn unavailable_store_fails_closed() {
    let h = harness(SEED_POLICY);
    h.forwarded(&call("1", "claude_code_session"));
    h.store.inject_conflicts.set(10_000);
    let (reply, _) = h.reply(&call("2", "claude_code_session"));
    assert_eq!(reply.outcome, Outcome::RateLimited);
    assert!(str_at(&reply.body, &["error", "data", "reason"]).contains("unavailable"));
}

#[test]
fn refund_gives_the_units_back() {
    let h = harness(SEED_POLICY);
    let mut last = Vec::new();
    for _ in 0..10 {
        last = h.forwarded(&call("1", "claude_code_session")).charges;
    }
    assert!(!h.is_forwarded_as(&call("1", "claude_code_session"), &grant(GRANT)));
    h.engine.refund(&h.store, &last);
    assert!(h.is_forwarded_as(&call("1", "claude_code_session"), &grant(GRANT)));
}

#[test]
fn hash_key_changes_fingerprints_and_hides_the_credential() {
    let a = harness(SEED_POLICY);
    let b = harness(r#"{"version":"1","default":"deny","settings":{"grant_hash_key":"secret-1"}}"#);
    let fa = a.engine.grant_fingerprint(Some(GRANT));
    let fb = b.engine.grant_fingerprint(Some(GRANT));
    assert_ne!(fa, fb);
    assert_eq!(fa.len(), 16);
    assert!(!fa.contains("agent"));
    assert_eq!(fa, a.engine.grant_fingerprint(Some(GRANT)));
    assert_eq!(
        a.engine.grant_fingerprint(None),
        a.engine.grant_fingerprint(Some(b""))
    );
}

#[test]
fn shared_data_keys_never_contain_the_credential() {
    let h = harness(SEED_POLICY);
    h.forwarded(&call("1", "claude_code_session"));
    let f = h.forwarded(&call("1", "claude_code_session"));
    assert!(f.charges.iter().all(|c| !c.key.contains("agent-a")));
}

// ---------------------------------------------------------------- increment_from

const SPEND: &str = r#"{"version":"1","tools":{"run":{"limits":[{"counter":"usd","window":"day","max":1,
    "increment_from":"args.budget","default_increment":0.5}]}}}"#;

fn run(budget: Option<&str>) -> String {
    match budget {
        Some(b) => format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"run","arguments":{{"budget":{b}}}}}}}"#
        ),
        None => call("1", "run"),
    }
}

#[test]
fn spend_counter_adds_the_argument_value() {
    let h = harness(SPEND);
    for _ in 0..4 {
        h.forwarded(&run(Some("0.25")));
    }
    assert_eq!(h.reply(&run(Some("0.001"))).0.outcome, Outcome::RateLimited);
    h.forwarded(&run(Some("0")));
}

#[test]
fn spend_counter_uses_the_default_when_the_argument_is_missing() {
    let h = harness(SPEND);
    h.forwarded(&run(None));
    h.forwarded(&run(None));
    assert_eq!(h.reply(&run(None)).0.outcome, Outcome::RateLimited);
}

#[test]
fn spend_counter_refuses_non_numeric_or_negative_amounts() {
    let h = harness(SPEND);
    for bad in [r#""0.1""#, "-1", "null", "[1]"] {
        let (reply, _) = h.reply(&run(Some(bad)));
        assert_eq!(reply.outcome, Outcome::Denied, "{bad}");
        assert_eq!(
            str_at(&reply.body, &["error", "data", "rule"]),
            "limits.usd"
        );
    }
}

#[test]
fn spend_counter_without_default_refuses_a_missing_argument() {
    let h = harness(
        r#"{"version":"1","tools":{"run":{"limits":[{"counter":"usd","window":"day","max":5,"increment_from":"args.budget"}]}}}"#,
    );
    let (reply, _) = h.reply(&run(None));
    assert!(str_at(&reply.body, &["error", "data", "reason"]).contains("does not give"));
}

#[test]
fn spend_amounts_are_rounded_up_to_thousandths() {
    let h = harness(SPEND);
    // 0.0001 counts as 0.001: a thousand of them fill a budget of 1.
    for i in 0..1000 {
        assert!(
            h.is_forwarded_as(&run(Some("0.0001")), &grant(GRANT)),
            "call {i}"
        );
    }
    assert!(!h.is_forwarded_as(&run(Some("0.0001")), &grant(GRANT)));
}

// ---------------------------------------------------------------- approvals

fn approval_policy() -> Policy {
    crate::config::load(
        br#"{"version":"1","default":"deny",
            "approval":{"cluster":"approver","timeout_ms":1000},
            "tools":{"launch":{"action":"approve","reason":"a human must agree",
                "limits":[{"counter":"l","window":"minute","max":2}]},"echo":{}}}"#,
    )
    .unwrap()
}

fn pending(h: &Harness, body: &str) -> Box<PendingApproval> {
    match h.decide_as(
        body,
        &Scopes {
            grant: Some(GRANT),
            session: Some(b"sess-1"),
            request_id: Some("req-9"),
            ..Scopes::default()
        },
    ) {
        Verdict::Approve(p) => p,
        other => panic!("{body} not held for approval: {other:?}"),
    }
}

fn launch(id: &str) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"launch","arguments":{{"cwd":"/work/x"}}}}}}"#
    )
}

#[test]
fn approval_question_describes_the_call() {
    let h = harness_for(approval_policy());
    let p = pending(&h, &launch("\"j-1\""));
    assert_eq!(p.service.cluster, "approver");
    let q = &p.body;
    assert_eq!(str_at(q, &["tool"]), "launch");
    assert_eq!(raw_at(q, &["arguments"]), r#"{"cwd":"/work/x"}"#);
    assert_eq!(raw_at(q, &["jsonrpc_id"]), "\"j-1\"");
    assert_eq!(str_at(q, &["session"]), "sess-1");
    assert_eq!(str_at(q, &["request_id"]), "req-9");
    assert_eq!(
        str_at(q, &["grant"]),
        h.engine.grant_fingerprint(Some(GRANT))
    );
    assert!(!q.contains("agent-a"), "{q}");
    assert_eq!(str_at(q, &["reason"]), "a human must agree");
}

#[test]
fn approved_call_is_forwarded_with_its_charges() {
    let h = harness_for(approval_policy());
    let p = pending(&h, &launch("1"));
    let verdict = h
        .engine
        .resolve_approval(*p, Some((200, br#"{"decision":"allow"}"#)), &h.store);
    match verdict {
        Verdict::Forward(f) => assert_eq!(f.charges.len(), 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn refused_approval_answers_with_the_approver_reason_and_gives_back_units() {
    let h = harness_for(approval_policy());
    for answer in [
        Some((
            200,
            br#"{"decision":"deny","reason":"not today"}"#.as_slice(),
        )),
        Some((200, br#"{"decision":"maybe"}"#.as_slice())),
        Some((200, b"nope".as_slice())),
        Some((503, b"".as_slice())),
        None,
    ] {
        let p = pending(&h, &launch("\"q\""));
        let verdict = h.engine.resolve_approval(*p, answer, &h.store);
        let Verdict::Reply { reply, calls } = verdict else {
            panic!("{answer:?} forwarded");
        };
        assert_eq!(reply.status, 200);
        assert_eq!(reply.outcome, Outcome::ApprovalRefused);
        assert_eq!(raw_at(&reply.body, &["id"]), "\"q\"");
        assert_eq!(raw_at(&reply.body, &["error", "code"]), "-31003");
        assert_eq!(calls[0].outcome, Outcome::ApprovalRefused);
    }
    // Five refusals on a limit of two: the units were given back each time.
    pending(&h, &launch("1"));
    pending(&h, &launch("2"));
}

#[test]
fn approval_refusal_reason_is_reported() {
    let h = harness_for(approval_policy());
    let p = pending(&h, &launch("1"));
    let Verdict::Reply { reply, .. } = h.engine.resolve_approval(
        *p,
        Some((200, br#"{"decision":"deny","reason":"not today"}"#)),
        &h.store,
    ) else {
        panic!("forwarded");
    };
    let reason = str_at(&reply.body, &["error", "data", "reason"]);
    assert!(reason.contains("not today"), "{reason}");
}

#[test]
fn approval_inside_a_batch_is_refused() {
    let h = harness_for(approval_policy());
    let (reply, _) = h.reply(&batch(&[launch("1"), call("2", "echo")]));
    assert_eq!(reply.outcome, Outcome::ApprovalRefused);
    assert!(str_at(&reply.body, &["0", "error", "data", "reason"]).contains("batch"));
}

#[test]
fn approval_without_a_service_is_refused() {
    let mut policy = approval_policy();
    policy.approval = None;
    let h = harness_for(policy);
    let (reply, _) = h.reply(&launch("1"));
    assert_eq!(reply.outcome, Outcome::ApprovalRefused);
    assert!(str_at(&reply.body, &["error", "data", "reason"]).contains("no approval service"));
}

// ---------------------------------------------------------------- headers and size

#[test]
fn compressed_bodies_are_refused_with_415() {
    let h = harness(SEED_POLICY);
    for enc in [
        "gzip",
        "GZIP",
        "br",
        "deflate",
        "identity, gzip",
        "x-custom",
    ] {
        let reply = h.engine.check_headers(None, Some(enc)).unwrap();
        assert_eq!(reply.status, 415, "{enc}");
        assert_eq!(reply.outcome, Outcome::Invalid);
        assert!(str_at(&reply.body, &["error", "message"]).contains(enc));
    }
}

#[test]
fn identity_encoding_is_accepted() {
    let h = harness(SEED_POLICY);
    for enc in [
        "identity",
        "Identity",
        " identity ",
        "identity, identity",
        "",
    ] {
        assert_eq!(h.engine.check_headers(None, Some(enc)), None, "{enc:?}");
    }
    assert_eq!(h.engine.check_headers(None, None), None);
}

#[test]
fn content_length_over_the_limit_is_413() {
    let h = harness(r#"{"version":"1","settings":{"max_body_bytes":1000}}"#);
    assert_eq!(h.engine.check_headers(Some("1000"), None), None);
    assert_eq!(h.engine.check_headers(Some(" 12 "), None), None);
    let reply = h.engine.check_headers(Some("1001"), None).unwrap();
    assert_eq!(reply.status, 413);
    assert!(str_at(&reply.body, &["error", "message"]).contains("1001"));
}

#[test]
fn non_numeric_content_length_is_400() {
    let h = harness(SEED_POLICY);
    for len in [
        "abc",
        "-1",
        "1e3",
        "",
        "12 34",
        "0x10",
        "99999999999999999999999",
    ] {
        let reply = h.engine.check_headers(Some(len), None).unwrap();
        assert_eq!(reply.status, 400, "{len:?}");
    }
}

#[test]
fn encoding_is_checked_before_length() {
    let h = harness(SEED_POLICY);
    assert_eq!(
        h.engine
            .check_headers(Some("abc"), Some("gzip"))
            .unwrap()
            .status,
        415
    );
}

#[test]
fn check_size_refuses_only_past_the_limit() {
    let h = harness(SEED_POLICY);
    let limit = 1024 * 1024;
    assert_eq!(h.engine.check_size(0), None);
    assert_eq!(h.engine.check_size(limit), None);
    let reply = h.engine.check_size(limit + 1).unwrap();
    assert_eq!(reply.status, 413);
    assert_eq!(header(&reply, "x-mcp-policy"), Some("invalid"));
    assert_eq!(h.engine.check_size(u64::MAX).unwrap().status, 413);
}

// ---------------------------------------------------------------- routing headers

#[test]
fn routing_header_that_disagrees_with_the_body_is_refused() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let routing = RoutingHeaders {
        method: Some("tools/call"),
        name: Some("echo"),
    };
    let verdict = h.engine.decide_with_routing(
        call("1", "rm").as_bytes(),
        &Scopes::default(),
        &routing,
        &h.store,
        &h.clock,
    );
    let Verdict::Reply { reply, .. } = verdict else {
        panic!("forwarded");
    };
    assert_eq!(reply.status, 400);
    assert_eq!(raw_at(&reply.body, &["error", "code"]), "-32020");
}

#[test]
fn routing_header_that_agrees_is_accepted() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let routing = RoutingHeaders {
        method: Some("tools/call"),
        name: Some("echo"),
    };
    let verdict = h.engine.decide_with_routing(
        call("1", "echo").as_bytes(),
        &Scopes::default(),
        &routing,
        &h.store,
        &h.clock,
    );
    assert!(matches!(verdict, Verdict::Forward(_)));
}

// ---------------------------------------------------------------- answers

#[test]
fn tools_list_answers_lose_refused_tools() {
    let h =
        harness(r#"{"version":"1","default":"deny","tools":{"echo":{},"rm":{"action":"deny"}}}"#);
    let body = r#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"echo"},{"name":"rm"},{"name":"other"}]}}"#;
    let out = h
        .engine
        .filter_tools_list(body.as_bytes(), &[ListId::Num(4.0)])
        .unwrap()
        .unwrap();
    assert_eq!(
        out,
        r#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"echo"}]}}"#
    );
    let sse = format!("event: message\ndata: {body}\n\n");
    let mut stream = h.engine.event_stream_filter();
    let out = h
        .engine
        .filter_event_chunk(&mut stream, sse.as_bytes(), true, &h.store);
    let out = String::from_utf8(out.bytes).unwrap();
    assert!(!out.contains("\"rm\"") && !out.contains("other"), "{out}");
}

#[test]
fn tools_list_answers_are_filtered_by_patterns() {
    let h = harness(
        r#"{"version":"1","default":"deny","hide":["debug_*"],"tools":{"read_*":{},"read_secret_*":{"action":"deny"},"read_secret_ok":{}}}"#,
    );
    let names = [
        "read_file",
        "read_secret_key",
        "read_secret_ok",
        "debug_dump",
        "write_file",
        "read_",
    ];
    let tools: Vec<String> = names
        .iter()
        .map(|n| format!(r#"{{"name":"{n}"}}"#))
        .collect();
    let body = format!(
        r#"{{"jsonrpc":"2.0","id":4,"result":{{"tools":[{}]}}}}"#,
        tools.join(",")
    );
    let out = h
        .engine
        .filter_tools_list(body.as_bytes(), &[ListId::Num(4.0)])
        .unwrap()
        .unwrap();
    assert_eq!(
        out,
        r#"{"jsonrpc":"2.0","id":4,"result":{"tools":[{"name":"read_file"},{"name":"read_secret_ok"},{"name":"read_"}]}}"#
    );
    // Calls agree with the list.
    for (tool, code) in [
        ("read_secret_key", Some(CODE_DENIED)),
        ("debug_dump", Some(CODE_DENIED)),
        ("read_file", None),
    ] {
        let verdict = h.decide(&call("1", tool));
        match (verdict, code) {
            (Verdict::Forward(_), None) => {}
            (Verdict::Reply { reply, calls }, Some(c)) => {
                assert_eq!(raw_at(&reply.body, &["error", "code"]), c.to_string());
                assert_eq!(
                    calls[0].rule.as_deref(),
                    Some(if tool == "debug_dump" {
                        "hide"
                    } else {
                        "tools.read_secret_*"
                    })
                );
            }
            (v, _) => panic!("{tool}: {v:?}"),
        }
    }
}

#[test]
fn upstream_errors_are_recognised_for_refunds() {
    let h = harness(SEED_POLICY);
    let e = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"x"}}"#;
    let ok = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
    assert!(h.engine.answer_is_error(e.as_bytes(), false));
    assert!(!h.engine.answer_is_error(ok.as_bytes(), false));
    assert!(h
        .engine
        .answer_is_error(format!("[{ok},{e}]").as_bytes(), false));
    assert!(!h.engine.answer_is_error(b"garbage", false));
    assert!(h.engine.answer_is_error(
        format!("id: 1\ndata: \n\nevent: message\ndata: {e}\n\n").as_bytes(),
        true
    ));
    assert!(!h
        .engine
        .answer_is_error(format!("event: message\ndata: {ok}\n\n").as_bytes(), true));
}

// ---------------------------------------------------------------- amplification

#[test]
fn batch_past_max_batch_is_refused_whole_with_one_error() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let items: Vec<String> = (0..12_000).map(|i| call(&i.to_string(), "rm")).collect();
    let body = batch(&items);
    let (reply, calls) = match h.decide(&body) {
        Verdict::Reply { reply, calls } => (reply, calls),
        other => panic!("not answered: {other:?}"),
    };
    assert!(calls.is_empty(), "no call is judged");
    assert_eq!(reply.status, 400);
    assert!(reply.body.len() < 512, "{}", reply.body);
    assert_eq!(
        raw_at(&reply.body, &["error", "code"]),
        CODE_INVALID_REQUEST.to_string()
    );
    let message = str_at(&reply.body, &["error", "message"]);
    assert!(
        message
            .contains("batch of 12000 messages (12000 tools/call) exceeds settings.max_batch (64)"),
        "{message}"
    );
}

#[test]
fn batch_of_exactly_max_batch_is_judged_as_before() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let allowed: Vec<String> = (0..64).map(|i| call(&i.to_string(), "echo")).collect();
    assert_eq!(h.forwarded(&batch(&allowed)).calls.len(), 64);
    let mut mixed = allowed.clone();
    mixed[63] = call("63", "rm");
    let (reply, calls) = h.reply(&batch(&mixed));
    assert_eq!(reply.status, 200);
    assert_eq!(array_len(&reply.body), 64);
    assert_eq!(calls.len(), 64);
    assert!(reply.body.len() <= answer::MAX_BATCH_ANSWER);
}

#[test]
fn max_batch_is_a_setting() {
    let h = harness(r#"{"version":"1","default":"allow","settings":{"max_batch":2}}"#);
    h.forwarded(&batch(&[call("1", "a"), call("2", "b")]));
    let (reply, _) = h.reply(&batch(&[call("1", "a"), call("2", "b"), call("3", "c")]));
    assert_eq!(reply.status, 400);
    assert!(
        reply.body.contains("settings.max_batch (2)"),
        "{}",
        reply.body
    );
}

#[test]
fn refused_batch_answers_stay_under_64_kib() {
    // Long tool names and a long configured reason, the most per element.
    let reason = "r".repeat(5000);
    let h = harness(&format!(
        r#"{{"version":"1","default":"deny","settings":{{"max_batch":1000}},"tools":{{"x":{{"action":"deny","reason":"{reason}"}}}}}}"#
    ));
    let long = "\u{10348}".repeat(500);
    let items: Vec<String> = (0..64)
        .map(|i| call(&i.to_string(), if i == 0 { "x" } else { &long }))
        .collect();
    let (reply, _) = h.reply(&batch(&items));
    assert!(reply.body.len() < 5 * 1024 * 64, "per element bound");
    let items: Vec<String> = (0..1000).map(|i| call(&i.to_string(), &long)).collect();
    let (reply, _) = h.reply(&batch(&items));
    assert!(
        reply.body.len() <= answer::MAX_BATCH_ANSWER,
        "{}",
        reply.body.len()
    );
    assert_eq!(raw_at(&reply.body, &["id"]), "null");
    assert!(str_at(&reply.body, &["error", "message"]).contains("1000 messages"));
}

#[test]
fn huge_ids_are_refused_not_echoed() {
    let h = harness(DENY_ALL_BUT_ECHO);
    let id = format!("\"{}\"", "i".repeat(300));
    let message = assert_invalid(&h, &call(&id, "rm"), 400, CODE_INVALID_REQUEST);
    assert!(message.contains("longer than 256 bytes"), "{message}");
    let ok = format!("\"{}\"", "i".repeat(254));
    let (reply, _) = h.reply(&call(&ok, "rm"));
    assert_eq!(raw_at(&reply.body, &["id"]), ok);
}

#[test]
fn folded_argument_keys_are_invalid_requests() {
    let h = harness(SEED_POLICY);
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"claude_code_session","arguments":{"action":"list","Action":"cancel"}}}"#;
    let message = assert_invalid(&h, body, 400, CODE_INVALID_REQUEST);
    assert!(
        message.contains("params.arguments: keys \"action\" and \"Action\""),
        "{message}"
    );
}

#[test]
fn a_lone_key_in_another_case_than_a_rule_reads_cannot_pass_a_deny_if() {
    let h = harness(
        r#"{"version":"1","default":"deny","tools":{"s":{"rules":[{"name":"no-cancel","deny_if":[{"path":"args.opts.action","op":"eq","value":"cancel"}]}]}}}"#,
    );
    let with = |args: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"s","arguments":{args}}}}}"#
        )
    };
    // A Go server reads "Action" (or "opt\u017f") as the field the rule checks.
    for args in [
        r#"{"opts":{"Action":"cancel"}}"#,
        r#"{"OPTS":{"action":"cancel"}}"#,
        r#"{"opt\u017f":{"ACTION":"list"}}"#,
    ] {
        let (reply, _) = h.reply(&with(args));
        assert!(
            str_at(&reply.body, &["error", "data", "rule"]).ends_with("no-cancel"),
            "{args}: {}",
            reply.body
        );
    }
    h.forwarded(&with(r#"{"opts":{"action":"list","Note":"x"}}"#));
    h.forwarded(&with(r#"{"other":{"Action":"cancel"}}"#));
}
