//! `render --canonical` over every policy in the repository: the output
//! loads, renders to itself byte for byte, and decides every sample call as
//! the original does.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;

use mcp_policy_cli::canonical::{self, Json};
use mcp_policy_cli::explain::{self, Call};
use mcp_policy_cli::policy_file;
use mcp_policy_engine::conditions::{Condition, Literal, Op, Path as CondPath};
use mcp_policy_engine::jsonrpc::CallKind;
use mcp_policy_engine::path_steps::Step;
use mcp_policy_engine::policy::{RuleKind, ToolRule};
use mcp_policy_engine::store::Clock;
use mcp_policy_engine::{config, Policy};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-policy");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

struct Fixed;

impl Clock for Fixed {
    fn now_unix_millis(&self) -> u64 {
        1_800_000_000_000
    }
}

/// The policy files of the repository (and the reference seed policy when
/// this checkout sits beside it).
fn policy_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = vec![
        repo("envoy/seed-policy.json"),
        repo("bench/policy.json"),
        repo("deploy/istio/envoyfilter/policy.json"),
    ];
    for dir in ["envoy/examples", "fuzz/policies"] {
        for entry in std::fs::read_dir(repo(dir)).unwrap() {
            files.push(entry.unwrap().path());
        }
    }
    for shared in [
        "../shared/reference/seed-policy.json",
        "../../shared/reference/seed-policy.json",
    ] {
        if repo(shared).exists() {
            files.push(repo(shared));
            break;
        }
    }
    files.sort();
    files
}

/// Raw string literals (`r#"…"#`, `br#"…"#`) of the Rust test sources that
/// load as policies: the unit-test corpora, dialect examples included.
fn policies_in_sources() -> Vec<(String, String)> {
    let mut sources = Vec::new();
    let mut stack = vec![repo("engine/src"), repo("cli/tests")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                sources.push(path);
            }
        }
    }
    sources.sort();
    let mut out = Vec::new();
    for path in sources {
        let text = std::fs::read_to_string(&path).unwrap();
        let mut rest = text.as_str();
        while let Some(start) = rest.find("r#\"") {
            let after = &rest[start + 3..];
            let Some(end) = after.find("\"#") else { break };
            let literal = &after[..end];
            rest = &after[end + 2..];
            if literal.contains("\"version\"") && config::load(literal.as_bytes()).is_ok() {
                out.push((path.display().to_string(), literal.to_string()));
            }
        }
    }
    out
}

fn load(text: &str) -> Policy {
    config::load(text.as_bytes()).unwrap_or_else(|e| panic!("{e:?}\n{text}"))
}

fn compact(v: &Json) -> String {
    canonical::compact(v)
}

/// Puts `value` at `steps` inside `root` (objects only; indexes skipped).
fn set_at(root: &mut Vec<(String, Json)>, steps: &[Step], value: Json) {
    let Some((Step::Key(k), rest)) = steps.split_first() else {
        return;
    };
    if rest.is_empty() {
        root.retain(|(key, _)| key != k);
        root.push((k.clone(), value));
        return;
    }
    if !root
        .iter()
        .any(|(key, v)| key == k && matches!(v, Json::Obj(_)))
    {
        root.retain(|(key, _)| key != k);
        root.push((k.clone(), Json::Obj(Vec::new())));
    }
    for (key, v) in root.iter_mut() {
        if key == k {
            if let Json::Obj(inner) = v {
                set_at(inner, rest, value);
            }
            return;
        }
    }
}

fn literal(l: &Literal) -> Json {
    match l {
        Literal::Null => Json::Null,
        Literal::Bool(b) => Json::Bool(*b),
        Literal::Number(x) if x.is_finite() => Json::Num(x.to_string()),
        Literal::Number(_) => Json::Num("0".to_string()),
        Literal::String(s) => Json::Str(s.clone()),
        Literal::Array(items) => Json::Arr(items.iter().map(literal).collect()),
        Literal::Object(m) => Json::Obj(m.iter().map(|(k, v)| (k.clone(), literal(v))).collect()),
    }
}

/// A value for which the condition holds (roughly: enough to reach both
/// sides of most rules).
fn satisfying(c: &Condition) -> Json {
    match &c.op {
        Op::Eq(l) | Op::Contains(l) => literal(l),
        Op::In(l) => l.first().map(literal).unwrap_or(Json::Null),
        Op::Neq(_) | Op::NotIn(_) | Op::NotContains(_) => Json::Str("other".to_string()),
        Op::Lt(x) | Op::Lte(x) => Json::Num((x - 1.0).to_string()),
        Op::Gt(x) | Op::Gte(x) => Json::Num((x + 1.0).to_string()),
        Op::Regex(_) => Json::Str("/work/x".to_string()),
        Op::ContainsWord(w) => Json::Str(w.clone()),
        Op::Exists(_) => Json::Bool(true),
    }
}

/// Calls that reach each entry and each rule: no arguments, empty
/// arguments, and per rule arguments (and claims) meeting its conditions.
fn sample_calls(p: &Policy) -> Vec<Call> {
    let mut names: Vec<(String, &ToolRule)> = p
        .tools
        .iter()
        .map(|(k, r)| (k.clone(), r))
        .chain(
            p.patterns
                .iter()
                .map(|pat| (pat.glob.text.replace('*', "x"), &pat.rule)),
        )
        .collect();
    names.push(("zz_unlisted".to_string(), &p.wildcard));
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut calls = Vec::new();
    for (name, rule) in names {
        let base = Call {
            tool: name.clone(),
            grant: Some("Bearer g1".to_string()),
            ..Call::default()
        };
        calls.push(base.clone());
        calls.push(Call {
            args: Some("{}".to_string()),
            ..base.clone()
        });
        for r in rule.rules.iter().chain(&p.wildcard.rules) {
            let conds = match &r.kind {
                RuleKind::DenyIf(c) | RuleKind::Require(c) | RuleKind::When(c) => c,
            };
            let mut args = Vec::new();
            let mut claims = Vec::new();
            for c in conds {
                match &c.path {
                    CondPath::Args(a) => set_at(&mut args, &a.steps, satisfying(c)),
                    CondPath::Caller { text, .. } => {
                        if let Some(rest) = text.strip_prefix("caller.claims") {
                            let steps = mcp_policy_engine::path_steps::parse_steps(rest).unwrap();
                            set_at(&mut claims, &steps, satisfying(c));
                        }
                    }
                }
            }
            calls.push(Call {
                args: Some(compact(&Json::Obj(args))),
                claims: Some(compact(&Json::Obj(claims))),
                ..base.clone()
            });
        }
    }
    calls
}

/// What the policy decides for each sample call and each listed resource
/// and prompt key.
fn decisions(p: &Policy, calls: &[Call]) -> Vec<String> {
    let mut out: Vec<String> = calls
        .iter()
        .map(|c| match explain::explain(p, c, &Fixed) {
            Ok(e) => e.to_text(),
            Err(e) => format!("error: {e}"),
        })
        .collect();
    for kind in [CallKind::Resource, CallKind::Prompt] {
        if let Some(section) = p.items(kind) {
            let mut keys: Vec<String> = section
                .exact
                .keys()
                .cloned()
                .chain(
                    section
                        .patterns
                        .iter()
                        .map(|(g, _)| g.text.replace('*', "x")),
                )
                .collect();
            keys.push("zz://unlisted".to_string());
            for key in keys {
                out.push(format!(
                    "{key}: {:?} lists={}",
                    p.decide_item(kind, &key),
                    p.lists_item(kind, &key)
                ));
            }
        }
    }
    out
}

/// The guarantee for one policy text.
fn check_round_trip(origin: &str, text: &str) {
    let original = load(text);
    let first = canonical::render(&original).unwrap_or_else(|e| panic!("{origin}: {e}"));
    let reloaded = config::load(first.as_bytes())
        .unwrap_or_else(|e| panic!("{origin}: canonical output does not load: {e:?}\n{first}"));
    let second = canonical::render(&reloaded).unwrap();
    assert_eq!(first, second, "{origin}: not a fixed point");
    let calls = sample_calls(&original);
    assert_eq!(
        decisions(&original, &calls),
        decisions(&reloaded, &calls),
        "{origin}: decisions differ\n{text}\n{first}"
    );
}

#[test]
fn every_policy_file_renders_to_an_equivalent_fixed_point() {
    let files = policy_files();
    assert!(files.len() >= 7, "{files:?}");
    for path in files {
        let file = policy_file::read(path.to_str().unwrap()).unwrap();
        check_round_trip(&path.display().to_string(), file.text().unwrap());
    }
}

#[test]
fn every_policy_in_the_unit_tests_renders_to_an_equivalent_fixed_point() {
    let found = policies_in_sources();
    // The corpora hold far more; a sudden drop means the scan broke.
    assert!(found.len() >= 80, "only {} policies found", found.len());
    for (origin, text) in &found {
        check_round_trip(origin, text);
    }
}

#[test]
fn dialects_come_out_in_todays_vocabulary() {
    let yaml = "\
version: '1'
description: refunds desk
default: deny
all_tools:
  rate_limit: {max: 100, window: 60}
tools:
  create_refund:
    description: money out
    risk: Destructive
    require: [{path: args.reason, op: exists, value: true}]
    deny_if: [{path: args.amount, op: gt, value: 10000}]
    rate_limit: {max: 5, window: week}
risk_actions: {EXECUTE: deny}
";
    let file = policy_file::from_bytes("p.yaml", yaml.as_bytes().to_vec());
    let out = canonical::render(&file.load().unwrap()).unwrap();
    let expected = r#"{
  "version": "1",
  "description": "refunds desk",
  "default": "deny",
  "tools": {
    "*": {
      "limits": [
        {"counter": "all_tools.rate_limit", "window": "minute", "max": 100, "scope": "grant"}
      ]
    },
    "create_refund": {
      "description": "money out",
      "risk": "destructive",
      "limits": [
        {"counter": "tools.create_refund.rate_limit", "window": "week", "max": 5, "scope": "grant"}
      ],
      "rules": [
        {"name": "require", "require": [{"path": "args.reason", "op": "exists", "value": true}]},
        {"name": "deny_if", "deny_if": [{"path": "args.amount", "op": "gt", "value": 10000}]}
      ]
    }
  },
  "risk_actions": {"execute": "deny"}
}
"#;
    assert_eq!(out, expected);
    check_round_trip("dialects", file.text().unwrap());
}

#[test]
fn settings_services_and_odd_values_survive() {
    let text = r#"{"version":"1","default":"allow",
        "settings":{"mode":"shadow","limit_algorithm":"fixed","grant_property":["metadata","x"],
            "audit":"all","max_batch":3,"caller_claims":["metadata","filter_metadata","jwt","p"],
            "grant_from":"claims[\"odd.key\"].sub","header_mode":"hold","error_style":"tool_result"},
        "hide":["z*","*","a"],
        "tools":{"pay":{"limits":[
            {"counter":"spend","window":"day","max":50,"increment_from":"args.usd","default_increment":0.29},
            {"counter":"calls","window":"second","max":2,"algorithm":"sliding","global":true}],
            "rules":[{"name":"big","deny_if":[{"path":"args[\"a b\"]","op":"in","value":[1e400,-0.5,{"k":[null]}]}],
                      "action":"approve","reason":"ask"}]}},
        "approval":{"cluster":"c","path":"/yes","timeout_ms":5},
        "rate_limit_service":{"cluster":"rl","failure_mode":"local","include_tool":false}}"#;
    check_round_trip("odd", text);
    let out = canonical::render(&load(text)).unwrap();
    assert!(out.contains(r#""default_increment": 0.29"#), "{out}");
    assert!(out.contains(r#""hide": ["*", "a", "z*"]"#), "{out}");
    assert!(
        out.contains(r#""grant_from": "claims[\"odd.key\"].sub""#),
        "{out}"
    );
}

#[test]
fn the_command_prints_it_and_refuses_bad_policies() {
    let seed = repo("envoy/seed-policy.json");
    let o = Command::new(BIN)
        .args(["render", "--canonical", seed.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    let text = std::fs::read_to_string(&seed).unwrap();
    assert_eq!(
        String::from_utf8(o.stdout).unwrap(),
        canonical::render(&load(&text)).unwrap()
    );
    let bad = std::env::temp_dir().join(format!("canon-bad-{}.yaml", std::process::id()));
    std::fs::write(&bad, "version: '1'\ndefault: maybe\n").unwrap();
    let o = Command::new(BIN)
        .args(["render", "--canonical", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8(o.stderr)
        .unwrap()
        .contains("policy.default: got \"maybe\""));
}
