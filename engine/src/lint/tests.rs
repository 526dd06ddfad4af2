#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::config::load;
use crate::policy::CallVerdict;

fn warnings(text: &str) -> Vec<String> {
    let p = load(text.as_bytes()).unwrap_or_else(|e| panic!("{e:?}"));
    lint(&p).iter().map(ToString::to_string).collect()
}

const NEQ_ONLY: &str = r#"{"version":"1","default":"deny","tools":{
  "claude_code_session":{"rules":[{"name":"no-cancel","require":[
    {"path":"args.action","op":"neq","value":"cancel"}]}]}}}"#;

#[test]
fn neq_only_require_warns_and_really_passes_on_absence() {
    let w = warnings(NEQ_ONLY);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].starts_with(
            "policy.tools.claude_code_session.rules[0].require: passes when args.action is missing"
        ),
        "{w:?}"
    );
    assert!(
        w[0].contains(r#"add {"path": "args.action", "op": "exists", "value": true}"#),
        "{w:?}"
    );
    // The warning is true: the call without the argument (or without any
    // arguments) is allowed.
    let p = load(NEQ_ONLY.as_bytes()).unwrap();
    let none = |_: &str| None;
    let args = crate::json::parse(br#"{"sessionId":"x"}"#).unwrap();
    assert!(matches!(
        p.decide_call("claude_code_session", Some(&args.root), &none),
        CallVerdict::Allow { .. }
    ));
    assert!(matches!(
        p.decide_call("claude_code_session", None, &none),
        CallVerdict::Allow { .. }
    ));
    // A path through a string is absent too.
    let args = crate::json::parse(br#"{"action":"cancel"}"#).unwrap();
    let through = load(
        NEQ_ONLY
            .replace("args.action", "args.action.kind")
            .as_bytes(),
    )
    .unwrap();
    assert!(matches!(
        through.decide_call("claude_code_session", Some(&args.root), &none),
        CallVerdict::Allow { .. }
    ));
}

#[test]
fn not_in_on_a_pattern_and_the_wildcard_warn_with_their_paths() {
    let w = warnings(
        r#"{"version":"1","tools":{
          "*":{"rules":[{"name":"a","require":[{"path":"args.mode","op":"not_in","value":["x"]},{"path":"args.mode","op":"neq","value":"y"}]}]},
          "db.*":{"rules":[{"name":"ok","deny_if":[{"path":"args.q","op":"eq","value":1}]},
                           {"name":"b","require":[{"path":"args.table","op":"neq","value":"users"},{"path":"args.n","op":"lt","value":5}]}]}}}"#,
    );
    assert_eq!(w.len(), 2, "{w:?}");
    assert!(w[0].starts_with(r#"policy.tools["*"].rules[0].require: passes when args.mode is missing: its only conditions on args.mode ([0], [1])"#), "{w:?}");
    assert!(
        w[1].starts_with(
            r#"policy.tools["db.*"].rules[1].require: passes when args.table is missing"#
        ),
        "{w:?}"
    );
}

#[test]
fn no_warning_when_another_condition_needs_the_argument() {
    for extra in [
        r#"{"path":"args.action","op":"exists","value":true}"#,
        r#"{"path":"args.action","op":"in","value":["list","get","cancel"]}"#,
        r#"{"path":"args.action","op":"regex","value":"^[a-z]+$"}"#,
    ] {
        let text = NEQ_ONLY.replace(
            r#"{"path":"args.action","op":"neq","value":"cancel"}"#,
            &format!(r#"{{"path":"args.action","op":"neq","value":"cancel"}},{extra}"#),
        );
        assert!(warnings(&text).is_empty(), "{text}");
    }
    // deny_if with neq is not a require: absence makes it hold, i.e. refuse.
    let deny_if = NEQ_ONLY.replace("require", "deny_if");
    assert!(warnings(&deny_if).is_empty());
    // exists:false alone asks for absence on purpose.
    let absent = NEQ_ONLY.replace(
        r#""op":"neq","value":"cancel""#,
        r#""op":"exists","value":false"#,
    );
    assert!(warnings(&absent).is_empty());
}

#[test]
fn seed_policy_has_no_warnings() {
    let seed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/reference/seed-policy.json"
    ));
    if let Ok(text) = seed {
        assert!(warnings(&text).is_empty());
    }
}
