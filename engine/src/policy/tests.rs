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
use crate::json;

// ---------------------------------------------------------------- helpers

fn policy(text: &str) -> Policy {
    load(text.as_bytes()).unwrap_or_else(|e| panic!("{text} refused: {e:#?}"))
}

fn allowed_limits(p: &Policy, tool: &str) -> Vec<usize> {
    match p.decide(tool) {
        ToolVerdict::Allow { limits } => limits,
        other => panic!("{tool:?} not allowed: {other:?}"),
    }
}

/// (rule, reason) of a refused tool.
fn refusal(p: &Policy, tool: &str) -> (String, String) {
    match p.decide(tool) {
        ToolVerdict::Deny { rule, reason } => (rule, reason),
        other => panic!("{tool:?} not refused: {other:?}"),
    }
}

fn no_hint(_: &str) -> Option<Risk> {
    None
}

/// `decide_call` with arguments given as JSON text.
fn call(p: &Policy, tool: &str, args: &str) -> CallVerdict {
    let doc = json::parse(args.as_bytes()).unwrap();
    p.decide_call(tool, Some(&doc.root), &no_hint)
}

const LIMIT_A: &str = r#"{"counter":"a","window":"minute","max":5}"#;
const LIMIT_B: &str = r#"{"counter":"b","window":"hour","max":50}"#;

// ---------------------------------------------------------------- default

#[test]
fn default_allow_allows_unlisted_tools_without_limits() {
    let p = policy(r#"{"version":"1","default":"allow"}"#);
    assert!(allowed_limits(&p, "anything").is_empty());
}

#[test]
fn default_deny_refuses_unlisted_tools() {
    let p = policy(r#"{"version":"1","default":"deny","tools":{"ok":{}}}"#);
    let (rule, reason) = refusal(&p, "other");
    assert_eq!(rule, "default");
    assert!(reason.contains("\"other\""), "{reason}");
    assert!(reason.contains("default: deny"), "{reason}");
}

#[test]
fn default_deny_with_no_tools_refuses_everything() {
    let p = policy(r#"{"version":"1","default":"deny"}"#);
    refusal(&p, "echo");
    refusal(&p, "");
}

// ---------------------------------------------------------------- listed tools

#[test]
fn listed_tool_is_allowed_under_default_deny() {
    let p = policy(r#"{"version":"1","default":"deny","tools":{"echo":{}}}"#);
    assert!(allowed_limits(&p, "echo").is_empty());
}

#[test]
fn explicit_allow_is_allowed() {
    let p = policy(r#"{"version":"1","default":"deny","tools":{"echo":{"action":"allow"}}}"#);
    allowed_limits(&p, "echo");
}

#[test]
fn listed_deny_returns_its_reason() {
    let p = policy(
        r#"{"version":"1","tools":{"rm":{"action":"deny","reason":"deleting is not allowed here"}}}"#,
    );
    assert_eq!(
        refusal(&p, "rm"),
        (
            "tools.rm".to_string(),
            "deleting is not allowed here".to_string()
        )
    );
}

#[test]
fn listed_deny_without_reason_names_the_tool() {
    let p = policy(r#"{"version":"1","tools":{"rm":{"action":"deny"}}}"#);
    let (rule, reason) = refusal(&p, "rm");
    assert_eq!(rule, "tools.rm");
    assert_eq!(reason, "tool \"rm\" is denied by policy");
}

#[test]
fn listed_deny_beats_default_allow() {
    let p = policy(r#"{"version":"1","default":"allow","tools":{"rm":{"action":"deny"}}}"#);
    refusal(&p, "rm");
    allowed_limits(&p, "ls");
}

#[test]
fn listed_tool_gets_its_limits() {
    let p = policy(&format!(
        r#"{{"version":"1","default":"deny","tools":{{"t":{{"limits":[{LIMIT_A},{LIMIT_B}]}}}}}}"#
    ));
    assert_eq!(allowed_limits(&p, "t"), [0, 1]);
}

// ---------------------------------------------------------------- hide

#[test]
fn hidden_tool_is_refused_even_when_listed_allow() {
    let p = policy(
        r#"{"version":"1","default":"allow","tools":{"secret":{"action":"allow"}},"hide":["secret"]}"#,
    );
    let (rule, reason) = refusal(&p, "secret");
    assert_eq!(rule, "hide");
    assert_eq!(reason, "tool \"secret\" is hidden by policy");
    allowed_limits(&p, "visible");
}

#[test]
fn hide_star_hides_every_tool() {
    let p = policy(r#"{"version":"1","default":"allow","tools":{"echo":{}},"hide":["*"]}"#);
    assert_eq!(refusal(&p, "echo").0, "hide");
    assert_eq!(refusal(&p, "unlisted").0, "hide");
    assert_eq!(refusal(&p, "*").0, "hide");
}

#[test]
fn hidden_tools_are_not_listed() {
    let p = policy(r#"{"version":"1","default":"allow","hide":["secret"]}"#);
    assert!(!p.lists("secret"));
    assert!(p.lists("visible"));
}

#[test]
fn denied_tools_are_not_listed_but_limited_ones_are() {
    let p = policy(&format!(
        r#"{{"version":"1","default":"deny","tools":{{"rm":{{"action":"deny"}},"t":{{"limits":[{LIMIT_A}]}}}}}}"#
    ));
    assert!(!p.lists("rm"));
    assert!(!p.lists("unlisted"));
    assert!(p.lists("t"));
}

// ---------------------------------------------------------------- wildcard

#[test]
fn wildcard_deny_refuses_every_tool_with_its_reason() {
    let p = policy(
        r#"{"version":"1","default":"allow","tools":{"echo":{"action":"allow"},"*":{"action":"deny","reason":"maintenance window"}}}"#,
    );
    for tool in ["echo", "unlisted"] {
        assert_eq!(
            refusal(&p, tool),
            ("tools.*".to_string(), "maintenance window".to_string())
        );
    }
}

#[test]
fn wildcard_deny_without_reason_has_a_default_reason() {
    let p = policy(r#"{"version":"1","tools":{"*":{"action":"deny"}}}"#);
    assert_eq!(refusal(&p, "x").1, "every tool is denied by policy");
}

#[test]
fn own_deny_reason_wins_over_wildcard_deny() {
    let p = policy(
        r#"{"version":"1","tools":{"rm":{"action":"deny","reason":"own"},"*":{"action":"deny","reason":"all"}}}"#,
    );
    assert_eq!(refusal(&p, "rm").1, "own");
}

#[test]
fn wildcard_does_not_open_default_deny() {
    let p = policy(&format!(
        r#"{{"version":"1","default":"deny","tools":{{"*":{{"limits":[{LIMIT_A}]}}}}}}"#
    ));
    assert_eq!(refusal(&p, "unlisted").0, "default");
}

#[test]
fn wildcard_limits_apply_to_every_allowed_tool() {
    let p = policy(&format!(
        r#"{{"version":"1","default":"allow","tools":{{"t":{{"limits":[{LIMIT_B}]}},"u":{{}},"*":{{"limits":[{LIMIT_A}]}}}}}}"#
    ));
    let a = p.counters.iter().position(|c| c.name == "a").unwrap();
    let b = p.counters.iter().position(|c| c.name == "b").unwrap();
    assert_eq!(allowed_limits(&p, "t"), [b, a]);
    assert_eq!(allowed_limits(&p, "u"), [a]);
    assert_eq!(allowed_limits(&p, "unlisted"), [a]);
}

#[test]
fn counter_in_both_own_and_wildcard_limits_is_taken_once() {
    let p = policy(&format!(
        r#"{{"version":"1","tools":{{"t":{{"limits":[{LIMIT_A}]}},"*":{{"limits":[{LIMIT_A}]}}}}}}"#
    ));
    assert_eq!(allowed_limits(&p, "t"), [0]);
}

// ---------------------------------------------------------------- exact names

#[test]
fn names_match_case_sensitively() {
    let p = policy(r#"{"version":"1","default":"deny","tools":{"echo":{}}}"#);
    allowed_limits(&p, "echo");
    refusal(&p, "Echo");
    refusal(&p, "ECHO");
}

#[test]
fn names_are_not_trimmed() {
    let p = policy(r#"{"version":"1","default":"deny","tools":{"echo":{}}}"#);
    for name in [" echo", "echo ", "echo\n", "\techo", "echo\u{0}"] {
        refusal(&p, name);
    }
}

#[test]
fn names_are_not_unicode_normalised() {
    // Precomposed é (U+00E9) in the policy, decomposed e + U+0301 called.
    let p = policy("{\"version\":\"1\",\"default\":\"deny\",\"tools\":{\"caf\u{e9}\":{}}}");
    allowed_limits(&p, "caf\u{e9}");
    refusal(&p, "cafe\u{301}");
    // Look-alike characters are other names.
    refusal(&p, "caf\u{435}");
}

#[test]
fn denied_names_are_exact_too() {
    let p = policy(
        r#"{"version":"1","default":"allow","tools":{"rm":{"action":"deny"}},"hide":["Secret"]}"#,
    );
    refusal(&p, "rm");
    allowed_limits(&p, "RM");
    allowed_limits(&p, "rm ");
    refusal(&p, "Secret");
    allowed_limits(&p, "secret");
}

#[test]
fn escaped_names_in_the_policy_match_the_unescaped_call() {
    let p = policy(r#"{"version":"1","default":"deny","tools":{"\u0065cho":{}}}"#);
    allowed_limits(&p, "echo");
}

// ---------------------------------------------------------------- small enums

#[test]
fn window_lengths_and_names() {
    assert_eq!(Window::Second.seconds(), 1);
    assert_eq!(Window::Minute.seconds(), 60);
    assert_eq!(Window::Hour.seconds(), 3600);
    assert_eq!(Window::Day.seconds(), 86_400);
    let names: Vec<&str> = [Window::Second, Window::Minute, Window::Hour, Window::Day]
        .iter()
        .map(|w| w.name())
        .collect();
    assert_eq!(names, ["second", "minute", "hour", "day"]);
}

#[test]
fn scope_names() {
    let names: Vec<&str> = [Scope::Global, Scope::Grant, Scope::Session, Scope::Source]
        .iter()
        .map(|s| s.name())
        .collect();
    assert_eq!(names, ["global", "grant", "session", "source"]);
}

#[test]
fn actions_are_ordered_by_restrictiveness() {
    assert!(Action::Allow < Action::Approve);
    assert!(Action::Approve < Action::Deny);
    assert_eq!(Action::Approve.name(), "approve");
}

// ---------------------------------------------------------------- calls with arguments

const SESSION_RULES: &str = r#"{"version":"1","default":"deny","tools":{"session":{
    "limits":[{"counter":"c","window":"minute","max":10}],
    "rules":[
        {"name":"no-cancel","deny_if":[{"path":"args.action","op":"eq","value":"cancel"}],"reason":"no cancelling"},
        {"name":"small","require":[{"path":"args.n","op":"lte","value":20}]}
    ]}}}"#;

#[test]
fn call_passing_every_rule_is_allowed_with_limits() {
    let p = policy(SESSION_RULES);
    assert_eq!(
        call(&p, "session", r#"{"action":"list","n":3}"#),
        CallVerdict::Allow { limits: vec![0] }
    );
}

#[test]
fn deny_if_rule_refuses_with_its_reason() {
    let p = policy(SESSION_RULES);
    assert_eq!(
        call(&p, "session", r#"{"action":"cancel","n":3}"#),
        CallVerdict::Deny {
            rule: "tools.session.rules.no-cancel".into(),
            reason: "no cancelling".into()
        }
    );
}

#[test]
fn unmet_require_rule_refuses_with_a_default_reason() {
    let p = policy(SESSION_RULES);
    match call(&p, "session", r#"{"action":"list","n":21}"#) {
        CallVerdict::Deny { rule, reason } => {
            assert_eq!(rule, "tools.session.rules.small");
            assert!(reason.contains("\"small\""), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn missing_argument_fails_a_require_rule() {
    let p = policy(SESSION_RULES);
    assert!(matches!(
        call(&p, "session", r#"{"action":"list"}"#),
        CallVerdict::Deny { .. }
    ));
    assert!(matches!(
        p.decide_call("session", None, &no_hint),
        CallVerdict::Deny { .. }
    ));
}

#[test]
fn argument_of_unexpected_type_fails_closed() {
    let p = policy(SESSION_RULES);
    // n as a string cannot be compared with lte: require is not satisfied.
    assert!(matches!(
        call(&p, "session", r#"{"action":"list","n":"3"}"#),
        CallVerdict::Deny { .. }
    ));
}

#[test]
fn escaped_argument_values_are_compared_unescaped() {
    let p = policy(SESSION_RULES);
    assert!(matches!(
        call(&p, "session", r#"{"action":"c\u0061ncel","n":1}"#),
        CallVerdict::Deny { .. }
    ));
}

#[test]
fn tool_level_refusal_comes_before_argument_rules() {
    let p = policy(SESSION_RULES);
    assert!(matches!(
        call(&p, "other", r#"{}"#),
        CallVerdict::Deny { rule, .. } if rule == "default"
    ));
}

#[test]
fn approve_action_asks_for_approval_keeping_limits() {
    let p = policy(
        r#"{"version":"1","approval":{"cluster":"approver"},"tools":{"t":{"action":"approve",
            "reason":"needs a human","limits":[{"counter":"c","window":"day","max":3}]}}}"#,
    );
    assert_eq!(
        call(&p, "t", "{}"),
        CallVerdict::Approve {
            limits: vec![0],
            rule: "tools.t".into(),
            reason: "needs a human".into()
        }
    );
}

#[test]
fn deny_rule_beats_approval() {
    let p = policy(
        r#"{"version":"1","approval":{"cluster":"approver"},"tools":{"t":{"action":"approve",
            "rules":[{"name":"r","deny_if":[{"path":"args.x","op":"exists","value":true}]}]}}}"#,
    );
    assert!(matches!(
        call(&p, "t", r#"{"x":1}"#),
        CallVerdict::Deny { .. }
    ));
    assert!(matches!(
        call(&p, "t", r#"{}"#),
        CallVerdict::Approve { .. }
    ));
}

#[test]
fn wildcard_argument_rules_apply_to_every_tool() {
    let p = policy(
        r#"{"version":"1","tools":{"*":{"rules":[{"name":"no-root","deny_if":[{"path":"args.path","op":"regex","value":"^/root"}]}]}}}"#,
    );
    assert_eq!(
        call(&p, "any", r#"{"path":"/root/x"}"#),
        CallVerdict::Deny {
            rule: "tools.*.rules.no-root".into(),
            reason: "rule \"no-root\" of tool \"*\" refused the arguments".into()
        }
    );
    assert!(matches!(
        call(&p, "any", r#"{"path":"/home"}"#),
        CallVerdict::Allow { .. }
    ));
}

/// The `regex` operator's literal prefilter changes no verdict: values
/// without `table` are allowed without running the regex, values with it
/// in any case still run it, and a non-string is still unknown (refused).
#[test]
fn prefiltered_regex_rule_keeps_its_verdicts() {
    let p = policy(
        r#"{"version":"1","tools":{"q":{"rules":[{"name":"no-ddl","deny_if":[{"path":"args.query","op":"regex","value":"(?i)\\b(drop|truncate)\\s+table\\b"}]}]}}}"#,
    );
    for allowed in [
        r#"{"query":"quarterly report owners"}"#,
        r#"{"query":"a TABLE of contents"}"#,
        r#"{"query":"drop tables"}"#,
        r#"{}"#,
    ] {
        assert!(
            matches!(call(&p, "q", allowed), CallVerdict::Allow { .. }),
            "{allowed}"
        );
    }
    for refused in [
        r#"{"query":"DROP TABLE users"}"#,
        r#"{"query":"x;\ntruncate\tTaBlE t"}"#,
        r#"{"query":42}"#,
    ] {
        assert!(
            matches!(call(&p, "q", refused), CallVerdict::Deny { .. }),
            "{refused}"
        );
    }
}

#[test]
fn risk_actions_use_the_policy_risk_first() {
    let p = policy(
        r#"{"version":"1","risk_actions":{"destructive":"deny"},"tools":{"reader":{"risk":"read"}}}"#,
    );
    let destructive_hint = |_: &str| Some(Risk::Destructive);
    assert!(matches!(
        p.decide_call("reader", None, &destructive_hint),
        CallVerdict::Allow { .. }
    ));
}

#[test]
fn risk_actions_fall_back_to_the_server_hint() {
    let p = policy(r#"{"version":"1","risk_actions":{"write":"deny"}}"#);
    let write_hint = |_: &str| Some(Risk::Write);
    match p.decide_call("tool", None, &write_hint) {
        CallVerdict::Deny { rule, reason } => {
            assert_eq!(rule, "risk_actions.write");
            assert!(reason.contains("by the server's annotations"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn never_seen_tools_are_treated_as_destructive() {
    let p = policy(r#"{"version":"1","risk_actions":{"destructive":"deny"}}"#);
    assert!(matches!(
        p.decide_call("unknown", None, &no_hint),
        CallVerdict::Deny { rule, .. } if rule == "risk_actions.destructive"
    ));
}

#[test]
fn when_rule_raises_the_risk_of_a_call() {
    let p = policy(
        r#"{"version":"1","risk_actions":{"destructive":"deny"},"tools":{"s":{"risk":"read","rules":[
            {"name":"cancel-is-destructive","when":[{"path":"args.action","op":"eq","value":"cancel"}],"risk":"destructive"}]}}}"#,
    );
    assert!(matches!(
        call(&p, "s", r#"{"action":"cancel"}"#),
        CallVerdict::Deny { .. }
    ));
    assert!(matches!(
        call(&p, "s", r#"{"action":"list"}"#),
        CallVerdict::Allow { .. }
    ));
}

#[test]
fn risk_action_approve_asks_for_approval() {
    let p = policy(
        r#"{"version":"1","approval":{"cluster":"a"},"risk_actions":{"execute":"approve"},"tools":{"run":{"risk":"execute"}}}"#,
    );
    assert!(matches!(
        p.decide_call("run", None, &no_hint),
        CallVerdict::Approve { rule, .. } if rule == "risk_actions.execute"
    ));
}

#[test]
fn most_severe_risk_of_tool_and_wildcard_wins() {
    let p = policy(
        r#"{"version":"1","risk_actions":{"write":"deny"},"tools":{"r":{"risk":"read"},"*":{"risk":"write"}}}"#,
    );
    assert!(matches!(
        p.decide_call("r", None, &no_hint),
        CallVerdict::Deny { rule, .. } if rule == "risk_actions.write"
    ));
}

#[test]
fn tools_needing_approval_are_still_listed() {
    let p =
        policy(r#"{"version":"1","approval":{"cluster":"a"},"tools":{"t":{"action":"approve"}}}"#);
    assert!(p.lists("t"));
}

#[test]

fn tools_always_refused_by_their_declared_risk_are_not_listed() {
    let p = policy(
        r#"{"version":"1","risk_actions":{"destructive":"deny"},"tools":{"rm":{"risk":"destructive"},"ls":{"risk":"read"}}}"#,
    );
    assert!(matches!(
        p.decide_call("rm", None, &no_hint),
        CallVerdict::Deny { .. }
    ));
    assert!(!p.lists("rm"));
    assert!(p.lists("ls"));
}

// ---------------------------------------------------------------- patterns

fn load_errors(text: &str) -> Vec<String> {
    match load(text.as_bytes()) {
        Ok(_) => panic!("{text} accepted"),
        Err(e) => e.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn deny_pattern_under_default_allow_refuses_every_match() {
    // The case that used to let every delete through.
    let p = policy(
        r#"{"version":"1","default":"allow","tools":{"delete_*":{"action":"deny","reason":"no deletes"}}}"#,
    );
    for tool in ["delete_", "delete_file", "delete_everything_now"] {
        let (rule, reason) = refusal(&p, tool);
        assert_eq!(rule, "tools.delete_*");
        assert_eq!(reason, "no deletes");
        assert!(!p.lists(tool));
    }
    for tool in ["delete", "undelete_file", "Delete_file", "read_file"] {
        allowed_limits(&p, tool);
        assert!(p.lists(tool));
    }
}

#[test]
fn allow_pattern_under_default_deny_lists_matching_tools() {
    let p = policy(&format!(
        r#"{{"version":"1","default":"deny","tools":{{"read_*":{{"limits":[{LIMIT_A}]}},"*_admin":{{"action":"deny"}}}}}}"#
    ));
    assert_eq!(allowed_limits(&p, "read_file"), vec![0]);
    assert_eq!(allowed_limits(&p, "read_"), vec![0]);
    assert_eq!(refusal(&p, "write_file").0, "default");
    assert_eq!(refusal(&p, "user_admin").0, "tools.*_admin");
    // read_x_admin: "*_admin" (6 literal characters) beats "read_*" (5).
    assert_eq!(refusal(&p, "read_x_admin").0, "tools.*_admin");
    assert_eq!(p.entry("read_x_admin").map(|e| e.0), Some("*_admin"));
    assert_eq!(p.entry("read_file").map(|e| e.0), Some("read_*"));
    assert_eq!(p.entry("write_file"), None);
}

#[test]
fn exact_name_beats_any_pattern() {
    let p = policy(
        r#"{"version":"1","default":"deny","tools":{"delete_*":{"action":"deny"},"delete_tmp":{},"delete_tmp_*":{"action":"deny"}}}"#,
    );
    allowed_limits(&p, "delete_tmp");
    assert_eq!(p.entry("delete_tmp").map(|e| e.0), Some("delete_tmp"));
    assert_eq!(refusal(&p, "delete_tmp_x").0, "tools.delete_tmp_*");
    assert_eq!(refusal(&p, "delete_x").0, "tools.delete_*");
}

#[test]
fn most_specific_pattern_wins_whatever_the_key_order() {
    for tools in [
        r#""db.*":{},"db.*.drop":{"action":"deny"}"#,
        r#""db.*.drop":{"action":"deny"},"db.*":{}"#,
    ] {
        let p = policy(&format!(
            r#"{{"version":"1","default":"deny","tools":{{{tools}}}}}"#
        ));
        assert_eq!(refusal(&p, "db.users.drop").0, "tools.db.*.drop");
        allowed_limits(&p, "db.users.select");
        let order: Vec<&str> = p.patterns.iter().map(|g| g.glob.text.as_str()).collect();
        assert_eq!(order, ["db.*.drop", "db.*"]);
    }
}

#[test]
fn wildcard_entry_still_applies_on_top_of_a_pattern() {
    let p = policy(&format!(
        r#"{{"version":"1","default":"deny","tools":{{"read_*":{{"limits":[{LIMIT_A}]}},"*":{{"limits":[{LIMIT_B}]}}}}}}"#
    ));
    assert_eq!(allowed_limits(&p, "read_file"), vec![0, 1]);
    // "*" alone still does not list a tool under default deny.
    assert_eq!(refusal(&p, "write_file").0, "default");
    let p = policy(
        r#"{"version":"1","default":"allow","tools":{"read_*":{},"*":{"action":"deny","reason":"closed"}}}"#,
    );
    assert_eq!(
        refusal(&p, "read_file"),
        ("tools.*".to_string(), "closed".to_string())
    );
}

#[test]
fn pattern_rules_and_approval_name_the_pattern() {
    let p = policy(
        r#"{"version":"1","default":"deny","approval":{"cluster":"approver"},"tools":{
          "claude_code_*":{"rules":[{"name":"no-cancel","deny_if":[{"path":"args.action","op":"eq","value":"cancel"}]}]},
          "run_*":{"action":"approve"}}}"#,
    );
    match call(&p, "claude_code_session", r#"{"action":"cancel"}"#) {
        CallVerdict::Deny { rule, reason } => {
            assert_eq!(rule, "tools.claude_code_*.rules.no-cancel");
            assert!(reason.contains("of pattern \"claude_code_*\""), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        call(&p, "claude_code_session", r#"{"action":"list"}"#),
        CallVerdict::Allow { .. }
    ));
    match call(&p, "run_tests", "{}") {
        CallVerdict::Approve { rule, .. } => assert_eq!(rule, "tools.run_*"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pattern_counter_is_shared_by_every_matching_tool() {
    let p = policy(&format!(
        r#"{{"version":"1","default":"deny","tools":{{"read_*":{{"limits":[{LIMIT_A}]}},"read_file":{{"limits":[{LIMIT_A}]}}}}}}"#
    ));
    assert_eq!(p.counters.len(), 1);
    assert_eq!(allowed_limits(&p, "read_dir"), vec![0]);
    assert_eq!(allowed_limits(&p, "read_file"), vec![0]);
}

#[test]
fn hide_patterns_hide_and_refuse_matching_tools() {
    let p = policy(
        r#"{"version":"1","default":"allow","hide":["debug_*","*_internal"],"tools":{"debug_ok":{}}}"#,
    );
    for tool in ["debug_dump", "debug_ok", "x_internal"] {
        assert_eq!(refusal(&p, tool).0, "hide");
        assert!(!p.lists(tool));
    }
    allowed_limits(&p, "debug");
    assert!(p.lists("internal"));
    let p = policy(r#"{"version":"1","default":"allow","hide":["*"]}"#);
    assert!(p.hide_all && p.hide_patterns.is_empty());
    assert_eq!(refusal(&p, "anything").0, "hide");
}

#[test]
fn ambiguous_equal_specificity_overlap_is_an_error_with_both_paths() {
    let errors = load_errors(
        r#"{"version":"1","default":"deny","tools":{"delete_*":{"action":"deny"},"*_report":{}}}"#,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    let e = &errors[0];
    assert!(e.starts_with(r#"policy.tools["*_report"]: pattern "*_report" and pattern "delete_*" at policy.tools["delete_*"] both match tool names such as "delete__report""#), "{e}");
    assert!(e.contains("same specificity (7 literal characters)"), "{e}");
}

#[test]
fn overlap_is_fine_when_rules_agree_or_specificity_differs_or_none_overlaps() {
    // Same rule: either may apply, the outcome is the same.
    policy(
        r#"{"version":"1","default":"deny","tools":{"delete_*":{"action":"deny"},"*_report":{"action":"deny"}}}"#,
    );
    // Different specificity: the more specific decides.
    policy(
        r#"{"version":"1","default":"deny","tools":{"delete_*":{"action":"deny"},"*_reports":{}}}"#,
    );
    // Equal specificity, no common name.
    policy(
        r#"{"version":"1","default":"deny","tools":{"read_*":{},"edit_*":{"action":"deny"},"*_a":{},"*_b":{"action":"deny"}}}"#,
    );
    // Rules that differ only in a regex are different.
    let errors = load_errors(
        r#"{"version":"1","tools":{
          "a_*":{"rules":[{"name":"r","deny_if":[{"path":"args.x","op":"regex","value":"^a"}]}]},
          "*_b":{"rules":[{"name":"r","deny_if":[{"path":"args.x","op":"regex","value":"^b"}]}]}}}"#,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
}

#[test]
fn double_star_is_an_error_with_its_path() {
    let errors = load_errors(r#"{"version":"1","tools":{"a**":{}},"hide":["x**"]}"#);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(r#"policy.tools["a**"]: invalid pattern: "**""#)),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("policy.hide[0]: invalid pattern")),
        "{errors:?}"
    );
}

#[test]
fn duplicate_hide_pattern_is_an_error() {
    let errors = load_errors(r#"{"version":"1","hide":["a_*","a_*"]}"#);
    assert_eq!(errors, [r#"policy.hide[1]: duplicate entry "a_*""#]);
}

#[test]
fn one_overlap_error_per_pattern() {
    let errors = load_errors(
        r#"{"version":"1","tools":{"a_*":{"reason":"1"},"b_*":{"reason":"2"},"*_c":{"reason":"3"}}}"#,
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(r#"policy.tools["*_c"]: pattern "*_c" and pattern "a_*""#),
        "{errors:?}"
    );
}
