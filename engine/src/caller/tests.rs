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
use crate::engine::{Engine, Scopes, Verdict};
use crate::metadata::encode;
use crate::policy::{CallVerdict, Policy};
use crate::testing::{FixedClock, MemoryStore};

fn policy(text: &str) -> Policy {
    load(text.as_bytes()).unwrap_or_else(|e| panic!("{text} refused: {e:#?}"))
}

fn with_claims(claims: &str) -> Caller {
    let mut c = Caller::default();
    let md = encode::metadata("envoy.filters.http.jwt_authn", "jwt_payload", claims);
    c.claims_from_metadata(&md, &CallerSettings::default().claims_path);
    assert_eq!(c.unreadable, None);
    c
}

fn with_principal(p: &str) -> Caller {
    let mut c = Caller::default();
    c.principal_from(Some(p.as_bytes().to_vec()));
    c
}

/// The rule that refused `tool` with `args` for `caller`, or None if allowed.
fn refused_by(p: &Policy, tool: &str, args: &str, caller: &Caller) -> Option<String> {
    let doc = crate::json::parse(args.as_bytes()).unwrap();
    match p.decide_call_for(tool, Some(&doc.root), &caller.view(), &|_| None) {
        CallVerdict::Deny { rule, .. } => Some(rule),
        _ => None,
    }
}

const ROLES: &str = r#"{"version":"1","default":"deny","tools":{
  "session":{"rules":[{"name":"admin-cancels","deny_if":[
     {"path":"args.action","op":"eq","value":"cancel"},
     {"path":"caller.claims.realm.roles","op":"not_contains","value":"admin"}]}]},
  "run":{"rules":[{"name":"admins","require":[{"path":"caller.claims.role","op":"eq","value":"admin"}]}]},
  "ops":{"rules":[{"name":"not-interns","deny_if":[{"path":"caller.claims.role","op":"neq","value":"admin"}]}]},
  "poll":{"rules":[{"name":"scope","require":[{"path":"caller.claims.scope","op":"contains_word","value":"s:poll"}]}]},
  "mesh":{"rules":[{"name":"ci","require":[{"path":"caller.principal","op":"regex","value":"^spiffe://cluster\\.local/ns/ci/"}]}]},
  "team":{"rules":[{"name":"hdr","require":[{"path":"caller.header.X-Team","op":"eq","value":"blue"}]}]},
  "open":{}
}}"#;

#[test]
fn paths_parse_and_report_mistakes() {
    let p = CallerPath::parse(".claims.realm.roles[0]").unwrap();
    assert_eq!(p.root, CallerRoot::Claims);
    assert_eq!(p.steps.len(), 3);
    assert_eq!(
        CallerPath::parse(".header.X-Team").unwrap().root,
        CallerRoot::Header("x-team".into())
    );
    assert_eq!(
        CallerPath::parse(".principal").unwrap().root,
        CallerRoot::Principal
    );
    for bad in [
        "",
        ".who",
        ".principal.x",
        ".header",
        ".header.a.b",
        ".header[\"a b\"]",
    ] {
        assert!(CallerPath::parse(bad).is_err(), "{bad}");
    }
    let errors = load(br#"{"version":"1","tools":{"t":{"rules":[{"name":"r","require":[{"path":"caller.role","op":"eq","value":1}]}]}}}"#).unwrap_err();
    assert!(
        errors[0].path.ends_with("rules[0].require[0].path")
            && errors[0].message.contains("caller.claims.<name>"),
        "{errors:?}"
    );
    let errors = load(br#"{"version":"1","tools":{"t":{"rules":[{"name":"r","require":[{"path":"caller.claims.scope","op":"contains_word","value":"a b"}]}]}}}"#).unwrap_err();
    assert!(errors[0].message.contains("one word"), "{errors:?}");
}

#[test]
fn claims_decide_rules_with_the_documented_missing_semantics() {
    let p = policy(ROLES);
    let admin = with_claims(r#"{"sub":"a","role":"admin","realm":{"roles":["admin","ci"]}}"#);
    let ci =
        with_claims(r#"{"sub":"c","role":"ci","realm":{"roles":["ci"]},"scope":"s:read s:poll"}"#);
    let nobody = Caller::default();
    let cancel = r#"{"action":"cancel"}"#;
    assert_eq!(refused_by(&p, "session", cancel, &admin), None);
    assert_eq!(
        refused_by(&p, "session", cancel, &ci).as_deref(),
        Some("tools.session.rules.admin-cancels")
    );
    // No claims at all: a missing roles array contains nothing.
    assert!(refused_by(&p, "session", cancel, &nobody).is_some());
    assert_eq!(refused_by(&p, "session", r#"{"action":"list"}"#, &ci), None);
    // require [role eq admin] and deny_if [role neq admin] both refuse a caller without a role.
    for (tool, who) in [
        ("run", &ci),
        ("run", &nobody),
        ("ops", &ci),
        ("ops", &nobody),
    ] {
        assert!(refused_by(&p, tool, "{}", who).is_some(), "{tool}");
    }
    assert_eq!(refused_by(&p, "run", "{}", &admin), None);
    assert_eq!(refused_by(&p, "ops", "{}", &admin), None);
    // One OAuth scope in a space-separated string: whole words only.
    assert_eq!(refused_by(&p, "poll", "{}", &ci), None);
    let partial = with_claims(r#"{"scope":"s:polling s:read"}"#);
    assert!(refused_by(&p, "poll", "{}", &partial).is_some());
    let list = with_claims(r#"{"scope":["s:read","s:poll"]}"#);
    assert_eq!(refused_by(&p, "poll", "{}", &list), None);
    let number = with_claims(r#"{"scope":7}"#);
    assert!(refused_by(&p, "poll", "{}", &number).is_some());
}

#[test]
fn principal_and_headers() {
    let p = policy(ROLES);
    assert_eq!(
        refused_by(
            &p,
            "mesh",
            "{}",
            &with_principal("spiffe://cluster.local/ns/ci/sa/agent")
        ),
        None
    );
    assert!(refused_by(
        &p,
        "mesh",
        "{}",
        &with_principal("spiffe://cluster.local/ns/web/sa/x")
    )
    .is_some());
    assert!(refused_by(&p, "mesh", "{}", &Caller::default()).is_some());
    // An empty property value is no principal.
    let mut empty = Caller::default();
    empty.principal_from(Some(Vec::new()));
    assert_eq!(empty.principal, None);
    let blue = Caller {
        headers: vec![("x-team".into(), "blue".into())],
        ..Caller::default()
    };
    assert_eq!(refused_by(&p, "team", "{}", &blue), None);
    assert!(refused_by(&p, "team", "{}", &Caller::default()).is_some());
}

#[test]
fn the_host_reads_only_what_the_policy_uses() {
    let needs = policy(ROLES).caller_needs();
    assert!(needs.claims && needs.principal);
    assert_eq!(needs.headers, vec!["x-team".to_string()]);
    let none = policy(
        r#"{"version":"1","tools":{"t":{"rules":[{"name":"r","require":[{"path":"args.a","op":"exists","value":true}]}]}}}"#,
    );
    assert!(!none.caller_needs().any());
    let grant = policy(r#"{"version":"1","settings":{"grant_from":"principal"}}"#);
    assert!(grant.caller_needs().principal && !grant.caller_needs().claims);
    let req = policy(r#"{"version":"1","settings":{"require_caller":true}}"#);
    assert!(req.caller_needs().claims && req.caller_needs().principal);
}

#[test]
fn require_caller_refuses_calls_without_verified_identity() {
    let p = policy(r#"{"version":"1","tools":{"t":{}},"settings":{"require_caller":true}}"#);
    assert_eq!(
        refused_by(&p, "t", "{}", &Caller::default()).as_deref(),
        Some("settings.require_caller")
    );
    // A header is not an identity.
    let header_only = Caller {
        headers: vec![("x-user".into(), "admin".into())],
        ..Caller::default()
    };
    assert!(refused_by(&p, "t", "{}", &header_only).is_some());
    assert_eq!(
        refused_by(&p, "t", "{}", &with_claims(r#"{"sub":"a"}"#)),
        None
    );
    assert_eq!(
        refused_by(&p, "t", "{}", &with_principal("spiffe://x")),
        None
    );
}

#[test]
fn lists_drop_tools_whose_caller_only_rules_refuse() {
    let p = policy(ROLES);
    let ci = with_claims(r#"{"role":"ci","realm":{"roles":["ci"]},"scope":"s:read"}"#);
    let admin = with_claims(r#"{"role":"admin","realm":{"roles":["admin"]},"scope":"s:poll"}"#);
    let shown = |c: &Caller| -> Vec<&str> {
        let view = c.view();
        let mut names: Vec<&str> = ["session", "run", "ops", "poll", "mesh", "team", "open"]
            .into_iter()
            .filter(|t| p.lists_for(t, None, &view))
            .collect();
        names.sort_unstable();
        names
    };
    // `session` reads the arguments too: it stays for everyone.
    assert_eq!(shown(&ci), ["open", "session"]);
    assert_eq!(shown(&admin), ["open", "ops", "poll", "run", "session"]);
    assert_eq!(shown(&Caller::default()), ["open", "session"]);
}

#[test]
fn unreadable_metadata_fails_closed() {
    let mut c = Caller::default();
    c.claims_from_metadata(&[0x0a, 0x05, 0x01], &CallerSettings::default().claims_path);
    assert!(c.unreadable.is_some());
    // A payload that is not an object is refused too.
    let md = encode::metadata("envoy.filters.http.jwt_authn", "jwt_payload", r#""x""#);
    let mut c = Caller::default();
    c.claims_from_metadata(&md, &CallerSettings::default().claims_path);
    assert!(c.unreadable.is_some());
    let engine = Engine::new(policy(r#"{"version":"1","tools":{"t":{}}}"#));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#;
    let scopes = Scopes {
        caller: Some(&c),
        ..Scopes::default()
    };
    let verdict = engine.decide(
        body.as_bytes(),
        &scopes,
        &MemoryStore::new(),
        &FixedClock::at_secs(1),
    );
    match verdict {
        Verdict::Reply { calls, .. } => assert_eq!(calls[0].rule.as_deref(), Some("caller")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn claims_elsewhere_in_metadata_are_found_by_the_setting() {
    // Istio: jwt_authn stores the payload under the issuer's name.
    let md = encode::metadata(
        "envoy.filters.http.jwt_authn",
        "https://issuer.example",
        r#"{"sub":"x"}"#,
    );
    let mut c = Caller::default();
    let path: Vec<String> = [
        "metadata",
        "filter_metadata",
        "envoy.filters.http.jwt_authn",
        "https://issuer.example",
    ]
    .map(String::from)
    .to_vec();
    c.claims_from_metadata(&md, &path);
    assert_eq!(c.subject().as_deref(), Some("x"));
    let p = load(br#"{"version":"1","settings":{"caller_claims":["metadata","filter_metadata","envoy.filters.http.jwt_authn","https://issuer.example"]}}"#).unwrap();
    assert_eq!(p.settings.caller.claims_path, path);
    let errors =
        load(br#"{"version":"1","settings":{"caller_claims":["request","headers","x-claims"]}}"#)
            .unwrap_err();
    assert!(
        errors[0].path == "policy.settings.caller_claims"
            && errors[0].message.contains("filter_metadata"),
        "{errors:?}"
    );
}

#[test]
fn budgets_follow_the_subject_not_the_token() {
    let engine = Engine::new(policy(
        r#"{"version":"1","settings":{"grant_from":"claims.sub"},"tools":{"t":{"limits":[{"counter":"c","window":"hour","max":2,"scope":"grant"}]}}}"#,
    ));
    let (store, clock) = (MemoryStore::new(), FixedClock::at_secs(1_795_478_430));
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t"}}"#;
    let alice1 = with_claims(r#"{"sub":"alice","jti":"1"}"#);
    let alice2 = with_claims(r#"{"sub":"alice","jti":"2"}"#);
    let bob = with_claims(r#"{"sub":"bob"}"#);
    let forwarded = |c: &Caller, token: &[u8]| {
        let scopes = Scopes {
            grant: Some(token),
            caller: Some(c),
            ..Scopes::default()
        };
        matches!(
            engine.decide(body.as_bytes(), &scopes, &store, &clock),
            Verdict::Forward(_)
        )
    };
    assert!(forwarded(&alice1, b"Bearer one"));
    assert!(forwarded(&alice2, b"Bearer two"));
    assert!(!forwarded(&alice1, b"Bearer three"));
    assert!(forwarded(&bob, b"Bearer one"));
    assert_eq!(
        engine.grant_fingerprint_for(Some(b"x"), Some(&alice1)),
        engine.grant_fingerprint_for(Some(b"y"), Some(&alice2))
    );
    assert!(GrantFrom::parse("claims").is_err() && GrantFrom::parse("sub").is_err());
}
