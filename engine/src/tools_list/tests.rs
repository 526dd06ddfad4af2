#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

// ---------------------------------------------------------------- helpers

/// Keeps every tool except `secret` and `evil`.
fn keep(name: &str) -> bool {
    name != "secret" && name != "evil"
}

fn num(n: f64) -> ListId {
    ListId::Num(n)
}

fn text_id(s: &str) -> ListId {
    ListId::Str(s.to_string())
}

fn json_filtered(body: &str, ids: &[ListId]) -> Option<String> {
    filter_json(body.as_bytes(), ids, &keep).unwrap_or_else(|e| panic!("{body}: {e:?}"))
}

/// A whole event stream through the incremental filter the adapter uses
/// (list answers recognised by shape, whatever their id); None if unchanged.
fn sse_filtered(body: &str) -> Option<String> {
    let (out, withheld) = sse_run(body.as_bytes());
    assert_eq!(withheld, None, "{body:?}");
    (out != body).then_some(out)
}

fn sse_run(body: &[u8]) -> (String, Option<String>) {
    let mut f = EventStreamFilter::new(1 << 20);
    let keep2 = |name: &str, _: &Node<'_>| keep(name);
    let o = f.push(body, true, &keep2);
    (String::from_utf8(o.bytes).unwrap(), o.withheld)
}

/// A tools/list answer with the given id and tools (raw JSON list items).
fn answer(id: &str, tools: &str) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{"tools":[{tools}]}}}}"#)
}

const ECHO: &str = r#"{"name":"echo","inputSchema":{"type":"object"}}"#;
const SECRET: &str = r#"{"name":"secret","inputSchema":{"type":"object"}}"#;

/// Names of the tools in every message of a JSON body, in order.
fn tool_names(body: &str) -> Vec<String> {
    let doc = json::parse(body.as_bytes()).unwrap();
    let messages: Vec<&Node<'_>> = match &doc.root.value {
        Value::Array(items) => items.iter().collect(),
        _ => vec![&doc.root],
    };
    messages
        .iter()
        .filter_map(|m| m.get("result")?.get("tools")?.as_array())
        .flatten()
        .map(|t| {
            t.get("name")
                .and_then(Node::as_str)
                .unwrap_or("<none>")
                .to_string()
        })
        .collect()
}

// ---------------------------------------------------------------- ids

#[test]
fn list_ids_normalise_numbers_and_keep_strings() {
    let doc = json::parse(br#"[1, 1.0, 1e0, "1", -2, null, true]"#).unwrap();
    let ids: Vec<Option<ListId>> = doc
        .root
        .as_array()
        .unwrap()
        .iter()
        .map(ListId::of)
        .collect();
    assert_eq!(
        ids,
        [
            Some(num(1.0)),
            Some(num(1.0)),
            Some(num(1.0)),
            Some(text_id("1")),
            Some(num(-2.0)),
            None,
            None
        ]
    );
}

#[test]
fn string_ids_are_unescaped() {
    let doc = json::parse(br#""a\u0062""#).unwrap();
    assert_eq!(ListId::of(&doc.root), Some(text_id("ab")));
}

// ---------------------------------------------------------------- JSON answers

#[test]
fn single_answer_loses_refused_tools() {
    let body = answer("1", &format!("{ECHO},{SECRET}"));
    assert_eq!(
        json_filtered(&body, &[num(1.0)]).unwrap(),
        answer("1", ECHO)
    );
}

#[test]
fn string_id_answer_is_filtered() {
    let body = answer(r#""list-1""#, &format!("{SECRET},{ECHO}"));
    assert_eq!(
        json_filtered(&body, &[text_id("list-1")]).unwrap(),
        answer(r#""list-1""#, ECHO)
    );
}

#[test]
fn number_id_matches_whatever_its_spelling() {
    let body = answer("1.0", &format!("{ECHO},{SECRET}"));
    assert_eq!(
        tool_names(&json_filtered(&body, &[num(1.0)]).unwrap()),
        ["echo"]
    );
}

#[test]
fn string_and_number_ids_are_different_ids() {
    let body = answer(r#""1""#, &format!("{ECHO},{SECRET}"));
    assert_eq!(json_filtered(&body, &[num(1.0)]), None);
    let body = answer("1", &format!("{ECHO},{SECRET}"));
    assert_eq!(json_filtered(&body, &[text_id("1")]), None);
}

#[test]
fn answers_to_other_ids_are_untouched() {
    let body = answer("2", &format!("{ECHO},{SECRET}"));
    assert_eq!(json_filtered(&body, &[num(1.0)]), None);
    assert_eq!(json_filtered(&body, &[]), None);
}

#[test]
fn nothing_to_remove_means_no_rewrite() {
    let body = answer("1", ECHO);
    assert_eq!(json_filtered(&body, &[num(1.0)]), None);
}

#[test]
fn every_tool_removed_leaves_an_empty_list() {
    let body = answer("1", &format!("{SECRET},{}", r#"{"name":"evil"}"#));
    assert_eq!(json_filtered(&body, &[num(1.0)]).unwrap(), answer("1", ""));
}

#[test]
fn tools_without_a_string_name_are_removed() {
    let body = answer(
        "1",
        &format!(r#"{ECHO},{{}},{{"name":5}},{{"name":null}},"echo",7,{{"Name":"echo"}}"#),
    );
    assert_eq!(
        json_filtered(&body, &[num(1.0)]).unwrap(),
        answer("1", ECHO)
    );
}

#[test]
fn escaped_tool_names_are_judged_unescaped() {
    let body = answer("1", &format!(r#"{ECHO},{{"name":"s\u0065cret"}}"#));
    assert_eq!(
        tool_names(&json_filtered(&body, &[num(1.0)]).unwrap()),
        ["echo"]
    );
}

#[test]
fn formatting_and_other_fields_are_preserved_byte_for_byte() {
    let body = "{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 7,\n  \"result\": {\n    \"tools\": [\n      {\"name\": \"secret\"},\n      {\n        \"name\": \"echo\",\n        \"description\": \"Echo \\u00e9 back\",\n        \"annotations\": {\"readOnlyHint\": true}\n      },\n      {\"name\": \"evil\", \"x\": [1, 2]}\n    ],\n    \"nextCursor\": \"abc==\",\n    \"_meta\": {\"k\": 1.50}\n  },\n  \"unknown\": [true, null]\n}\n";
    let out = json_filtered(body, &[num(7.0)]).unwrap();
    let kept = "{\n        \"name\": \"echo\",\n        \"description\": \"Echo \\u00e9 back\",\n        \"annotations\": {\"readOnlyHint\": true}\n      }";
    let expected = format!(
        "{{\n  \"jsonrpc\": \"2.0\",\n  \"id\": 7,\n  \"result\": {{\n    \"tools\": [{kept}],\n    \"nextCursor\": \"abc==\",\n    \"_meta\": {{\"k\": 1.50}}\n  }},\n  \"unknown\": [true, null]\n}}\n"
    );
    assert_eq!(out, expected);
}

#[test]
fn kept_tools_keep_their_order() {
    let body = answer(
        "1",
        r#"{"name":"c"},{"name":"secret"},{"name":"a"},{"name":"evil"},{"name":"b"}"#,
    );
    assert_eq!(
        tool_names(&json_filtered(&body, &[num(1.0)]).unwrap()),
        ["c", "a", "b"]
    );
}

#[test]
fn batch_answers_filter_only_the_listed_ids() {
    let body = format!(
        "[{},{},{}]",
        answer("1", &format!("{ECHO},{SECRET}")),
        answer(r#""x""#, &format!("{SECRET},{ECHO}")),
        answer("3", &format!("{ECHO},{SECRET}")),
    );
    let out = json_filtered(&body, &[num(1.0), text_id("x")]).unwrap();
    assert_eq!(
        out,
        format!(
            "[{},{},{}]",
            answer("1", ECHO),
            answer(r#""x""#, ECHO),
            answer("3", &format!("{ECHO},{SECRET}")),
        )
    );
}

#[test]
fn batch_with_errors_and_other_results_is_kept_around_the_filtered_answer() {
    let body = format!(
        r#"[{{"jsonrpc":"2.0","id":9,"error":{{"code":-32601,"message":"nope"}}}},{},{{"jsonrpc":"2.0","id":2,"result":{{}}}}]"#,
        answer("1", &format!("{SECRET},{ECHO}"))
    );
    let out = json_filtered(&body, &[num(1.0), num(9.0), num(2.0)]).unwrap();
    assert_eq!(out, body.replace(&format!("{SECRET},{ECHO}"), ECHO));
}

#[test]
fn answer_without_tools_is_untouched() {
    for body in [
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{"Tools":[{"name":"secret"}]}}"#,
    ] {
        assert_eq!(json_filtered(body, &[num(1.0)]), None, "{body}");
    }
}

#[test]
fn non_array_tools_is_unfilterable() {
    for tools in [r#"{"name":"secret"}"#, "null", r#""secret""#, "5"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":{tools}}}}}"#);
        let e = filter_json(body.as_bytes(), &[num(1.0)], &keep).unwrap_err();
        assert!(e.0.contains("not an array"), "{tools}: {e:?}");
    }
}

#[test]
fn invalid_upstream_json_is_unfilterable() {
    for body in [
        "not json",
        r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{"tools":[{"name":"secret"}]}}"#,
        "",
    ] {
        let e = filter_json(body.as_bytes(), &[num(1.0)], &keep).unwrap_err();
        assert!(e.0.starts_with("upstream answer:"), "{e:?}");
    }
}

// ---------------------------------------------------------------- event streams

fn event(data: &str) -> String {
    format!("event: message\ndata: {data}\n\n")
}

#[test]
fn sse_message_event_is_filtered() {
    let body = event(&answer("1", &format!("{ECHO},{SECRET}")));
    assert_eq!(sse_filtered(&body).unwrap(), event(&answer("1", ECHO)));
}

#[test]
fn sse_id_lines_are_kept() {
    let body = format!(
        "id: 42\nevent: message\ndata: {}\n\n",
        answer("1", &format!("{ECHO},{SECRET}"))
    );
    assert_eq!(
        sse_filtered(&body).unwrap(),
        format!("id: 42\nevent: message\ndata: {}\n\n", answer("1", ECHO))
    );
}

#[test]
fn sse_comment_and_retry_lines_are_kept() {
    let body = format!(
        ": keep-alive\nretry: 1000\ndata: {}\n\n",
        answer("1", &format!("{ECHO},{SECRET}"))
    );
    let out = sse_filtered(&body).unwrap();
    assert!(out.starts_with(": keep-alive\nretry: 1000\n"), "{out}");
    assert!(!out.contains("secret"));
}

#[test]
fn sse_data_without_a_space_is_read() {
    let body = format!("data:{}\n\n", answer("1", &format!("{ECHO},{SECRET}")));
    assert_eq!(
        sse_filtered(&body).unwrap(),
        format!("data: {}\n\n", answer("1", ECHO))
    );
}

#[test]
fn sse_crlf_event_is_filtered() {
    let body = format!(
        "event: message\r\nid: 5\r\ndata: {}\r\n\r\n",
        answer("1", &format!("{SECRET},{ECHO}"))
    );
    let out = sse_filtered(&body).unwrap();
    assert!(!out.contains("secret"), "{out:?}");
    assert!(out.contains("event: message"));
    assert!(out.contains("id: 5"));
    assert!(out.contains(&answer("1", ECHO)));
    assert!(out.ends_with("\n\n"));
}

#[test]
fn sse_untouched_crlf_events_keep_their_bytes() {
    let priming = "id: 0\r\ndata: \r\n\r\n";
    let note = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"ping\"}\r\n\r\n";
    let listed = format!("event: message\r\ndata: {}\r\n\r\n", answer("1", SECRET));
    let body = format!("{priming}{note}{listed}");
    let out = sse_filtered(&body).unwrap();
    assert!(out.starts_with(&format!("{priming}{note}")), "{out:?}");
    assert!(!out.contains("secret"), "{out:?}");
}

#[test]

fn sse_cr_only_event_is_filtered() {
    let body = format!(
        "event: message\rdata: {}\r\r",
        answer("1", &format!("{ECHO},{SECRET}"))
    );
    let (out, _) = sse_run(body.as_bytes());
    assert!(
        !out.contains("secret"),
        "hidden tool forwarded unfiltered: {out:?}"
    );
}

#[test]
fn sse_multi_line_data_is_joined_then_filtered() {
    let body = format!(
        "event: message\ndata: {{\"jsonrpc\":\"2.0\",\ndata: \"id\":1,\ndata: \"result\":{{\"tools\":[{SECRET},\ndata: {ECHO}]}}}}\n\n"
    );
    let out = sse_filtered(&body).unwrap();
    let data: String = out
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(tool_names(&data), ["echo"]);
    assert!(out.starts_with("event: message\n"));
    assert!(out.ends_with("\n\n"));
}

#[test]
fn sse_priming_events_with_empty_data_are_untouched() {
    let body = "id: 0\ndata: \n\nid: 1\ndata:\n\n: comment only\n\n";
    assert_eq!(sse_filtered(body), None);
}

#[test]
fn sse_several_events_only_the_list_answers_change() {
    let priming = "id: p\ndata: \n\n";
    let notification =
        event(r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"data":"x"}}"#);
    let other = event(&answer("2", &format!("{ECHO},{SECRET}")));
    let listed = event(&answer("1", &format!("{ECHO},{SECRET}")));
    let body = format!("{priming}{notification}{other}{listed}");
    // Every list answer is filtered, whatever its id (the legacy GET stream
    // carries answers to requests the filter never saw); the rest is kept.
    assert_eq!(
        sse_filtered(&body).unwrap(),
        format!(
            "{priming}{notification}{}{}",
            event(&answer("2", ECHO)),
            event(&answer("1", ECHO))
        )
    );
}

#[test]
fn sse_last_event_without_a_blank_line_is_still_filtered() {
    let body = format!(
        "event: message\ndata: {}\n",
        answer("1", &format!("{ECHO},{SECRET}"))
    );
    let out = sse_filtered(&body).unwrap();
    assert!(!out.contains("secret"));
}

#[test]
fn sse_without_list_answers_is_untouched() {
    let body =
        event(r#"{"jsonrpc":"2.0","id":2,"result":{"content":[{"type":"text","text":"secret"}]}}"#);
    assert_eq!(sse_filtered(&body), None);
}

#[test]
fn sse_event_with_invalid_json_is_passed_only_if_it_cannot_list_tools() {
    // Unreadable and no tool list in it: the client cannot read it either.
    let body = "event: message\ndata: {not json\n\n";
    assert_eq!(sse_run(body.as_bytes()), (body.to_string(), None));
    // Unreadable and it mentions tools: withheld.
    let body = "event: message\ndata: {\"result\":{\"tools\":[{\"name\":\"secret\"}]\n\n";
    let (out, withheld) = sse_run(body.as_bytes());
    assert!(!out.contains("secret") && withheld.is_some(), "{out:?}");
}

#[test]
fn sse_non_utf8_is_unfilterable() {
    let (out, withheld) = sse_run(b"data: \xff\n\n");
    assert_eq!(out, "");
    assert!(withheld.unwrap().contains("UTF-8"));
}

#[test]
fn sse_events_split_back_into_the_input() {
    for body in [
        "a\n\nb\r\n\r\nc\r\rd",
        "\n\n\n",
        "data: x\n\ndata: y\n",
        "",
        "no terminator",
    ] {
        let events = split_events(body);
        assert_eq!(events.concat(), body);
    }
    assert_eq!(split_events("a\n\nb\n\n"), ["a\n\n", "b\n\n"]);
    assert_eq!(
        split_events("a\r\n\r\nb\r\n\r\n"),
        ["a\r\n\r\n", "b\r\n\r\n"]
    );
}

// ---------------------------------------------------------------- streaming event filter

const LIST_EVENT: &str = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"tools\":[{\"name\":\"ok\"},{\"name\":\"secret\"}]}}\n\n";

fn stream(chunks: &[&[u8]], end: bool) -> (String, Option<String>) {
    let mut f = EventStreamFilter::new(1 << 20);
    let keep2 = |name: &str, _: &Node<'_>| keep(name);
    let mut out = Vec::new();
    let mut withheld = None;
    let last = chunks.len().saturating_sub(1);
    for (i, c) in chunks.iter().enumerate() {
        let o = f.push(c, end && i == last, &keep2);
        out.extend(o.bytes);
        withheld = withheld.or(o.withheld);
    }
    (String::from_utf8(out).unwrap(), withheld)
}

#[test]
fn stream_filters_list_answers_by_shape_whatever_the_id() {
    let (out, withheld) = stream(&[LIST_EVENT.as_bytes()], false);
    assert!(out.contains("\"ok\"") && !out.contains("secret"), "{out}");
    assert_eq!(withheld, None);
}

#[test]
fn stream_holds_an_incomplete_event_until_its_blank_line() {
    let bytes = LIST_EVENT.as_bytes();
    for cut in 1..bytes.len() {
        let (first, rest) = bytes.split_at(cut);
        let mut f = EventStreamFilter::new(1 << 20);
        let keep2 = |name: &str, _: &Node<'_>| keep(name);
        let a = f.push(first, false, &keep2);
        assert!(
            a.bytes.is_empty(),
            "emitted before the event was complete (cut {cut})"
        );
        let b = f.push(rest, false, &keep2);
        let text = String::from_utf8(b.bytes).unwrap();
        assert!(
            text.contains("\"ok\"") && !text.contains("secret"),
            "cut {cut}: {text}"
        );
    }
}

#[test]
fn stream_waits_when_a_chunk_ends_between_cr_and_lf() {
    let event =
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\"}]}}\r\n\r";
    let (out, _) = stream(&[event.as_bytes()], false);
    assert_eq!(out, "", "a trailing CR may be half of CRLF");
    let (out, _) = stream(&[event.as_bytes(), b"\n"], false);
    assert!(
        !out.contains("secret") && out.contains("\"tools\":[]"),
        "{out}"
    );
}

#[test]
fn stream_passes_other_events_byte_for_byte() {
    let events = ": keep-alive\n\nevent: endpoint\ndata: /message?sessionId=abc\n\nid: 7\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\n";
    let (out, withheld) = stream(&[events.as_bytes()], false);
    assert_eq!(out, events);
    assert_eq!(withheld, None);
}

#[test]
fn stream_withholds_an_unreadable_event_that_mentions_tools() {
    let event = "data: {\"result\":{\"tools\":[{\"name\":\"secret\"}],\"tools\":[]}}\n\n";
    let (out, withheld) = stream(&[event.as_bytes()], false);
    assert!(!out.contains("secret"), "{out}");
    assert!(withheld.unwrap().contains("duplicate key"));
}

#[test]
fn stream_flushes_the_tail_at_end_of_stream() {
    let event =
        "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\"}]}}";
    let (out, _) = stream(&[event.as_bytes()], true);
    assert!(
        !out.contains("secret") && out.contains("\"tools\":[]"),
        "{out}"
    );
}

#[test]
fn stream_cuts_off_an_event_larger_than_the_limit() {
    let mut f = EventStreamFilter::new(64);
    let keep2 = |name: &str, _: &Node<'_>| keep(name);
    let out = f.push(&[b'x'; 100], false, &keep2);
    assert!(out.bytes.is_empty());
    assert!(out.withheld.is_some());
    let later = f.push(LIST_EVENT.as_bytes(), false, &keep2);
    assert!(later.bytes.is_empty(), "a cut-off stream stays cut off");
}
