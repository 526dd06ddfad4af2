//! Intercept's rule vocabulary parses into the same model, with Intercept's
//! meaning (counter names, budgets, absence, denial text, refunds).
#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use crate::config::{load, ConfigError};
use crate::json;
use crate::policy::{Action, Algorithm, CallVerdict, ErrorStyle, Policy, RuleKind, Scope, Window};

fn policy(tools: &str) -> Policy {
    load(format!(r#"{{"version":"1","tools":{tools}}}"#).as_bytes()).unwrap()
}

fn errors(tools: &str) -> Vec<ConfigError> {
    match load(format!(r#"{{"version":"1","tools":{tools}}}"#).as_bytes()) {
        Ok(p) => panic!("{tools} accepted as {p:#?}"),
        Err(e) => e,
    }
}

fn only_error(tools: &str) -> ConfigError {
    let e = errors(tools);
    assert_eq!(e.len(), 1, "{tools}: {e:#?}");
    e.into_iter().next().unwrap()
}

fn verdict(p: &Policy, tool: &str, args: &str) -> CallVerdict {
    let doc = json::parse(args.as_bytes()).unwrap();
    p.decide_call(tool, Some(&doc.root), &|_| None)
}

fn refused_with(p: &Policy, tool: &str, args: &str) -> Option<String> {
    match verdict(p, tool, args) {
        CallVerdict::Deny { reason, .. } => Some(reason),
        _ => None,
    }
}

const STRIPE: &str = r#"{
  "create_charge": {"rules": [
    {"name": "max single charge", "conditions": [{"path": "args.amount", "op": "lte", "value": 50000}],
     "on_deny": "Single charge cannot exceed $500.00"},
    {"name": "daily spend cap",
     "conditions": [{"path": "state.create_charge.daily_spend", "op": "lte", "value": 1000000}],
     "on_deny": "Daily spending cap reached",
     "state": {"counter": "daily_spend", "window": "day", "increment_from": "args.amount"}}]},
  "delete_customer": {"rules": [{"name": "block", "action": "deny", "on_deny": "No deletions"}]},
  "*": {"rules": [{"name": "global rate limit",
     "conditions": [{"path": "state._global.calls_per_minute", "op": "lt", "value": 60}],
     "state": {"counter": "calls_per_minute", "window": "minute"}}]}
}"#;

#[test]
fn counters_are_named_per_tool_fixed_and_global_with_their_on_deny() {
    let p = policy(STRIPE);
    let spend = &p.counters[p.tools["create_charge"].limits[0]];
    assert_eq!(spend.name, "create_charge.daily_spend");
    assert_eq!(
        (spend.max, spend.window, spend.scope, spend.algorithm),
        (1_000_000, Window::Day, Scope::Global, Algorithm::Fixed)
    );
    assert_eq!(spend.increment_from.as_ref().unwrap().text, "args.amount");
    assert_eq!(spend.reason.as_deref(), Some("Daily spending cap reached"));
    let global = &p.counters[p.wildcard.limits[0]];
    // `lt 60`: Intercept reserves up to 59.
    assert_eq!(
        (global.name.as_str(), global.max),
        ("_global.calls_per_minute", 59)
    );
    assert_eq!(
        global.reason.as_deref(),
        Some("Rate limit exceeded for global rate limit")
    );
    assert_eq!(p.settings.error_style, ErrorStyle::Intercept);
    assert!(p.settings.refund_on_error);
}

#[test]
fn evaluate_rules_refuse_with_on_deny_and_deny_rules_refuse_the_tool() {
    let p = policy(STRIPE);
    assert_eq!(
        refused_with(&p, "create_charge", r#"{"amount": 50001}"#).as_deref(),
        Some("Single charge cannot exceed $500.00")
    );
    assert_eq!(
        refused_with(&p, "create_charge", r#"{"amount": 50000}"#),
        None
    );
    assert_eq!(
        refused_with(&p, "delete_customer", "{}").as_deref(),
        Some("No deletions")
    );
    // A rule without on_deny names itself, as Intercept does.
    let p = policy(
        r#"{"t": {"rules": [{"name": "only main", "conditions": [{"path": "args.b", "op": "eq", "value": "main"}]}]}}"#,
    );
    assert_eq!(
        refused_with(&p, "t", r#"{"b": "dev"}"#).as_deref(),
        Some("Denied by rule \"only main\"")
    );
}

#[test]
fn a_missing_or_null_argument_fails_every_operator_but_exists_false() {
    let p = policy(
        r#"{"t": {"rules": [
            {"name": "n", "conditions": [{"path": "args.a", "op": "neq", "value": "x"}]},
            {"name": "i", "conditions": [{"path": "args.b", "op": "not_in", "value": ["x"]}]},
            {"name": "e", "conditions": [{"path": "args.c", "op": "exists", "value": true}]}]},
           "u": {"rules": [{"name": "absent", "conditions": [{"path": "args.d", "op": "exists", "value": false}]}]}}"#,
    );
    let all = r#"{"a": "y", "b": "y", "c": 1}"#;
    assert_eq!(refused_with(&p, "t", all), None);
    for args in [
        r#"{"b": "y", "c": 1}"#,
        r#"{"a": "y", "c": 1}"#,
        r#"{"a": "y", "b": "y"}"#,
        r#"{"a": "y", "b": "y", "c": null}"#,
    ] {
        assert!(refused_with(&p, "t", args).is_some(), "{args}");
    }
    assert_eq!(refused_with(&p, "u", "{}"), None);
    assert!(refused_with(&p, "u", r#"{"d": 1}"#).is_some());
}

#[test]
fn rate_limit_shorthand_expands_like_intercept() {
    let p = policy(
        r#"{"create_issue": {"rules": [{"name": "hourly", "rate_limit": "5/hour"}]},
           "*": {"rules": [{"rate_limit": "60/minute", "on_deny": "slow down"}]}}"#,
    );
    let c = &p.counters[p.tools["create_issue"].limits[0]];
    assert_eq!(
        (c.name.as_str(), c.max, c.window),
        ("create_issue._rate_hour", 5, Window::Hour)
    );
    assert_eq!(
        c.reason.as_deref(),
        Some("Rate limit of 5 per hour reached. Try again later.")
    );
    let g = &p.counters[p.wildcard.limits[0]];
    assert_eq!(
        (g.name.as_str(), g.reason.as_deref()),
        ("_global._rate_minute", Some("slow down"))
    );
}

#[test]
fn a_fixed_increment_divides_the_budget() {
    let p = policy(
        r#"{"t": {"rules": [{"name": "r",
            "conditions": [{"path": "state.t.c", "op": "lte", "value": 10}],
            "state": {"counter": "c", "window": "hour", "increment": 3}}]}}"#,
    );
    assert_eq!(p.counters[0].max, 3);
}

#[test]
fn require_approval_asks_when_its_conditions_hold() {
    let text = br#"{"version":"1","approval":{"cluster":"approver"},"tools":{
        "create_charge":{"rules":[{"name":"large","action":"require_approval",
            "conditions":[{"path":"args.amount","op":"gt","value":50000}],
            "on_deny":"Charges over $500.00 require human approval","approval_timeout":"30m"}]},
        "wire":{"rules":[{"name":"always","action":"require_approval"}]}}}"#;
    let p = load(text).unwrap();
    let r = &p.tools["create_charge"].rules[0];
    assert!(matches!(r.kind, RuleKind::DenyIf(_)));
    assert_eq!(r.action, Action::Approve);
    assert!(matches!(
        verdict(&p, "create_charge", r#"{"amount": 60000}"#),
        CallVerdict::Approve { .. }
    ));
    assert!(matches!(
        verdict(&p, "create_charge", r#"{"amount": 100}"#),
        CallVerdict::Allow { .. }
    ));
    assert_eq!(p.tools["wire"].action, Action::Approve);
    // Without an approval service there is nobody to ask.
    let e = errors(r#"{"w":{"rules":[{"name":"a","action":"require_approval"}]}}"#);
    assert!(e.iter().any(|e| e.path == "policy.approval"), "{e:#?}");
}

#[test]
fn settings_given_in_the_file_win() {
    let p = load(
        br#"{"version":"1","settings":{"error_style":"jsonrpc","refund_on_error":false},
            "tools":{"t":{"rules":[{"name":"r","rate_limit":"1/minute"}]}}}"#,
    )
    .unwrap();
    assert_eq!(p.settings.error_style, ErrorStyle::JsonRpc);
    assert!(!p.settings.refund_on_error);
}

#[test]
fn top_level_approvals_and_timeout_are_read() {
    assert!(load(br#"{"version":"1","approvals":{"webhook":{"url":"https://x"}},"approval_timeout":"1h30m","tools":{}}"#).is_ok());
    let e = load(br#"{"version":"1","approval_timeout":"soon","tools":{}}"#).unwrap_err();
    assert_eq!(e[0].path, "policy.approval_timeout");
}

#[test]
fn problems_name_the_path_and_what_was_expected() {
    let cases: [(&str, &str, &str); 11] = [
        (
            r#"{"t":{"rules":[{"name":"r","conditions":[{"path":"state.t.c","op":"gte","value":1}],"state":{"counter":"c","window":"day"}}]}}"#,
            "policy.tools.t.rules[0].conditions[0].op",
            "lte",
        ),
        (
            r#"{"t":{"rules":[{"name":"r","conditions":[{"path":"state.u.c","op":"lte","value":1}],"state":{"counter":"c","window":"day"}}]}}"#,
            "policy.tools.t.rules[0].conditions[0]",
            "state.u.c",
        ),
        (
            r#"{"t":{"rules":[{"name":"r","conditions":[{"path":"state.t.c","op":"lte","value":1}]}]}}"#,
            "policy.tools.t.rules[0].conditions[0]",
            "no state block",
        ),
        (
            r#"{"t":{"rules":[{"name":"r","rate_limit":"5/hour","conditions":[{"path":"args.a","op":"eq","value":1}]}]}}"#,
            "policy.tools.t.rules[0].rate_limit",
            "cannot be combined",
        ),
        (
            r#"{"t":{"rules":[{"name":"r","rate_limit":"5/fortnight"}]}}"#,
            "policy.tools.t.rules[0].rate_limit",
            "\"minute\", \"hour\" or \"day\"",
        ),
        (
            r#"{"t":{"rules":[{"name":"r","action":"deny","conditions":[{"path":"args.a","op":"eq","value":1}]}]}}"#,
            "policy.tools.t.rules[0].conditions",
            "must not have",
        ),
        (
            r#"{"t":{"rules":[{"action":"deny"}]}}"#,
            "policy.tools.t.rules[0].name",
            "missing",
        ),
        (
            r#"{"t":{"rules":[{"name":"r","action":"evaluate"}]}}"#,
            "policy.tools.t.rules[0].conditions",
            "at least one condition",
        ),
        (
            r#"{"t":{"rules":[{"name":"a","rate_limit":"5/hour"},{"name":"b","rate_limit":"9/hour"}]}}"#,
            "policy.tools.t.rules[1]",
            "duplicate state counter \"_rate_hour\"",
        ),
        (
            r#"{"t":{"rules":[{"name":"r","conditions":[{"path":"state.t.c","op":"lte","value":5}],"state":{"counter":"c","window":"week"}}]}}"#,
            "policy.tools.t.rules[0].state.window",
            "\"minute\"",
        ),
        (
            r#"{"t":{"rules":[{"name":"r","action":"block","on_deny":"x"}]}}"#,
            "policy.tools.t.rules[0].action",
            "require_approval",
        ),
    ];
    for (tools, path, text) in cases {
        let e = only_error(tools);
        assert_eq!(e.path, path, "{tools}: {e:?}");
        assert!(e.message.contains(text), "{tools}: {e:?}");
    }
}

#[test]
fn native_rules_keep_their_meaning() {
    let p = policy(
        r#"{"t":{"rules":[{"name":"r","deny_if":[{"path":"args.a","op":"neq","value":"x"}]}]}}"#,
    );
    assert!(matches!(p.tools["t"].rules[0].kind, RuleKind::DenyIf(_)));
    assert_eq!(p.settings.error_style, ErrorStyle::JsonRpc);
    assert!(!p.settings.refund_on_error);
}

#[test]
fn hidden_and_unlisted_tools_read_intercepts_texts() {
    let p = load(
        br#"{"version":"1","default":"deny","hide":["h"],
            "tools":{"t":{"rules":[{"name":"r","rate_limit":"1/minute"}]}}}"#,
    )
    .unwrap();
    assert_eq!(
        refused_with(&p, "h", "{}").as_deref(),
        Some("Tool \"h\" is hidden by policy")
    );
    assert_eq!(
        refused_with(&p, "u", "{}").as_deref(),
        Some("Tool \"u\" is not permitted by policy")
    );
}

#[test]
fn two_rules_of_one_name_both_apply() {
    let p = policy(
        r#"{"t":{"rules":[
            {"name":"r","conditions":[{"path":"args.a","op":"eq","value":1}]},
            {"name":"r","conditions":[{"path":"args.b","op":"eq","value":2}]}]}}"#,
    );
    let names: Vec<&str> = p.tools["t"].rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["r", "r (rules[1])"]);
    assert_eq!(
        refused_with(&p, "t", r#"{"a": 1, "b": 3}"#).as_deref(),
        Some("Denied by rule \"r\"")
    );
}
