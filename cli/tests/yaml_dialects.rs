//! YAML policies of each accepted dialect through the command line:
//! `validate`, `explain`, `render --canonical` and `render envoy` take them
//! as they take the same policy in JSON.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-policy");

fn scratch(name: &str, content: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mcp-policy-yaml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap() + &String::from_utf8(o.stderr.clone()).unwrap()
}

/// One dialect: its YAML form, the same policy in JSON, and calls with the
/// decision its source documents (`explain`'s first line).
struct Dialect {
    name: &'static str,
    yaml: &'static str,
    json: &'static str,
    calls: &'static [(&'static str, &'static str, &'static str)],
}

const DIALECTS: &[Dialect] = &[
    Dialect {
        name: "native",
        yaml: "\
version: '1'
default: deny
tools:
  claude_code_session:
    limits: [{counter: s, window: minute, max: 10, scope: grant}]
    rules:
      - name: no-cancel
        deny_if: [{path: args.action, op: eq, value: cancel}]
  claude_code: {action: deny, reason: needs a human}
",
        json: r#"{"version":"1","default":"deny","tools":{
            "claude_code_session":{"limits":[{"counter":"s","window":"minute","max":10,"scope":"grant"}],
              "rules":[{"name":"no-cancel","deny_if":[{"path":"args.action","op":"eq","value":"cancel"}]}]},
            "claude_code":{"action":"deny","reason":"needs a human"}}}"#,
        calls: &[
            (
                "claude_code_session",
                r#"{"action":"list"}"#,
                "decision: allowed",
            ),
            (
                "claude_code_session",
                r#"{"action":"cancel"}"#,
                "decision: denied",
            ),
            ("claude_code", "{}", "decision: denied"),
            ("other", "{}", "decision: denied"),
        ],
    },
    Dialect {
        name: "policylayer",
        yaml: "\
version: '1'
default: deny
all_tools:
  rate_limit: {max: 100, window: 60}
tools:
  create_refund:
    risk: Destructive
    require: [{path: args.reason, op: exists, value: true}]
    deny_if: [{path: args.amount, op: gt, value: 10000}]
    rate_limit: {max: 5, window: week}
  list_charges: {risk: Read}
  run_script: {risk: EXECUTE}
risk_actions: {Execute: deny}
",
        json: r#"{"version":"1","default":"deny","all_tools":{"rate_limit":{"max":100,"window":60}},
            "tools":{"create_refund":{"risk":"Destructive",
              "require":[{"path":"args.reason","op":"exists","value":true}],
              "deny_if":[{"path":"args.amount","op":"gt","value":10000}],
              "rate_limit":{"max":5,"window":"week"}},
            "list_charges":{"risk":"Read"},"run_script":{"risk":"EXECUTE"}},
            "risk_actions":{"Execute":"deny"}}"#,
        calls: &[
            ("list_charges", "{}", "decision: allowed"),
            (
                "create_refund",
                r#"{"reason":"x","amount":5}"#,
                "decision: allowed",
            ),
            ("create_refund", r#"{"amount":5}"#, "decision: denied"),
            (
                "create_refund",
                r#"{"reason":"x","amount":20000}"#,
                "decision: denied",
            ),
            ("run_script", "{}", "decision: denied"),
            ("other", "{}", "decision: denied"),
        ],
    },
    Dialect {
        name: "resources-prompts-shadow",
        yaml: "\
version: '1'
default: allow
settings: {mode: shadow}
tools:
  delete_everything: {action: deny, reason: destroys data}
resources:
  'file:///public/*': {}
  'file:///*': {action: deny, reason: no files}
prompts:
  'review-*': {action: deny}
",
        json: r#"{"version":"1","default":"allow","settings":{"mode":"shadow"},
            "tools":{"delete_everything":{"action":"deny","reason":"destroys data"}},
            "resources":{"file:///public/*":{},"file:///*":{"action":"deny","reason":"no files"}},
            "prompts":{"review-*":{"action":"deny"}}}"#,
        calls: &[("echo", "{}", "decision: allowed")],
    },
];

#[test]
fn every_dialect_in_yaml_validates_explains_and_renders() {
    for d in DIALECTS {
        let yaml = scratch(&format!("{}.yaml", d.name), d.yaml);
        let json = scratch(&format!("{}.json", d.name), d.json);
        let (y, j) = (yaml.to_str().unwrap(), json.to_str().unwrap());

        let o = run(&["validate", y]);
        assert_eq!(o.status.code(), Some(0), "{}: {}", d.name, out(&o));
        assert!(out(&o).contains("valid YAML policy"), "{}", out(&o));

        for (tool, args, expected) in d.calls {
            let from_yaml = run(&[
                "explain", y, "--tool", tool, "--args", args, "--grant", "Bearer g",
            ]);
            let from_json = run(&[
                "explain", j, "--tool", tool, "--args", args, "--grant", "Bearer g",
            ]);
            assert!(
                out(&from_yaml).starts_with(expected),
                "{} {tool} {args}: {}",
                d.name,
                out(&from_yaml)
            );
            assert_eq!(out(&from_yaml), out(&from_json), "{} {tool}", d.name);
            assert_eq!(from_yaml.status.code(), from_json.status.code());
        }

        let canon_yaml = run(&["render", "--canonical", y]);
        let canon_json = run(&["render", "--canonical", j]);
        assert_eq!(canon_yaml.status.code(), Some(0), "{}", out(&canon_yaml));
        assert_eq!(canon_yaml.stdout, canon_json.stdout, "{}", d.name);

        for target in ["envoy", "istio"] {
            let o = run(&["render", target, y]);
            assert_eq!(o.status.code(), Some(0), "{} {target}: {}", d.name, out(&o));
        }
    }
}
