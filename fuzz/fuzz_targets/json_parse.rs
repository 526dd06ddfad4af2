//! The strict JSON parser on arbitrary bytes: never panics, and what it
//! accepts is self-consistent (spans, re-parsing, writing back, depth).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy_engine::json::{self, Node, Value, DEFAULT_MAX_DEPTH};
use mcp_policy_fuzz::{depth, same_tree, same_value, serialize};

/// Every node's own text parses to the same subtree, spans shifted.
fn check_spans(source: &str, node: &Node<'_>, max_depth: usize) {
    assert!(node.start < node.end && node.end <= source.len());
    let raw = node.raw(source);
    let again = json::parse_with_depth(raw.as_bytes(), max_depth)
        .unwrap_or_else(|e| panic!("span {}..{} does not re-parse: {e}", node.start, node.end));
    let shift = -isize::try_from(node.start).unwrap_or(isize::MAX);
    assert!(same_tree(node, &again.root, shift), "span re-parse differs");
    match &node.value {
        Value::Array(items) => items.iter().for_each(|n| check_spans(source, n, max_depth)),
        Value::Object(members) => members
            .iter()
            .for_each(|(_, n)| check_spans(source, n, max_depth)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let max_depth = usize::from(selector % 72);
    let bounded = json::parse_with_depth(body, max_depth);
    let default = json::parse(body);
    if let Err(e) = &default {
        assert!(e.offset <= body.len(), "error offset past the input");
    }
    let Ok(doc) = bounded else {
        return;
    };
    // A bound that accepts implies every larger bound accepts the same tree.
    if max_depth <= DEFAULT_MAX_DEPTH {
        match &default {
            Ok(d) => assert!(same_tree(&doc.root, &d.root, 0)),
            Err(e) => panic!("accepted at depth {max_depth}, refused at the default: {e}"),
        }
    }
    assert!(depth(&doc.root) <= max_depth);
    // Only whitespace around the root.
    let ws = |s: &str| s.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    assert!(ws(&doc.source[..doc.root.start]) && ws(&doc.source[doc.root.end..]));
    check_spans(doc.source, &doc.root, max_depth);
    // Written back with the engine's escaper, it reads as the same values.
    let mut out = String::new();
    serialize(&doc.root, &mut out);
    let again = json::parse_with_depth(out.as_bytes(), max_depth)
        .unwrap_or_else(|e| panic!("written-back JSON does not parse ({e}): {out}"));
    assert!(
        same_value(&doc.root, &again.root),
        "write-back changed a value"
    );
});
