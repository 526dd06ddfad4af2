#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::json;

fn found(text: &str) -> Option<FoldedKeys> {
    let doc = json::parse(text.as_bytes()).unwrap();
    find(&doc.root)
}

#[test]
fn folds_what_go_folds() {
    assert!(fold_eq("action", "Action"));
    assert!(fold_eq("action", "ACTION"));
    // Go's special folds onto ASCII: long s and the Kelvin sign.
    assert!(fold_eq("\u{17F}ession", "session"));
    assert!(fold_eq("\u{212A}ind", "kind"));
    // Dotless and dotted capital i fold onto i under upper(lower(c)).
    assert!(fold_eq("\u{131}d", "id"));
    assert!(fold_eq("\u{130}d", "id"));
    // Greek final sigma, small sigma and capital sigma.
    assert!(fold_eq("\u{3C2}", "\u{3C3}"));
    assert!(fold_eq("\u{3A3}", "\u{3C2}"));
    assert!(fold_eq("stra\u{DF}e", "STRA\u{1E9E}E"));
}

#[test]
fn over_approximates_with_full_case_mapping() {
    // Not equal for Go, equal for full case folding: refused all the same.
    assert!(fold_eq("stra\u{DF}e", "strasse"));
    assert!(fold_eq("\u{FB01}le", "file"));
}

#[test]
fn distinct_names_stay_distinct() {
    assert!(!fold_eq("action", "actions"));
    assert!(!fold_eq("a", "b"));
    assert!(!fold_eq("session_id", "sessionid"));
    assert!(!fold_eq("", "x"));
    assert!(!fold_eq("\u{E9}", "e"));
}

#[test]
fn finds_folded_keys_at_any_depth() {
    let top = found(r#"{"action":"list","Action":"cancel"}"#).unwrap();
    assert_eq!(
        (top.path.as_str(), top.first.as_str(), top.second.as_str()),
        ("", "action", "Action")
    );
    let nested = found(r#"{"params":{"arguments":{"opts":{"mode":1,"MODE":2}}}}"#).unwrap();
    assert_eq!(nested.path, "params.arguments.opts");
    let in_array = found(r#"{"a":[1,{"x":{}},[{"k":1,"\u212a":2}]]}"#).unwrap();
    assert_eq!(in_array.path, "a[2][0]");
    assert_eq!(in_array.second, "\u{212A}");
    let escaped = found(r#"{"args":{"action":"list","\u0041ction":"cancel"}}"#).unwrap();
    assert_eq!(escaped.second, "Action");
    assert!(
        escaped
            .reason()
            .contains("args: keys \"action\" and \"Action\""),
        "{}",
        escaped.reason()
    );
}

#[test]
fn distinct_keys_pass() {
    assert_eq!(found(r#"{"a":{"b":[{"c":1,"d":2}],"B2":3},"A1":{}}"#), None);
    assert_eq!(found(r#"[]"#), None);
    assert_eq!(found(r#""text""#), None);
}

#[test]
fn large_objects_are_checked_without_quadratic_work() {
    let mut text = String::from("{");
    for i in 0..10_000 {
        text.push_str(&format!("\"key{i}\":{i},"));
    }
    text.push_str("\"k\u{17F}y\":0,\"KEY9999x\":1,\"KsY\":2}");
    let hit = found(&text).unwrap();
    assert_eq!(
        (hit.first.as_str(), hit.second.as_str()),
        ("k\u{17F}y", "KsY")
    );
    let clean = text.replace("\"KsY\":2", "\"other\":2");
    assert_eq!(found(&clean), None);
}

#[test]
fn reasons_are_bounded() {
    let long = "x".repeat(100_000);
    let text = format!(r#"{{"{long}":1,"{}":2}}"#, long.to_uppercase());
    let reason = found(&text).unwrap().reason();
    assert!(reason.len() < 400, "{}", reason.len());
}
