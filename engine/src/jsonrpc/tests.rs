#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::json;

// ---------------------------------------------------------------- helpers

/// What a message classifies as, in a form that outlives the parse:
/// ("call", id raw, tool), ("list", id raw, ""), ("other", id raw or "", ""),
/// ("response", "", "").
fn kind(text: &str) -> (&'static str, String, String) {
    let doc = json::parse(text.as_bytes()).unwrap();
    match classify(&doc.root) {
        Ok(Message::ToolCall { id, tool, .. }) => ("call", id.raw(text).to_string(), tool.into()),
        Ok(Message::ToolsList { id }) => ("list", id.raw(text).to_string(), String::new()),
        Ok(Message::Other { id }) => (
            "other",
            id.map(|i| i.raw(text).to_string()).unwrap_or_default(),
            String::new(),
        ),
        Ok(Message::Response) => ("response", String::new(), String::new()),
        Ok(Message::ItemsList { id, .. }) => ("items", id.raw(text).to_string(), String::new()),
        Ok(Message::Unjudged { reason, .. }) => ("unjudged", String::new(), reason),
        Err(e) => panic!("{text} refused: {}", e.reason),
    }
}

fn refused(text: &str) -> String {
    let doc = json::parse(text.as_bytes()).unwrap();
    match classify(&doc.root) {
        Ok(m) => panic!("{text} accepted as {m:?}"),
        Err(e) => e.reason,
    }
}

fn tool_call(id: &str, params: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{params}}}"#)
}

// ---------------------------------------------------------------- tools/call

#[test]
fn tool_call_yields_id_tool_and_arguments() {
    let text = tool_call("7", r#"{"name":"echo","arguments":{"text":"hi"}}"#);
    let doc = json::parse(text.as_bytes()).unwrap();
    match classify(&doc.root).unwrap() {
        Message::ToolCall {
            id,
            tool,
            arguments,
            ..
        } => {
            assert_eq!(id.raw(&text), "7");
            assert_eq!(tool, "echo");
            assert_eq!(arguments.unwrap().raw(&text), r#"{"text":"hi"}"#);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn tool_call_ids_of_every_legal_form_are_kept_verbatim() {
    for id in [
        r#""abc""#,
        r#""""#,
        r#""a\"b\u0041""#,
        "0",
        "-3",
        "1.50",
        "1e3",
        "12345678901234567890",
    ] {
        let (k, raw, _) = kind(&tool_call(id, r#"{"name":"echo"}"#));
        assert_eq!((k, raw.as_str()), ("call", id));
    }
}

#[test]
fn tool_call_without_arguments_or_with_null_arguments_is_fine() {
    assert_eq!(kind(&tool_call("1", r#"{"name":"t"}"#)).0, "call");
    assert_eq!(
        kind(&tool_call("1", r#"{"name":"t","arguments":null}"#)).0,
        "call"
    );
}

#[test]
fn tool_call_with_non_object_arguments_is_refused() {
    for args in ["[]", "\"x\"", "1", "true"] {
        let reason = refused(&tool_call(
            "1",
            &format!(r#"{{"name":"t","arguments":{args}}}"#),
        ));
        assert!(reason.contains("arguments"), "{reason}");
    }
}

#[test]
fn tool_call_notification_is_refused() {
    let reason = refused(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#);
    assert!(reason.contains("notifications"), "{reason}");
}

#[test]
fn tool_call_with_null_id_is_refused() {
    let reason = refused(&tool_call("null", r#"{"name":"echo"}"#));
    assert!(reason.contains("null ids are refused"), "{reason}");
}

#[test]
fn ids_of_other_types_are_refused() {
    for id in ["true", "{}", "[]", "[1]"] {
        let reason = refused(&tool_call(id, r#"{"name":"echo"}"#));
        assert!(reason.contains("\"id\""), "{id}: {reason}");
    }
}

#[test]
fn tool_call_without_params_or_with_non_object_params_is_refused() {
    let reason = refused(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#);
    assert!(reason.contains("params"), "{reason}");
    for params in ["[]", "null", "\"echo\"", r#"["echo"]"#] {
        let reason = refused(&tool_call("1", params));
        assert!(reason.contains("\"params\" as an object"), "{reason}");
    }
}

#[test]
fn tool_call_without_a_string_name_is_refused() {
    for params in [
        "{}",
        r#"{"name":null}"#,
        r#"{"name":1}"#,
        r#"{"name":["echo"]}"#,
        r#"{"name":{"value":"echo"}}"#,
        r#"{"arguments":{"name":"echo"}}"#,
    ] {
        let reason = refused(&tool_call("1", params));
        assert!(reason.contains("params.name"), "{params}: {reason}");
    }
}

#[test]
fn name_key_in_another_case_is_refused_as_ambiguous() {
    for (params, key) in [
        (r#"{"Name":"echo"}"#, "Name"),
        (r#"{"NAME":"echo"}"#, "NAME"),
        (r#"{"name":"echo","Name":"rm"}"#, "Name"),
        (r#"{"name":"echo","Arguments":{}}"#, "Arguments"),
    ] {
        let reason = refused(&tool_call("1", params));
        assert!(reason.contains(&format!("key \"{key}\"")), "{reason}");
        assert!(reason.contains("only in case"), "{reason}");
    }
}

#[test]
fn keys_that_go_case_folding_maps_onto_significant_keys_are_refused() {
    // U+017F (long s) folds to 's' in Go's strings.EqualFold.
    let reason = refused(&tool_call(
        "1",
        "{\"name\":\"echo\",\"argument\u{17f}\":{}}",
    ));
    assert!(reason.contains("only in case"), "{reason}");
    let reason =
        refused("{\"j\u{17f}onrpc\":\"2.0\",\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}");
    assert!(reason.contains("only in case"), "{reason}");
}

#[test]
fn name_key_with_other_characters_is_not_the_name() {
    for params in [
        r#"{"name ":"echo"}"#,
        r#"{" name":"echo"}"#,
        r#"{"nam":"echo"}"#,
    ] {
        assert!(
            refused(&tool_call("1", params)).contains("params.name"),
            "{params}"
        );
    }
}

#[test]
fn name_with_escapes_is_unescaped() {
    assert_eq!(kind(&tool_call("1", r#"{"name":"e\u0063ho"}"#)).2, "echo");
    assert_eq!(kind(&tool_call("1", r#"{"name":"a\/b"}"#)).2, "a/b");
}

#[test]
fn name_is_returned_exactly() {
    for name in ["Echo", " echo", "echo\\n", "😀", ""] {
        let expected = json::parse(format!("\"{name}\"").as_bytes())
            .unwrap()
            .root
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(
            kind(&tool_call("1", &format!(r#"{{"name":"{name}"}}"#))).2,
            expected
        );
    }
}

#[test]
fn escaped_method_is_still_tools_call() {
    for method in [
        r#""tools\/call""#,
        r#""\u0074ools/call""#,
        r#""tools\u002fcall""#,
    ] {
        let text =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":{method},"params":{{"name":"echo"}}}}"#);
        assert_eq!(kind(&text).0, "call", "{method}");
    }
}

#[test]
fn escaped_method_notification_is_still_refused() {
    refused(r#"{"jsonrpc":"2.0","method":"tools\/call","params":{"name":"echo"}}"#);
}

#[test]
fn method_key_in_another_case_is_refused_as_ambiguous() {
    for key in ["Method", "METHOD", "ID", "Params", "JsonRpc"] {
        let text = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"x"}},"{key}":0}}"#
        );
        let reason = refused(&text);
        assert!(reason.contains(&format!("key \"{key}\"")), "{reason}");
    }
    let reason = refused(r#"{"jsonrpc":"2.0","id":1,"Method":"tools/call","params":{"name":"x"}}"#);
    assert!(reason.contains("only in case"), "{reason}");
}

#[test]
fn method_in_another_case_is_another_method() {
    let text = r#"{"jsonrpc":"2.0","id":1,"method":"Tools/Call","params":{"name":"x"}}"#;
    assert_eq!(kind(text).0, "other");
}

// ---------------------------------------------------------------- envelope

#[test]
fn jsonrpc_member_must_be_the_string_two_point_oh() {
    for v in [
        None,
        Some(r#""1.0""#),
        Some("2.0"),
        Some(r#""2.0 ""#),
        Some("null"),
    ] {
        let text = match v {
            Some(v) => format!(r#"{{"jsonrpc":{v},"id":1,"method":"ping"}}"#),
            None => r#"{"id":1,"method":"ping"}"#.to_string(),
        };
        assert!(refused(&text).contains("jsonrpc"), "{text}");
    }
}

#[test]
fn non_object_messages_are_refused_with_their_type() {
    for (text, ty) in [
        ("[]", "array"),
        ("1", "number"),
        ("\"x\"", "string"),
        ("null", "null"),
    ] {
        assert!(refused(text).contains(ty), "{text}");
    }
}

#[test]
fn non_string_method_is_refused() {
    for m in ["1", "null", r#"["tools/call"]"#] {
        let reason = refused(&format!(r#"{{"jsonrpc":"2.0","id":1,"method":{m}}}"#));
        assert!(reason.contains("\"method\" must be a string"), "{reason}");
    }
}

// ---------------------------------------------------------------- other messages

#[test]
fn tools_list_request_is_recognised() {
    let (k, id, _) = kind(r#"{"jsonrpc":"2.0","id":"l1","method":"tools/list","params":{}}"#);
    assert_eq!((k, id.as_str()), ("list", r#""l1""#));
}

#[test]
fn tools_list_without_a_usable_id_is_plain_traffic() {
    assert_eq!(
        kind(r#"{"jsonrpc":"2.0","method":"tools/list"}"#),
        ("other", String::new(), String::new())
    );
    assert_eq!(
        kind(r#"{"jsonrpc":"2.0","id":null,"method":"tools/list"}"#).0,
        "other"
    );
}

#[test]
fn protocol_requests_and_notifications_are_other() {
    for text in [
        r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#,
        r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
    ] {
        assert_eq!(kind(text).0, "other", "{text}");
    }
}

#[test]
fn resource_and_prompt_requests_are_named_for_the_engine() {
    // The engine judges them only when the policy has their section.
    let read = r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///x"}}"#;
    assert_eq!(kind(read), ("call", "2".into(), "file:///x".into()));
    let get =
        r#"{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"p","arguments":{}}}"#;
    assert_eq!(kind(get), ("call", "3".into(), "p".into()));
    let list = r#"{"jsonrpc":"2.0","id":4,"method":"resources/templates/list"}"#;
    assert_eq!(kind(list).0, "items");
    let note = r#"{"jsonrpc":"2.0","method":"resources/read","params":{"uri":"file:///x"}}"#;
    assert_eq!(kind(note).0, "unjudged");
    let cased =
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a","URI":"b"}}"#;
    // Case-colliding keys are refused for every method already.
    assert!(refused(cased).contains("case"));
}

#[test]
fn other_request_keeps_its_id_and_notification_has_none() {
    assert_eq!(kind(r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#).1, "5");
    assert_eq!(kind(r#"{"jsonrpc":"2.0","method":"ping"}"#).1, "");
    assert_eq!(kind(r#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#).1, "");
}

#[test]
fn client_responses_are_recognised() {
    assert_eq!(
        kind(r#"{"jsonrpc":"2.0","id":3,"result":{}}"#).0,
        "response"
    );
    assert_eq!(
        kind(r#"{"jsonrpc":"2.0","id":"s","error":{"code":-1,"message":"no"}}"#).0,
        "response"
    );
    assert_eq!(
        kind(r#"{"jsonrpc":"2.0","id":null,"error":{}}"#).0,
        "response"
    );
}

#[test]
fn message_without_method_must_be_a_complete_response() {
    for text in [
        r#"{"jsonrpc":"2.0","id":3}"#,
        r#"{"jsonrpc":"2.0","result":{}}"#,
        r#"{"jsonrpc":"2.0"}"#,
    ] {
        assert!(refused(text).contains("without \"method\""), "{text}");
    }
}

#[test]
fn keys_that_fold_together_are_refused_anywhere_in_a_request() {
    for text in [
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"action":"list","Action":"cancel"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"o":{"a":[{"mode":1,"MODE":2}]}}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"\u017fession":1,"session":2}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"action":"list","\u0041ction":"cancel"}}}"#,
        r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"a","URI":"b"}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/x","params":{"k":1,"\u212a":2}}"#,
    ] {
        let reason = refused(text);
        assert!(
            reason.contains("same name to a case-insensitive server"),
            "{reason}"
        );
    }
    let reason = refused(
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"q":{"Kind":1,"kind":2}}}}"#,
    );
    assert!(
        reason.starts_with("params.arguments.q: keys \"Kind\" and \"kind\""),
        "{reason}"
    );
}

#[test]
fn responses_and_distinct_keys_are_not_refused_for_folding() {
    assert_eq!(
        kind(r#"{"jsonrpc":"2.0","id":1,"result":{"content":{"A":1,"a":2}}}"#).0,
        "response"
    );
    assert_eq!(
        kind(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"action":"list","actions":["x"],"sessionId":"a"}}}"#).0,
        "call"
    );
}

#[test]
fn significant_keys_are_lower_case_ascii() {
    // `check_key_case` skips lower-case ASCII keys on this assumption.
    for key in MESSAGE_KEYS
        .iter()
        .chain(&PARAMS_KEYS)
        .chain(&["uri", "name", "arguments"])
    {
        assert!(
            key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{key}"
        );
    }
}
