//! Helpers shared by the fuzz targets: structural checks on parsed trees,
//! a tool-keeping decision derived from the fuzz input, and the engines the
//! decision-path targets run against.

use mcp_policy_engine::json::{self, Node, Value};
use mcp_policy_engine::{config, write, Engine};

/// Policies the decision-path targets judge against: the shipped examples
/// (argument rules, spend caps, risk actions, approval) and one with
/// cluster-wide limits, `hide`, a `"*"` entry, per-source counters and a pin.
pub const POLICIES: [&[u8]; 3] = [
    include_bytes!("../../envoy/examples/claude-code-guarded.json"),
    include_bytes!("../../envoy/examples/approval.json"),
    include_bytes!("../policies/global-hide-source.json"),
];

/// Loads [`POLICIES`]; a policy that stops loading is a broken harness.
pub fn engines() -> Vec<Engine> {
    POLICIES
        .iter()
        .map(|p| match config::load(p) {
            Ok(policy) => Engine::new(policy),
            Err(e) => panic!("fuzz policy does not load: {e:?}"),
        })
        .collect()
}

/// A keep/drop decision per tool name, varied by `seed` so the fuzzer can
/// steer which tools are removed.
pub fn keeps(seed: u8, name: &str) -> bool {
    let h = name.bytes().fold(u32::from(seed), |h, b| {
        h.wrapping_mul(31).wrapping_add(u32::from(b))
    });
    h % 3 != 0
}

/// Two trees hold the same values, `b`'s spans being `a`'s moved by `shift`.
pub fn same_tree(a: &Node<'_>, b: &Node<'_>, shift: isize) -> bool {
    let moved = |p: usize| p.checked_add_signed(shift);
    if moved(a.start) != Some(b.start) || moved(a.end) != Some(b.end) {
        return false;
    }
    match (&a.value, &b.value) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_tree(p, q, shift))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k, p), (l, q))| k == l && same_tree(p, q, shift))
        }
        (x, y) => x == y,
    }
}

/// Same values regardless of spans and formatting.
pub fn same_value(a: &Node<'_>, b: &Node<'_>) -> bool {
    match (&a.value, &b.value) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k, p), (l, q))| k == l && same_value(p, q))
        }
        (x, y) => x == y,
    }
}

/// Writes a tree back as compact JSON, strings through the engine's own
/// escaper (the one its answers use).
pub fn serialize(node: &Node<'_>, out: &mut String) {
    match &node.value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(n),
        Value::String(s) => out.push_str(&write::quoted(s)),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                serialize(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            out.push('{');
            for (i, (k, v)) in members.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&write::quoted(k));
                out.push(':');
                serialize(v, out);
            }
            out.push('}');
        }
    }
}

/// Nesting depth as the parser counts it (a scalar is 0, `[]` is 1).
pub fn depth(node: &Node<'_>) -> usize {
    match &node.value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(members) => 1 + members.iter().map(|(_, v)| depth(v)).max().unwrap_or(0),
        _ => 0,
    }
}

/// The body must be JSON our own parser accepts (answers we build).
pub fn assert_json(what: &str, body: &str) {
    if let Err(e) = json::parse_with_depth(body.as_bytes(), usize::MAX) {
        panic!("{what} is not valid JSON ({e}): {body}");
    }
}
