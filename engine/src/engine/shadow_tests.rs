//! Shadow mode: refusals are recorded as `would_*` outcomes, never applied,
//! and shadow budgets never take from enforced ones.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;
use crate::testing::{FixedClock, MemoryStore};

const NOW: u64 = 1_795_478_430;

struct Harness {
    engine: Engine,
    store: MemoryStore,
    clock: FixedClock,
}

fn harness(text: &str) -> Harness {
    let policy = crate::config::load(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e:#?}"));
    Harness {
        engine: Engine::new(policy),
        store: MemoryStore::new(),
        clock: FixedClock::at_secs(NOW),
    }
}

impl Harness {
    fn decide(&self, tool: &str) -> Verdict {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{tool}","arguments":{{}}}}}}"#
        );
        let scopes = Scopes {
            grant: Some(b"Bearer a"),
            ..Scopes::default()
        };
        self.engine
            .decide(body.as_bytes(), &scopes, &self.store, &self.clock)
    }

    /// The single call record of a forwarded call.
    fn forwarded(&self, tool: &str) -> CallRecord {
        match self.decide(tool) {
            Verdict::Forward(f) => f.calls.into_iter().next().expect("a call record"),
            other => panic!("{tool} not forwarded: {other:?}"),
        }
    }

    fn refused(&self, tool: &str) -> CallRecord {
        match self.decide(tool) {
            Verdict::Reply { calls, .. } => calls.into_iter().next().expect("a call record"),
            other => panic!("{tool} not refused: {other:?}"),
        }
    }
}

#[test]
fn shadow_policy_forwards_what_it_would_deny() {
    let h = harness(
        r#"{"version":"1","default":"deny","settings":{"mode":"shadow"},
            "tools":{"ok":{},"bad":{"action":"deny","reason":"too risky"}}}"#,
    );
    assert_eq!(h.forwarded("ok").outcome, Outcome::Allowed);
    let bad = h.forwarded("bad");
    assert_eq!(bad.outcome, Outcome::WouldDeny);
    assert_eq!(bad.rule.as_deref(), Some("tools.bad"));
    assert_eq!(bad.reason.as_deref(), Some("too risky"));
    let other = h.forwarded("unlisted");
    assert_eq!(other.outcome, Outcome::WouldDeny);
    assert_eq!(other.rule.as_deref(), Some("default"));
    assert!(h.engine.lists("bad"), "shadow mode changes no list");
}

#[test]
fn shadow_on_one_tool_leaves_the_others_enforced() {
    let h = harness(
        r#"{"version":"1","tools":{
            "new":{"action":"deny","mode":"shadow"},
            "old":{"action":"deny"}}}"#,
    );
    assert_eq!(h.forwarded("new").outcome, Outcome::WouldDeny);
    assert_eq!(h.refused("old").outcome, Outcome::Denied);
    assert!(h.engine.lists("new"));
    assert!(!h.engine.lists("old"));
}

#[test]
fn shadow_limits_count_in_their_own_budget() {
    let h = harness(
        r#"{"version":"1","tools":{
            "trial":{"mode":"shadow","limits":[{"counter":"c","window":"minute","max":2,"scope":"grant"}]},
            "live":{"limits":[{"counter":"c","window":"minute","max":2,"scope":"grant"}]}}}"#,
    );
    assert_eq!(h.forwarded("trial").outcome, Outcome::Allowed);
    assert_eq!(h.forwarded("trial").outcome, Outcome::Allowed);
    let third = h.forwarded("trial");
    assert_eq!(third.outcome, Outcome::WouldRateLimit);
    assert_eq!(third.rule.as_deref(), Some("limits.c"));
    assert!(third.reason.unwrap().contains("2 calls per minute"));
    // The enforced budget of the same counter is untouched.
    assert_eq!(h.forwarded("live").outcome, Outcome::Allowed);
    assert_eq!(h.forwarded("live").outcome, Outcome::Allowed);
    assert_eq!(h.refused("live").outcome, Outcome::RateLimited);
    // And enforced calls do not take from the shadow budget either way.
    assert_eq!(h.forwarded("trial").outcome, Outcome::WouldRateLimit);
}

#[test]
fn shadow_approval_never_asks_the_approver() {
    // No approval service configured: legal because only shadowed calls approve.
    let h = harness(r#"{"version":"1","tools":{"deploy":{"action":"approve","mode":"shadow"}}}"#);
    let call = h.forwarded("deploy");
    assert_eq!(call.outcome, Outcome::WouldNeedApproval);
    assert_eq!(call.rule.as_deref(), Some("tools.deploy"));
}

#[test]
fn shadow_wildcard_shadows_every_tool() {
    let h = harness(r#"{"version":"1","default":"deny","tools":{"*":{"mode":"shadow"}}}"#);
    assert_eq!(h.forwarded("anything").outcome, Outcome::WouldDeny);
}

#[test]
fn enforced_refusal_in_a_batch_still_refuses_shadowed_siblings() {
    let h = harness(
        r#"{"version":"1","tools":{"new":{"action":"deny","mode":"shadow"},"old":{"action":"deny"}}}"#,
    );
    let body = r#"[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"new"}},
                   {"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"old"}}]"#;
    let verdict = h
        .engine
        .decide(body.as_bytes(), &Scopes::default(), &h.store, &h.clock);
    assert!(matches!(verdict, Verdict::Reply { .. }), "{verdict:?}");
}

#[test]
fn approval_service_still_required_for_enforced_approvals() {
    let errors = crate::config::load(
        br#"{"version":"1","tools":{"a":{"action":"approve","mode":"shadow"},"b":{"action":"approve"}}}"#,
    )
    .unwrap_err();
    assert!(
        errors.iter().any(|e| e.path == "policy.approval"),
        "{errors:?}"
    );
}

#[test]
fn mode_and_reserved_counter_names_are_validated() {
    let errors = crate::config::load(
        br#"{"version":"1","settings":{"mode":"dry"},"tools":{"a":{"mode":1,
            "limits":[{"counter":"~x","window":"minute","max":1,"scope":"global"}]}}}"#,
    )
    .unwrap_err();
    let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert!(paths.contains(&"policy.settings.mode"), "{errors:?}");
    assert!(paths.contains(&"policy.tools.a.mode"), "{errors:?}");
    assert!(
        paths.contains(&"policy.tools.a.limits[0].counter"),
        "{errors:?}"
    );
}

#[test]
fn shadow_on_a_tool_pattern_shadows_the_tools_it_matches() {
    let h = harness(
        r#"{"version":"1","tools":{"delete_*":{"action":"deny","mode":"shadow"},"drop_*":{"action":"deny"}}}"#,
    );
    assert_eq!(h.forwarded("delete_user").outcome, Outcome::WouldDeny);
    assert_eq!(h.refused("drop_table").outcome, Outcome::Denied);
}
