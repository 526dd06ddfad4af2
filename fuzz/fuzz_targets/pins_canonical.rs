//! The canonical form that pins hash, on arbitrary JSON: never panics, is
//! itself JSON, is a fixed point (canonicalising it again changes nothing),
//! and does not depend on key order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy_engine::json::{self, Node, Value};
use mcp_policy_engine::pins;

/// The same value with every object's members in reverse order.
fn reversed(node: &Node<'_>, source: &str) -> String {
    match &node.value {
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(|n| reversed(n, source)).collect();
            format!("[{}]", inner.join(","))
        }
        Value::Object(members) => {
            let inner: Vec<String> = members
                .iter()
                .rev()
                .map(|(k, v)| format!("{}:{}", mcp_policy_engine::write::quoted(k), reversed(v, source)))
                .collect();
            format!("{{{}}}", inner.join(","))
        }
        _ => node.raw(source).to_string(),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = json::parse(data) else {
        return;
    };
    let canonical = pins::canonical(&doc.root);
    let again = json::parse(canonical.as_bytes())
        .unwrap_or_else(|e| panic!("canonical form is not JSON ({e}): {canonical}"));
    assert_eq!(pins::canonical(&again.root), canonical, "not a fixed point");
    let flipped = reversed(&doc.root, doc.source);
    let flipped_doc = json::parse(flipped.as_bytes())
        .unwrap_or_else(|e| panic!("reordered input is not JSON ({e}): {flipped}"));
    assert_eq!(pins::canonical(&flipped_doc.root), canonical, "depends on key order");
    let _ = pins::definition_hash(&doc.root);
    let _ = pins::field_digests(&doc.root);
});
