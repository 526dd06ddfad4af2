//! PolicyLayer's spellings parse into the same model as today's vocabulary.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::config::load;
use crate::policy::{Action, RuleKind, Scope, Window};
use crate::risk::Risk;

#[test]
fn faq_rate_limit_block_is_a_per_grant_limit() {
    let p = load(
        br#"{"version":"1","default":"deny","tools":{
            "search":{"rate_limit":{"max":10,"window":60}},
            "send":{"rate_limit":{"max":5,"window":"hour","scope":"session"}}}}"#,
    )
    .unwrap();
    let c = &p.counters[p.tools["search"].limits[0]];
    assert_eq!(
        (c.max, c.window, c.scope),
        (10, Window::Minute, Scope::Grant)
    );
    assert_eq!(c.name, "tools.search.rate_limit");
    let c = &p.counters[p.tools["send"].limits[0]];
    assert_eq!(
        (c.max, c.window, c.scope),
        (5, Window::Hour, Scope::Session)
    );
}

#[test]
fn window_lengths_and_week_and_month() {
    for (w, expected) in [
        ("1", Window::Second),
        ("3600", Window::Hour),
        ("86400", Window::Day),
        ("604800", Window::Week),
        ("\"week\"", Window::Week),
        ("\"month\"", Window::Month),
        ("2592000", Window::Month),
    ] {
        let text = format!(
            r#"{{"version":"1","tools":{{"t":{{"limits":[{{"counter":"c","window":{w},"max":1}}]}}}}}}"#
        );
        assert_eq!(
            load(text.as_bytes()).unwrap().counters[0].window,
            expected,
            "{w}"
        );
    }
    let errors =
        load(br#"{"version":"1","tools":{"t":{"rate_limit":{"max":1,"window":90}}}}"#).unwrap_err();
    assert_eq!(errors[0].path, "policy.tools.t.rate_limit.window");
    assert!(
        errors[0].message.contains("length in seconds"),
        "{errors:?}"
    );
}

#[test]
fn all_tools_is_the_wildcard_entry() {
    let p = load(
        br#"{"version":"1","default":"deny","hide":["delete_account"],
            "all_tools":{"limits":[{"counter":"all","window":"minute","max":100,"scope":"grant"}]},
            "tools":{"create_charge":{"require":[],"deny_if":[],"limits":[]}}}"#,
    )
    .unwrap();
    assert_eq!(p.wildcard.limits, vec![0]);
    assert!(
        p.tools["create_charge"].rules.is_empty(),
        "empty lists say nothing"
    );
    let errors = load(br#"{"version":"1","all_tools":{},"tools":{"*":{}}}"#).unwrap_err();
    assert_eq!(errors[0].path, "policy.all_tools");
}

#[test]
fn tool_level_require_and_deny_if_are_rules() {
    let p = load(
        br#"{"version":"1","tools":{"create_refund":{
            "require":[{"path":"args.reason","op":"exists","value":true}],
            "deny_if":[{"path":"args.amount","op":"gt","value":10000}]}}}"#,
    )
    .unwrap();
    let rules = &p.tools["create_refund"].rules;
    assert!(matches!(rules[0].kind, RuleKind::Require(_)) && rules[0].name == "require");
    assert!(matches!(rules[1].kind, RuleKind::DenyIf(_)) && rules[1].action == Action::Deny);
}

#[test]
fn risk_names_in_any_case() {
    let p = load(
        br#"{"version":"1","risk_actions":{"Destructive":"deny","EXECUTE":"deny"},
            "tools":{"a":{"risk":"Write"}}}"#,
    )
    .unwrap();
    assert_eq!(p.risk_actions[&Risk::Destructive], Action::Deny);
    assert_eq!(p.risk_actions[&Risk::Execute], Action::Deny);
    assert_eq!(p.tools["a"].risk, Some(Risk::Write));
    let errors =
        load(br#"{"version":"1","risk_actions":{"destructive":"deny","Destructive":"allow"}}"#)
            .unwrap_err();
    assert_eq!(errors[0].path, "policy.risk_actions.Destructive");
}

#[test]
fn tool_level_require_is_kept_beside_rules() {
    // `rules` used to replace the tool-level lists: the require was lost.
    let p = load(
        br#"{"version":"1","tools":{"t":{
            "require":[{"path":"args.a","op":"eq","value":1}],
            "rules":[{"name":"r","deny_if":[{"path":"args.b","op":"eq","value":2}]}]}}}"#,
    )
    .unwrap();
    let names: Vec<&str> = p.tools["t"].rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["require", "r"]);
    let errors = load(
        br#"{"version":"1","tools":{"t":{
            "deny_if":[{"path":"args.a","op":"eq","value":1}],
            "rules":[{"name":"deny_if","deny_if":[{"path":"args.b","op":"eq","value":2}]}]}}}"#,
    )
    .unwrap_err();
    assert_eq!(errors[0].path, "policy.tools.t.rules[0].name");
}
