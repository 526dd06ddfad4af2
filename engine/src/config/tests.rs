#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

/// Byte-identical copy of `shared/reference/seed-policy.json`, kept in the
/// repository so CI (which clones only the repository) can read it.
const SEED_POLICY: &str = include_str!("../../../envoy/seed-policy.json");

// ---------------------------------------------------------------- helpers

fn loaded(text: &str) -> Policy {
    load(text.as_bytes()).unwrap_or_else(|errors| panic!("{text} refused: {errors:#?}"))
}

fn errors_of(text: &str) -> Vec<ConfigError> {
    match load(text.as_bytes()) {
        Ok(p) => panic!("{text} accepted as {p:#?}"),
        Err(errors) => errors,
    }
}

/// The only error of a policy that has exactly one problem.
fn only_error(text: &str) -> ConfigError {
    let errors = errors_of(text);
    assert_eq!(errors.len(), 1, "{text}: {errors:#?}");
    errors.into_iter().next().unwrap()
}

/// Asserts the single error is at `path` and its message names both the
/// value found and what was expected.
fn assert_error(text: &str, path: &str, found: &str, expected: &str) {
    let e = only_error(text);
    assert_eq!(e.path, path, "{text}: {e}");
    assert!(
        e.message.contains(found),
        "{text}: message {:?} does not show the value {found:?}",
        e.message
    );
    assert!(
        e.message.contains(expected),
        "{text}: message {:?} does not say {expected:?} was expected",
        e.message
    );
    // The rendered line carries the path too, for the Envoy log.
    assert!(e.to_string().starts_with(&format!("{path}: ")));
}

/// A version-1 policy with `body` spliced in as extra top-level members.
fn policy_with(body: &str) -> String {
    format!(r#"{{"version":"1",{body}}}"#)
}

/// A policy whose only tool `t` has the given rule.
fn tool_rule(rule: &str) -> String {
    policy_with(&format!(r#""tools":{{"t":{rule}}}"#))
}

/// A policy whose tool `t` has one limit given as JSON.
fn one_limit(limit: &str) -> String {
    tool_rule(&format!(r#"{{"limits":[{limit}]}}"#))
}

fn with_settings(settings: &str) -> String {
    policy_with(&format!(r#""settings":{settings}"#))
}

// ---------------------------------------------------------------- the seed policy

#[test]
fn seed_policy_loads() {
    let p = loaded(SEED_POLICY);
    assert_eq!(p.default, Action::Deny);
    assert_eq!(p.tools.len(), 1);
    let rule = &p.tools["claude_code_session"];
    assert_eq!(rule.action, Action::Allow);
    assert_eq!(rule.reason, None);
    assert_eq!(rule.limits, [0]);
    assert_eq!(
        p.counters,
        [Counter {
            name: "claude_code_session_rate".to_string(),
            window: Window::Minute,
            max: 10,
            scope: Scope::Grant,
            algorithm: Algorithm::Sliding,
            increment_from: None,
            default_increment_milli: None,
            global: false,
            reason: None,
        }]
    );
    assert_eq!(p.wildcard.action, Action::Allow);
    assert!(p.wildcard.limits.is_empty());
    assert!(p.wildcard.rules.is_empty());
    assert!(p.hide.is_empty());
    assert!(!p.hide_all);
    assert_eq!(p.settings, Settings::default());
}

#[test]
fn seed_policy_is_the_reference_text() {
    // Guards the copy against edits: same members, same values.
    assert!(SEED_POLICY.contains(r#""default": "deny""#));
    assert!(SEED_POLICY.contains(r#""counter": "claude_code_session_rate""#));
    assert!(SEED_POLICY.contains(r#""window": "minute""#));
    assert!(SEED_POLICY.contains(r#""max": 10"#));
    assert!(SEED_POLICY.contains(r#""scope": "grant""#));
}

// ---------------------------------------------------------------- minimal policies and defaults

#[test]
fn version_alone_is_a_valid_policy() {
    let p = loaded(r#"{"version":"1"}"#);
    assert!(p.tools.is_empty());
    assert!(p.counters.is_empty());
    assert_eq!(p.settings, Settings::default());
}

#[test]
fn missing_default_means_allow() {
    assert_eq!(loaded(r#"{"version":"1"}"#).default, Action::Allow);
}

#[test]
fn explicit_defaults_are_read() {
    assert_eq!(
        loaded(&policy_with(r#""default":"deny""#)).default,
        Action::Deny
    );
    assert_eq!(
        loaded(&policy_with(r#""default":"allow""#)).default,
        Action::Allow
    );
}

#[test]
fn description_is_accepted_at_top_level_and_on_rules() {
    let p = loaded(&policy_with(
        r#""description":"x","tools":{"t":{"description":"y","action":"allow"}}"#,
    ));
    assert_eq!(p.tools["t"].action, Action::Allow);
}

#[test]
fn settings_defaults_are_safe() {
    let s = Settings::default();
    assert_eq!(s.max_body_bytes, 1024 * 1024);
    assert_eq!(s.max_depth, json::DEFAULT_MAX_DEPTH);
    assert_eq!(s.error_style, ErrorStyle::JsonRpc);
    assert_eq!(s.header_mode, HeaderMode::Stream);
    assert_eq!(s.grant, GrantSource::Header("authorization".to_string()));
    assert!(!s.refund_on_error);
    assert_eq!(s.counter_slots, 256);
    assert_eq!(s.grant_hash_key, None);
    assert_eq!(s.max_batch, 64);
}

#[test]
fn every_setting_is_read() {
    let p = loaded(&with_settings(
        r#"{"max_body_bytes":67108864,"max_depth":128,"error_style":"tool_result",
            "header_mode":"hold","grant_header":"X-Api-Key","refund_on_error":true,
            "counter_slots":65536,"grant_hash_key":"secret"}"#,
    ));
    let s = p.settings;
    assert_eq!(s.max_body_bytes, 64 << 20);
    assert_eq!(s.max_depth, 128);
    assert_eq!(s.error_style, ErrorStyle::ToolResult);
    assert_eq!(s.header_mode, HeaderMode::Hold);
    assert_eq!(s.grant, GrantSource::Header("x-api-key".to_string()));
    assert!(s.refund_on_error);
    assert_eq!(s.counter_slots, 65_536);
    assert_eq!(s.grant_hash_key.as_deref(), Some("secret"));
}

#[test]
fn grant_property_is_read_as_a_path() {
    let p = loaded(&with_settings(
        r#"{"grant_property":["metadata","filter_metadata","jwt","sub"]}"#,
    ));
    assert_eq!(
        p.settings.grant,
        GrantSource::Property(vec![
            "metadata".into(),
            "filter_metadata".into(),
            "jwt".into(),
            "sub".into()
        ])
    );
}

#[test]
fn smallest_accepted_numbers_are_one() {
    let p = loaded(&with_settings(
        r#"{"max_body_bytes":1,"max_depth":1,"counter_slots":1}"#,
    ));
    assert_eq!(p.settings.max_body_bytes, 1);
    assert_eq!(p.settings.max_depth, 1);
    assert_eq!(p.settings.counter_slots, 1);
}

#[test]
fn limit_scope_defaults_to_global() {
    let p = loaded(&one_limit(r#"{"counter":"c","window":"hour","max":5}"#));
    assert_eq!(p.counters[0].scope, Scope::Global);
    assert_eq!(p.counters[0].window, Window::Hour);
}

#[test]
fn every_window_and_scope_is_read() {
    let windows = [
        ("second", Window::Second),
        ("minute", Window::Minute),
        ("hour", Window::Hour),
        ("day", Window::Day),
    ];
    let scopes = [
        ("global", Scope::Global),
        ("grant", Scope::Grant),
        ("session", Scope::Session),
        ("source", Scope::Source),
    ];
    for (wname, window) in windows {
        for (sname, scope) in scopes {
            let p = loaded(&one_limit(&format!(
                r#"{{"counter":"c","window":"{wname}","max":1000000000,"scope":"{sname}"}}"#
            )));
            assert_eq!(
                p.counters[0],
                Counter {
                    name: "c".into(),
                    window,
                    max: 1_000_000_000,
                    scope,
                    algorithm: Algorithm::Sliding,
                    increment_from: None,
                    default_increment_milli: None,
                    global: false,
                    reason: None,
                }
            );
        }
    }
}

#[test]
fn tool_names_are_stored_unescaped() {
    let p = loaded(&policy_with(r#""tools":{"\u0065cho":{},"a\/b":{}}"#));
    assert!(p.tools.contains_key("echo"));
    assert!(p.tools.contains_key("a/b"));
}

#[test]
fn wildcard_entry_becomes_the_wildcard_rule() {
    let p = loaded(&policy_with(
        r#""tools":{"*":{"action":"deny","reason":"maintenance"}}"#,
    ));
    assert!(p.tools.is_empty());
    assert_eq!(p.wildcard.action, Action::Deny);
    assert_eq!(p.wildcard.reason.as_deref(), Some("maintenance"));
}

#[test]
fn hide_lists_names_and_star_hides_all() {
    let p = loaded(&policy_with(r#""hide":["a","b"]"#));
    assert_eq!(p.hide.len(), 2);
    assert!(!p.hide_all);
    let p = loaded(&policy_with(r#""hide":["*"]"#));
    assert!(p.hide_all);
    assert!(p.hide.is_empty());
}

// ---------------------------------------------------------------- counters shared by tools

#[test]
fn tools_naming_the_same_counter_share_one_definition() {
    let p = loaded(&policy_with(
        r#""tools":{
            "a":{"limits":[{"counter":"shared","window":"minute","max":5,"scope":"grant"}]},
            "b":{"limits":[{"counter":"shared","window":"minute","max":5,"scope":"grant"}]}}"#,
    ));
    assert_eq!(p.counters.len(), 1);
    assert_eq!(p.tools["a"].limits, [0]);
    assert_eq!(p.tools["b"].limits, [0]);
}

#[test]
fn default_scope_and_explicit_global_are_the_same_definition() {
    let p = loaded(&policy_with(
        r#""tools":{
            "a":{"limits":[{"counter":"c","window":"day","max":5}]},
            "b":{"limits":[{"counter":"c","window":"day","max":5,"scope":"global"}]}}"#,
    ));
    assert_eq!(p.counters.len(), 1);
}

#[test]
fn counter_listed_twice_in_one_rule_is_counted_once() {
    let p = loaded(&one_limit(
        r#"{"counter":"c","window":"day","max":5},{"counter":"c","window":"day","max":5}"#,
    ));
    assert_eq!(p.tools["t"].limits, [0]);
}

#[test]
fn several_counters_on_one_tool_keep_their_order() {
    let p = loaded(&one_limit(
        r#"{"counter":"burst","window":"second","max":2},{"counter":"daily","window":"day","max":100}"#,
    ));
    assert_eq!(p.tools["t"].limits, [0, 1]);
    assert_eq!(p.counters[0].name, "burst");
    assert_eq!(p.counters[1].name, "daily");
}

#[test]
fn same_counter_with_a_different_definition_is_an_error() {
    for other in [
        r#"{"counter":"c","window":"hour","max":5,"scope":"grant"}"#,
        r#"{"counter":"c","window":"minute","max":6,"scope":"grant"}"#,
        r#"{"counter":"c","window":"minute","max":5,"scope":"session"}"#,
    ] {
        let text = policy_with(&format!(
            r#""tools":{{
                "a":{{"limits":[{{"counter":"c","window":"minute","max":5,"scope":"grant"}}]}},
                "b":{{"limits":[{other}]}}}}"#
        ));
        let e = only_error(&text);
        assert_eq!(e.path, "policy.tools.b.limits[0]");
        assert!(e.message.contains("\"c\""), "{e}");
        assert!(e.message.contains("policy.tools.a.limits[0]"), "{e}");
    }
}

#[test]

fn counter_conflict_message_shows_found_and_expected_values() {
    let text = policy_with(
        r#""tools":{
            "a":{"limits":[{"counter":"c","window":"minute","max":5}]},
            "b":{"limits":[{"counter":"c","window":"minute","max":6}]}}"#,
    );
    let e = only_error(&text);
    assert!(e.message.contains('6') && e.message.contains('5'), "{e}");
}

// ---------------------------------------------------------------- invalid values: path, value, expected

#[test]
fn not_json_is_reported_at_the_root() {
    let e = only_error(r#"{"version":"1","#);
    assert_eq!(e.path, "policy");
    assert!(e.message.contains("not valid JSON"), "{e}");
    // Where, as an editor shows it.
    let e = only_error("{\n  \"version\": \"1\",\n  \"default\": deny\n}");
    assert!(e.message.contains("at line 3, column 14"), "{e}");
}

#[test]
fn duplicate_keys_in_the_policy_are_refused() {
    let e = only_error(r#"{"version":"1","default":"allow","default":"deny"}"#);
    assert_eq!(e.path, "policy");
    assert!(e.message.contains("duplicate key \"default\""), "{e}");
}

#[test]
fn root_must_be_an_object() {
    assert_error("[]", "policy", "got []", "expected an object");
    assert_error("\"deny\"", "policy", "got \"deny\"", "expected an object");
}

#[test]
fn version_must_be_the_string_one() {
    assert_error(
        r#"{"version":"2"}"#,
        "policy.version",
        r#"got "2""#,
        r#""1""#,
    );
    assert_error(r#"{"version":1}"#, "policy.version", "got 1", r#""1""#);
    assert_error(
        r#"{"version":"1.0"}"#,
        "policy.version",
        r#"got "1.0""#,
        r#""1""#,
    );
}

#[test]
fn missing_version_is_an_error() {
    let e = only_error(r#"{"default":"deny"}"#);
    assert_eq!(e.path, "policy.version");
    assert!(e.message.contains("missing"), "{e}");
    assert!(e.message.contains(r#""1""#), "{e}");
}

#[test]
fn default_must_be_allow_or_deny() {
    for bad in [r#""Deny""#, r#""block""#, "true", "null"] {
        assert_error(
            &policy_with(&format!(r#""default":{bad}"#)),
            "policy.default",
            &format!("got {bad}"),
            r#"one of "allow", "deny""#,
        );
    }
}

#[test]
fn description_must_be_a_string() {
    assert_error(
        &policy_with(r#""description":5"#),
        "policy.description",
        "got 5",
        "a string",
    );
    assert_error(
        &tool_rule(r#"{"description":["x"]}"#),
        "policy.tools.t.description",
        r#"got ["x"]"#,
        "a string",
    );
}

#[test]
fn tools_must_be_an_object() {
    assert_error(
        &policy_with(r#""tools":["echo"]"#),
        "policy.tools",
        r#"got ["echo"]"#,
        "an object mapping tool names to rules",
    );
}

#[test]
fn tool_rule_must_be_an_object() {
    assert_error(
        &tool_rule(r#""allow""#),
        "policy.tools.t",
        r#"got "allow""#,
        "an object",
    );
}

#[test]
fn empty_tool_name_is_an_error() {
    let e = only_error(&policy_with(r#""tools":{"":{}}"#));
    assert_eq!(e.path, r#"policy.tools[""]"#);
    assert!(e.message.contains("must not be empty"), "{e}");
}

#[test]
fn tool_names_that_are_not_identifiers_are_bracketed_in_paths() {
    assert_error(
        &policy_with(r#""tools":{"a.b c":{"action":"nope"}}"#),
        r#"policy.tools["a.b c"].action"#,
        r#"got "nope""#,
        r#"one of "allow", "deny""#,
    );
    assert_error(
        &policy_with(r#""tools":{"q\"\n":{"action":"nope"}}"#),
        r#"policy.tools["q\"\n"].action"#,
        r#"got "nope""#,
        "one of",
    );
}

#[test]
fn action_must_be_allow_or_deny() {
    assert_error(
        &tool_rule(r#"{"action":"block"}"#),
        "policy.tools.t.action",
        r#"got "block""#,
        r#"one of "allow", "deny""#,
    );
}

#[test]
fn reason_must_be_a_non_empty_string() {
    assert_error(
        &tool_rule(r#"{"action":"deny","reason":""}"#),
        "policy.tools.t.reason",
        r#"got """#,
        "a non-empty string",
    );
    assert_error(
        &tool_rule(r#"{"action":"deny","reason":42}"#),
        "policy.tools.t.reason",
        "got 42",
        "a string",
    );
}

#[test]
fn limits_must_be_an_array() {
    assert_error(
        &tool_rule(r#"{"limits":{"counter":"c"}}"#),
        "policy.tools.t.limits",
        r#"got {"counter":"c"}"#,
        "an array of limits",
    );
}

#[test]
fn limit_must_be_an_object() {
    assert_error(
        &one_limit(r#""c""#),
        "policy.tools.t.limits[0]",
        r#"got "c""#,
        "an object",
    );
}

#[test]
fn counter_name_must_be_a_non_empty_string() {
    assert_error(
        &one_limit(r#"{"counter":"","window":"minute","max":1}"#),
        "policy.tools.t.limits[0].counter",
        r#"got """#,
        "a non-empty string",
    );
    assert_error(
        &one_limit(r#"{"counter":7,"window":"minute","max":1}"#),
        "policy.tools.t.limits[0].counter",
        "got 7",
        "a string",
    );
}

#[test]
fn missing_limit_fields_are_each_reported() {
    let errors = errors_of(&one_limit("{}"));
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "policy.tools.t.limits[0].counter",
            "policy.tools.t.limits[0].window",
            "policy.tools.t.limits[0].max",
        ]
    );
    for e in &errors {
        assert!(e.message.starts_with("missing, expected"), "{e}");
    }
    assert!(errors[1]
        .message
        .contains(r#""second", "minute", "hour", "day""#));
}

#[test]
fn window_must_be_a_known_window() {
    assert_error(
        &one_limit(r#"{"counter":"c","window":"fortnight","max":1}"#),
        "policy.tools.t.limits[0].window",
        r#"got "fortnight""#,
        r#"one of "second", "minute", "hour", "day", "week", "month""#,
    );
}

#[test]
fn max_must_be_an_integer_in_range() {
    for bad in [
        "0",
        "-1",
        "1.5",
        "1e3",
        "10.0",
        r#""10""#,
        "1000000001",
        "true",
        "18446744073709551616",
    ] {
        assert_error(
            &one_limit(&format!(
                r#"{{"counter":"c","window":"minute","max":{bad}}}"#
            )),
            "policy.tools.t.limits[0].max",
            &format!("got {bad}"),
            "an integer from 1 to 1000000000",
        );
    }
}

#[test]
fn scope_must_be_a_known_scope() {
    assert_error(
        &one_limit(r#"{"counter":"c","window":"minute","max":1,"scope":"user"}"#),
        "policy.tools.t.limits[0].scope",
        r#"got "user""#,
        r#"one of "global", "grant", "session", "source""#,
    );
}

#[test]
fn hide_must_be_an_array_of_non_empty_names() {
    assert_error(
        &policy_with(r#""hide":"echo""#),
        "policy.hide",
        r#"got "echo""#,
        "an array of tool names",
    );
    assert_error(
        &policy_with(r#""hide":["a",3]"#),
        "policy.hide[1]",
        "got 3",
        "a string",
    );
    assert_error(
        &policy_with(r#""hide":["a",""]"#),
        "policy.hide[1]",
        r#"got """#,
        "a non-empty string",
    );
}

#[test]
fn duplicate_hide_entries_are_an_error() {
    let e = only_error(&policy_with(r#""hide":["a","b","a"]"#));
    assert_eq!(e.path, "policy.hide[2]");
    assert!(e.message.contains(r#"duplicate entry "a""#), "{e}");
}

#[test]
fn settings_must_be_an_object() {
    assert_error(
        &with_settings("[]"),
        "policy.settings",
        "got []",
        "an object",
    );
}

#[test]
fn max_body_bytes_is_bounded() {
    for bad in ["0", "67108865", "-5", "\"1MiB\""] {
        assert_error(
            &with_settings(&format!(r#"{{"max_body_bytes":{bad}}}"#)),
            "policy.settings.max_body_bytes",
            &format!("got {bad}"),
            "an integer from 1 to 67108864",
        );
    }
}

#[test]
fn max_depth_is_bounded() {
    for bad in ["0", "129", "64.5"] {
        assert_error(
            &with_settings(&format!(r#"{{"max_depth":{bad}}}"#)),
            "policy.settings.max_depth",
            &format!("got {bad}"),
            "an integer from 1 to 128",
        );
    }
}

#[test]
fn max_batch_is_read_and_bounded() {
    let p = loaded(&with_settings(r#"{"max_batch":1000}"#));
    assert_eq!(p.settings.max_batch, 1000);
    for bad in ["0", "1001", "\"64\"", "2.5"] {
        assert_error(
            &with_settings(&format!(r#"{{"max_batch":{bad}}}"#)),
            "policy.settings.max_batch",
            &format!("got {bad}"),
            "an integer from 1 to 1000",
        );
    }
}

#[test]
fn counter_slots_is_bounded() {
    for bad in ["0", "65537", "4294967296"] {
        assert_error(
            &with_settings(&format!(r#"{{"counter_slots":{bad}}}"#)),
            "policy.settings.counter_slots",
            &format!("got {bad}"),
            "an integer from 1 to 65536",
        );
    }
}

#[test]
fn error_style_must_be_known() {
    assert_error(
        &with_settings(r#"{"error_style":"html"}"#),
        "policy.settings.error_style",
        r#"got "html""#,
        r#"one of "jsonrpc", "tool_result""#,
    );
}

#[test]
fn header_mode_must_be_known() {
    assert_error(
        &with_settings(r#"{"header_mode":"block"}"#),
        "policy.settings.header_mode",
        r#"got "block""#,
        r#"one of "stream", "hold""#,
    );
}

#[test]
fn grant_header_must_be_a_non_empty_string() {
    assert_error(
        &with_settings(r#"{"grant_header":""}"#),
        "policy.settings.grant_header",
        r#"got """#,
        "a non-empty string",
    );
    assert_error(
        &with_settings(r#"{"grant_header":5}"#),
        "policy.settings.grant_header",
        "got 5",
        "a string",
    );
}

#[test]
fn grant_property_must_be_a_non_empty_path() {
    for bad in ["[]", r#"[""]"#, r#""metadata""#, "[1]", r#"["a",""]"#] {
        assert_error(
            &with_settings(&format!(r#"{{"grant_property":{bad}}}"#)),
            "policy.settings.grant_property",
            &format!("got {bad}"),
            "a non-empty array of non-empty strings",
        );
    }
}

#[test]
fn grant_header_and_grant_property_together_are_an_error() {
    let e = only_error(&with_settings(
        r#"{"grant_header":"x","grant_property":["a"]}"#,
    ));
    assert_eq!(e.path, "policy.settings.grant_property");
    assert!(e.message.contains("not both"), "{e}");
}

#[test]
fn refund_on_error_must_be_a_boolean() {
    assert_error(
        &with_settings(r#"{"refund_on_error":"yes"}"#),
        "policy.settings.refund_on_error",
        r#"got "yes""#,
        "true or false",
    );
}

#[test]
fn grant_hash_key_must_be_a_non_empty_string() {
    assert_error(
        &with_settings(r#"{"grant_hash_key":""}"#),
        "policy.settings.grant_hash_key",
        r#"got """#,
        "a non-empty string",
    );
}

#[test]
fn long_values_are_shortened_in_messages() {
    let long = "x".repeat(200);
    let e = only_error(&format!(r#"{{"version":"{long}"}}"#));
    assert!(
        e.message.contains(&format!("got \"{}...", "x".repeat(56))),
        "{e}"
    );
    assert!(e.message.len() < 120, "{e}");
}

#[test]
fn long_multibyte_values_are_shortened_on_character_boundaries() {
    let long = "é".repeat(100);
    let e = only_error(&format!(r#"{{"version":"{long}"}}"#));
    assert!(e.message.contains("éé..."), "{e}");
}

// ---------------------------------------------------------------- unknown keys

fn assert_unknown_key(text: &str, path: &str, allowed: &str) {
    let e = only_error(text);
    assert_eq!(e.path, path, "{text}");
    assert!(e.message.contains("unknown key"), "{e}");
    assert!(e.message.contains(allowed), "{e}");
}

#[test]
fn unknown_top_level_key_is_an_error() {
    assert_unknown_key(
        &policy_with(r#""defaults":"deny""#),
        "policy.defaults",
        r#""version", "description", "default", "tools", "hide", "settings""#,
    );
}

#[test]
fn unknown_key_in_a_tool_rule_is_an_error() {
    assert_unknown_key(
        &tool_rule(r#"{"action":"allow","approve":true}"#),
        "policy.tools.t.approve",
        r#""action", "reason", "limits", "description""#,
    );
}

#[test]
fn unknown_key_in_a_limit_is_an_error() {
    assert_unknown_key(
        &one_limit(r#"{"counter":"c","window":"minute","max":1,"per":"grant"}"#),
        "policy.tools.t.limits[0].per",
        r#""counter", "window", "max", "scope""#,
    );
}

#[test]
fn unknown_key_in_settings_is_an_error() {
    assert_unknown_key(
        &with_settings(r#"{"max_body":5}"#),
        "policy.settings.max_body",
        r#""max_body_bytes""#,
    );
}

#[test]
fn unknown_key_with_odd_characters_is_bracketed() {
    assert_unknown_key(
        &policy_with(r#""a b":1"#),
        r#"policy["a b"]"#,
        "\"version\"",
    );
}

#[test]
fn key_case_variants_are_unknown_keys() {
    let errors = errors_of(r#"{"Version":"1"}"#);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["policy.Version", "policy.version"]);
}

// ---------------------------------------------------------------- several errors at once

#[test]
fn every_problem_is_reported_together() {
    let text = r#"{
        "version": "2",
        "default": "maybe",
        "colour": "blue",
        "hide": ["x", 1],
        "tools": {
            "a": {"action": "block", "reason": ""},
            "b": {"limits": [{"counter": "c", "window": "fortnight", "max": 0}]}
        },
        "settings": {"max_depth": 500, "error_style": "xml"}
    }"#;
    let errors = errors_of(text);
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    for expected in [
        "policy.version",
        "policy.default",
        "policy.colour",
        "policy.hide[1]",
        "policy.tools.a.action",
        "policy.tools.a.reason",
        "policy.tools.b.limits[0].window",
        "policy.tools.b.limits[0].max",
        "policy.settings.max_depth",
        "policy.settings.error_style",
    ] {
        assert!(
            paths.contains(&expected),
            "{expected} missing from {paths:?}"
        );
    }
    assert_eq!(errors.len(), 10, "{paths:?}");
}

#[test]
fn errors_in_several_tools_are_all_reported() {
    let errors = errors_of(&policy_with(
        r#""tools":{"a":{"action":"x"},"b":{"action":"y"},"c":{"action":"z"}}"#,
    ));
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "policy.tools.a.action",
            "policy.tools.b.action",
            "policy.tools.c.action"
        ]
    );
}

// ---------------------------------------------------------------- example policies, base settings

#[test]

fn approval_example_policy_loads() {
    let p = loaded(include_str!("../../../envoy/examples/approval.json"));
    let approval = p.approval.expect("approval service");
    assert_eq!(approval.cluster, "approval_service");
    assert_eq!(approval.path, "/approve");
    assert_eq!(approval.timeout_ms, 30_000);
}

#[test]

fn guarded_example_policy_loads() {
    let p = loaded(include_str!(
        "../../../envoy/examples/claude-code-guarded.json"
    ));
    assert_eq!(p.risk_actions.get(&Risk::Destructive), Some(&Action::Deny));
    assert_eq!(p.counters.len(), 2);
}

#[test]

fn risk_actions_are_accepted_at_top_level() {
    let p = loaded(&policy_with(
        r#""risk_actions":{"destructive":"deny","write":"approve"},"approval":{"cluster":"a"}"#,
    ));
    assert_eq!(p.risk_actions.get(&Risk::Destructive), Some(&Action::Deny));
    assert_eq!(p.risk_actions.get(&Risk::Write), Some(&Action::Approve));
}

#[test]

fn approval_service_defaults_are_filled_in() {
    let p = loaded(&policy_with(r#""approval":{"cluster":"approver"}"#));
    let a = p.approval.unwrap();
    assert_eq!(a.authority, "approver");
    assert_eq!(a.path, "/approve");
    assert_eq!(a.timeout_ms, 30_000);
}

#[test]
fn approve_action_without_an_approval_service_is_an_error() {
    let errors = errors_of(&tool_rule(r#"{"action":"approve"}"#));
    assert!(
        errors
            .iter()
            .any(|e| e.path == "policy.approval" && e.message.contains("missing")),
        "{errors:#?}"
    );
}

#[test]
fn audit_setting_is_read() {
    for (name, level) in [
        ("off", AuditLevel::Off),
        ("refused", AuditLevel::Refused),
        ("all", AuditLevel::All),
    ] {
        let p = loaded(&with_settings(&format!(r#"{{"audit":"{name}"}}"#)));
        assert_eq!(p.settings.audit, level);
    }
    assert_error(
        &with_settings(r#"{"audit":"some"}"#),
        "policy.settings.audit",
        r#"got "some""#,
        r#"one of "off", "refused", "all""#,
    );
}

#[test]
fn base_settings_apply_when_the_policy_has_none() {
    let base = Settings {
        max_body_bytes: 4096,
        refund_on_error: true,
        ..Settings::default()
    };
    let p = load_with_base(br#"{"version":"1"}"#, &base).unwrap();
    assert_eq!(p.settings, base);
}

#[test]
fn policy_settings_override_base_settings_key_by_key() {
    let base = Settings {
        max_body_bytes: 4096,
        refund_on_error: true,
        ..Settings::default()
    };
    let p = load_with_base(with_settings(r#"{"max_body_bytes":100}"#).as_bytes(), &base).unwrap();
    assert_eq!(p.settings.max_body_bytes, 100);
    assert!(p.settings.refund_on_error);
}

#[test]
fn vm_config_settings_are_validated_with_their_own_root() {
    let s = load_settings(br#"{"header_mode":"hold"}"#).unwrap();
    assert_eq!(s.header_mode, HeaderMode::Hold);
    let errors = load_settings(br#"{"header_mode":"x","colour":1}"#).unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["vm_config.colour", "vm_config.header_mode"]);
    let errors = load_settings(b"{").unwrap_err();
    assert_eq!(errors[0].path, "vm_config");
}

// ---------------------------------------------------------------- argument rules

/// A policy whose tool `t` has the given `rules` array.
fn rules(rules: &str) -> String {
    tool_rule(&format!(r#"{{"rules":{rules}}}"#))
}

#[test]
fn argument_rules_are_read() {
    let p = loaded(&rules(
        r#"[{"name":"no-cancel","deny_if":[{"path":"args.action","op":"eq","value":"cancel"}],"reason":"r"},
            {"name":"small","require":[{"path":"args.n","op":"lte","value":20}],"action":"deny"},
            {"name":"cls","when":[{"path":"args[\"odd key\"][0]","op":"exists","value":true}],"risk":"write"}]"#,
    ));
    let names: Vec<&str> = p.tools["t"].rules.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["no-cancel", "small", "cls"]);
}

#[test]
fn every_condition_operator_is_accepted() {
    for (op, value) in [
        ("eq", "1"),
        ("neq", r#""x""#),
        ("in", r#"["a","b"]"#),
        ("not_in", "[1,2]"),
        ("lt", "1"),
        ("lte", "1.5"),
        ("gt", "-1"),
        ("gte", "0"),
        ("regex", r#""^a+$""#),
        ("contains", r#""x""#),
        ("exists", "false"),
    ] {
        loaded(&rules(&format!(
            r#"[{{"name":"r","deny_if":[{{"path":"args.a","op":"{op}","value":{value}}}]}}]"#
        )));
    }
}

#[test]
fn rules_must_be_an_array() {
    assert_error(
        &rules(r#"{"name":"r"}"#),
        "policy.tools.t.rules",
        r#"got {"name":"r"}"#,
        "an array of rules",
    );
}

#[test]
fn rule_needs_exactly_one_kind() {
    let e = only_error(&rules(r#"[{"name":"r"}]"#));
    assert_eq!(e.path, "policy.tools.t.rules[0]");
    assert!(e.message.contains("got none"), "{e}");
    let cond = r#"[{"path":"args.a","op":"exists","value":true}]"#;
    let e = only_error(&rules(&format!(
        r#"[{{"name":"r","deny_if":{cond},"require":{cond}}}]"#
    )));
    assert!(e.message.contains("got deny_if, require"), "{e}");
}

#[test]
fn duplicate_rule_names_are_an_error() {
    let cond = r#"[{"path":"args.a","op":"exists","value":true}]"#;
    let e = only_error(&rules(&format!(
        r#"[{{"name":"r","deny_if":{cond}}},{{"name":"r","require":{cond}}}]"#
    )));
    assert_eq!(e.path, "policy.tools.t.rules[1].name");
    assert!(e.message.contains(r#"duplicate rule name "r""#), "{e}");
}

#[test]
fn conditions_must_be_a_non_empty_array() {
    for bad in ["[]", "{}", r#""args.a""#] {
        assert_error(
            &rules(&format!(r#"[{{"name":"r","deny_if":{bad}}}]"#)),
            "policy.tools.t.rules[0].deny_if",
            &format!("got {bad}"),
            "a non-empty array of conditions",
        );
    }
}

#[test]
fn condition_path_must_start_with_args() {
    for bad in [
        r#""action""#,
        r#""args.""#,
        r#""args[x]""#,
        r#""args[\"a""#,
        r#""argsx""#,
        r#""args..a""#,
    ] {
        let e = only_error(&rules(&format!(
            r#"[{{"name":"r","deny_if":[{{"path":{bad},"op":"exists","value":true}}]}}]"#
        )));
        assert_eq!(e.path, "policy.tools.t.rules[0].deny_if[0].path", "{bad}");
        assert!(e.message.contains("a path like"), "{e}");
    }
}

#[test]
fn condition_operator_must_be_known() {
    let e = only_error(&rules(
        r#"[{"name":"r","deny_if":[{"path":"args.a","op":"matches","value":"x"}]}]"#,
    ));
    assert_eq!(e.path, "policy.tools.t.rules[0].deny_if[0].op");
    assert!(e.message.contains(r#"got "matches""#), "{e}");
    assert!(e.message.contains(r#""regex""#), "{e}");
}

#[test]
fn condition_values_must_suit_the_operator() {
    for (op, bad, expected) in [
        ("in", r#""a""#, "an array of values"),
        ("lt", r#""5""#, "a number"),
        ("gte", "null", "a number"),
        ("regex", "5", "a string"),
        ("regex", r#""(""#, "a valid regular expression"),
        ("exists", r#""yes""#, "true or false"),
    ] {
        assert_error(
            &rules(&format!(
                r#"[{{"name":"r","deny_if":[{{"path":"args.a","op":"{op}","value":{bad}}}]}}]"#
            )),
            "policy.tools.t.rules[0].deny_if[0].value",
            &format!("got {bad}"),
            expected,
        );
    }
}

#[test]
fn condition_value_is_required() {
    let e = only_error(&rules(
        r#"[{"name":"r","deny_if":[{"path":"args.a","op":"eq"}]}]"#,
    ));
    assert_eq!(e.path, "policy.tools.t.rules[0].deny_if[0].value");
    assert!(e.message.contains("missing"), "{e}");
}

#[test]
fn when_rule_needs_a_risk_and_no_action() {
    let cond = r#"[{"path":"args.a","op":"exists","value":true}]"#;
    let e = only_error(&rules(&format!(r#"[{{"name":"r","when":{cond}}}]"#)));
    assert_eq!(e.path, "policy.tools.t.rules[0].risk");
    let errors = errors_of(&rules(&format!(
        r#"[{{"name":"r","when":{cond},"risk":"read","action":"deny"}}]"#
    )));
    assert!(
        errors
            .iter()
            .any(|e| e.path == "policy.tools.t.rules[0].action"),
        "{errors:#?}"
    );
}

#[test]
fn only_when_rules_carry_a_risk() {
    let cond = r#"[{"path":"args.a","op":"exists","value":true}]"#;
    let e = only_error(&rules(&format!(
        r#"[{{"name":"r","deny_if":{cond},"risk":"read"}}]"#
    )));
    assert_eq!(e.path, "policy.tools.t.rules[0].risk");
}

#[test]
fn rule_action_is_deny_or_approve() {
    let cond = r#"[{"path":"args.a","op":"exists","value":true}]"#;
    assert_error(
        &rules(&format!(
            r#"[{{"name":"r","deny_if":{cond},"action":"allow"}}]"#
        )),
        "policy.tools.t.rules[0].action",
        r#"got "allow""#,
        r#"one of "deny", "approve""#,
    );
}

#[test]
fn tool_risk_must_be_a_known_category() {
    assert_error(
        &tool_rule(r#"{"risk":"dangerous"}"#),
        "policy.tools.t.risk",
        r#"got "dangerous""#,
        r#"one of "read", "write", "execute", "destructive""#,
    );
}

#[test]
fn risk_actions_must_name_known_categories_and_actions() {
    assert_unknown_key(
        &policy_with(r#""risk_actions":{"dangerous":"deny"}"#),
        "policy.risk_actions.dangerous",
        r#""destructive""#,
    );
    assert_error(
        &policy_with(r#""risk_actions":{"write":"block"}"#),
        "policy.risk_actions.write",
        r#"got "block""#,
        r#"one of "allow", "deny", "approve""#,
    );
}

#[test]
fn approval_path_must_start_with_a_slash() {
    assert_error(
        &policy_with(r#""approval":{"cluster":"a","path":"approve"}"#),
        "policy.approval.path",
        r#"got "approve""#,
        r#"a path starting with "/""#,
    );
}

#[test]
fn approval_needs_a_cluster() {
    let e = only_error(&policy_with(r#""approval":{"path":"/x"}"#));
    assert_eq!(e.path, "policy.approval.cluster");
    assert!(e.message.contains("missing"), "{e}");
}

#[test]
fn increment_from_is_an_argument_path() {
    let p = loaded(&one_limit(
        r#"{"counter":"usd","window":"day","max":50,"increment_from":"args.advanced.maxBudgetUsd","default_increment":5}"#,
    ));
    let c = &p.counters[0];
    assert_eq!(
        c.increment_from.as_ref().unwrap().text,
        "args.advanced.maxBudgetUsd"
    );
    assert_eq!(c.default_increment_milli, Some(5000));
    let e = only_error(&one_limit(
        r#"{"counter":"usd","window":"day","max":50,"increment_from":"budget"}"#,
    ));
    assert_eq!(e.path, "policy.tools.t.limits[0].increment_from");
    assert!(e.message.contains(r#"got "budget""#), "{e}");
}

#[test]
fn default_increment_needs_increment_from_and_a_non_negative_number() {
    let e = only_error(&one_limit(
        r#"{"counter":"c","window":"day","max":5,"default_increment":1}"#,
    ));
    assert_eq!(e.path, "policy.tools.t.limits[0].default_increment");
    assert!(
        e.message.contains("only meaningful with increment_from"),
        "{e}"
    );
    assert_error(
        &one_limit(
            r#"{"counter":"c","window":"day","max":5,"increment_from":"args.a","default_increment":-1}"#,
        ),
        "policy.tools.t.limits[0].default_increment",
        "got -1",
        "a number >= 0",
    );
}

#[test]
fn global_limit_needs_a_rate_limit_service() {
    let e = only_error(&one_limit(
        r#"{"counter":"c","window":"day","max":5,"global":true}"#,
    ));
    assert_eq!(e.path, "policy.tools.t.limits[0].global");
    assert!(e.message.contains("rate_limit_service"), "{e}");
    loaded(&policy_with(
        r#""rate_limit_service":{"cluster":"rls"},"tools":{"t":{"limits":[{"counter":"c","window":"day","max":5,"global":true}]}}"#,
    ));
}

#[test]
fn rate_limit_service_include_tool_is_accepted() {
    let service = |body: &str| {
        loaded(&policy_with(&format!(
            r#""rate_limit_service":{{"cluster":"rls"{body}}}"#
        )))
        .rate_limit_service
        .unwrap()
    };
    assert!(service("").include_tool);
    assert!(!service(r#","include_tool":false"#).include_tool);
    assert_error(
        &policy_with(r#""rate_limit_service":{"cluster":"rls","include_tool":"no"}"#),
        "policy.rate_limit_service.include_tool",
        r#"got "no""#,
        "true or false",
    );
}

#[test]
fn rate_limit_service_values_are_checked() {
    assert_error(
        &policy_with(r#""rate_limit_service":{"cluster":"rls","failure_mode":"open"}"#),
        "policy.rate_limit_service.failure_mode",
        r#"got "open""#,
        r#"one of "deny", "local""#,
    );
    assert_error(
        &policy_with(r#""rate_limit_service":{"cluster":"rls","timeout_ms":0}"#),
        "policy.rate_limit_service.timeout_ms",
        "got 0",
        "an integer from 1 to 60000",
    );
}

// ---------------------------------------------------------------- limit algorithm

#[test]
fn limits_slide_unless_they_ask_for_fixed_windows() {
    let p = loaded(&one_limit(r#"{"counter":"c","window":"minute","max":1}"#));
    assert_eq!(p.counters[0].algorithm, Algorithm::Sliding);
    assert_eq!(Settings::default().limit_algorithm, Algorithm::Sliding);
    for (name, algorithm) in [("sliding", Algorithm::Sliding), ("fixed", Algorithm::Fixed)] {
        let p = loaded(&one_limit(&format!(
            r#"{{"counter":"c","window":"minute","max":1,"algorithm":"{name}"}}"#
        )));
        assert_eq!(p.counters[0].algorithm, algorithm);
    }
}

#[test]
fn unknown_algorithm_is_refused_with_its_path() {
    assert_error(
        &one_limit(r#"{"counter":"c","window":"minute","max":1,"algorithm":"rolling"}"#),
        "policy.tools.t.limits[0].algorithm",
        r#"got "rolling""#,
        r#"one of "sliding", "fixed""#,
    );
    assert_error(
        &with_settings(r#"{"limit_algorithm":1}"#),
        "policy.settings.limit_algorithm",
        "got 1",
        r#"one of "sliding", "fixed""#,
    );
    let errors = load_settings(br#"{"limit_algorithm":"calendar"}"#).unwrap_err();
    assert_eq!(errors[0].path, "vm_config.limit_algorithm");
}

#[test]
fn limit_algorithm_setting_is_the_default_of_every_limit() {
    let text = with_settings(r#"{"limit_algorithm":"fixed"}"#).replacen(
        r#""version":"1""#,
        r#""version":"1","tools":{"a":{"limits":[{"counter":"a","window":"minute","max":1}]},"b":{"limits":[{"counter":"b","window":"minute","max":1,"algorithm":"sliding"}]}}"#,
        1,
    );
    let p = loaded(&text);
    let by_name = |n: &str| p.counters.iter().find(|c| c.name == n).unwrap().algorithm;
    assert_eq!(by_name("a"), Algorithm::Fixed);
    assert_eq!(by_name("b"), Algorithm::Sliding);
    // From the Envoy VM configuration, so the policy file stays verbatim.
    let base = load_settings(br#"{"limit_algorithm":"fixed"}"#).unwrap();
    let p = load_with_base(
        one_limit(r#"{"counter":"c","window":"minute","max":1}"#).as_bytes(),
        &base,
    )
    .unwrap();
    assert_eq!(p.counters[0].algorithm, Algorithm::Fixed);
}

#[test]
fn a_shared_counter_must_agree_on_its_algorithm() {
    let text = policy_with(
        r#""tools":{"a":{"limits":[{"counter":"c","window":"minute","max":1}]},"b":{"limits":[{"counter":"c","window":"minute","max":1,"algorithm":"fixed"}]}}"#,
    );
    let e = only_error(&text);
    assert!(e.message.contains("algorithm fixed"), "{e}");
    assert!(e.message.contains("algorithm sliding"), "{e}");
}
