//! The `mcp-policy` binary end to end: validate, explain, render.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use mcp_policy_engine::config;
use mcp_policy_engine::json;
use yaml_rust2::{Yaml, YamlLoader};

const BIN: &str = env!("CARGO_BIN_EXE_mcp-policy");

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn seed() -> PathBuf {
    repo("envoy/seed-policy.json")
}

/// A fresh file in a per-process scratch folder.
fn scratch(name: &str, content: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mcp-policy-cli-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
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
        .expect("run mcp-policy")
}

fn run_path(cmd: &[&str], file: &Path, rest: &[&str]) -> Output {
    let mut args: Vec<&str> = cmd.to_vec();
    args.push(file.to_str().unwrap());
    args.extend_from_slice(rest);
    run(&args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8(o.stderr.clone()).unwrap()
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exit code")
}

/// The lines the filter logs after "mcp-policy: invalid policy: ".
fn filter_messages(policy_json: &str) -> Vec<String> {
    match config::load(policy_json.as_bytes()) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(ToString::to_string).collect(),
    }
}

fn validate_lines(file: &Path) -> (i32, Vec<String>) {
    let o = run_path(&["validate"], file, &[]);
    (code(&o), stdout(&o).lines().map(str::to_string).collect())
}

// ------------------------------------------------------------- validate

/// One bad policy per error class the loader knows, with a message the
/// output must contain. JSON values that messages quote are written with
/// the spacing the YAML converter produces, so the YAML test can reuse them.
const BAD: &[(&str, &str)] = &[
    (r#"{"version":"1","#, "policy: not valid JSON: "),
    (
        r#"{"version":"1","default":"allow","default":"deny"}"#,
        r#"policy: not valid JSON: duplicate key "default""#,
    ),
    ("[1, 2]", "policy: got [1, 2], expected an object"),
    (
        r#"{"default":"deny"}"#,
        r#"policy.version: missing, expected "1""#,
    ),
    (
        r#"{"version":"2"}"#,
        r#"policy.version: got "2", expected "1""#,
    ),
    (r#"{"version":1}"#, r#"policy.version: got 1, expected "1""#),
    (
        r#"{"version":"1","mode":"strict"}"#,
        r#"policy.mode: unknown key, expected one of "version""#,
    ),
    (
        r#"{"version":"1","default":"maybe"}"#,
        r#"policy.default: got "maybe", expected one of "allow", "deny""#,
    ),
    (
        r#"{"version":"1","description":5}"#,
        "policy.description: got 5, expected a string",
    ),
    (
        r#"{"version":"1","tools":[]}"#,
        "policy.tools: got [], expected an object mapping tool names to rules",
    ),
    (
        r#"{"version":"1","tools":{"":{}}}"#,
        "tool name must not be empty",
    ),
    (
        r#"{"version":"1","tools":{"x":{"action":"nope"}}}"#,
        r#"policy.tools.x.action: got "nope", expected one of "allow", "deny", "approve""#,
    ),
    (
        r#"{"version":"1","tools":{"x":{"action":"deny","reason":""}}}"#,
        r#"policy.tools.x.reason: got "", expected a non-empty string"#,
    ),
    (
        r#"{"version":"1","tools":{"x":{"limit":[]}}}"#,
        r#"policy.tools.x.limit: unknown key, expected one of "action""#,
    ),
    (
        r#"{"version":"1","tools":{"x":{"limits":{}}}}"#,
        "policy.tools.x.limits: got {}, expected an array of limits",
    ),
    (
        r#"{"version":"1","tools":{"x":{"limits":[{"counter":"c","window":"fortnight","max":1}]}}}"#,
        r#"policy.tools.x.limits[0].window: got "fortnight", expected one of "second", "minute", "hour", "day", "week", "month" or its length in seconds (1, 60, 3600, 86400, 604800, 2592000)"#,
    ),
    (
        r#"{"version":"1","tools":{"x":{"limits":[{"counter":"c","window":"day","max":0}]}}}"#,
        "policy.tools.x.limits[0].max: got 0, expected an integer from 1 to ",
    ),
    (
        r#"{"version":"1","tools":{"x":{"limits":[{"counter":"c","window":"day","max":2.5}]}}}"#,
        "policy.tools.x.limits[0].max: got 2.5, expected an integer",
    ),
    (
        r#"{"version":"1","tools":{"x":{"limits":[{"counter":"c","window":"day","max":1,"scope":"user"}]}}}"#,
        r#"policy.tools.x.limits[0].scope: got "user", expected one of "#,
    ),
    (
        r#"{"version":"1","tools":{"a":{"limits":[{"counter":"c","window":"day","max":1}]},"b":{"limits":[{"counter":"c","window":"day","max":2}]}}}"#,
        r#"policy.tools.b.limits[0]: counter "c" "#,
    ),
    (
        r#"{"version":"1","hide":"x"}"#,
        r#"policy.hide: got "x", expected an array of tool names"#,
    ),
    (
        r#"{"version":"1","hide":["a","a"]}"#,
        r#"policy.hide[1]: duplicate entry "a""#,
    ),
    (
        r#"{"version":"1","settings":{"header_mode":"wait"}}"#,
        r#"policy.settings.header_mode: got "wait", expected one of "stream", "hold""#,
    ),
    (
        r#"{"version":"1","settings":{"max_depth":500}}"#,
        "policy.settings.max_depth: got 500, expected an integer from 1 to 128",
    ),
    (
        r#"{"version":"1","settings":{"grant_header":"x","grant_property":["a"]}}"#,
        "policy.settings.grant_property: set either grant_header or grant_property, not both",
    ),
    (
        r#"{"version":"1","settings":{"refund_on_error":"yes"}}"#,
        r#"policy.settings.refund_on_error: got "yes", expected true or false"#,
    ),
    (
        r#"{"version":"1","tools":{"x":{"rules":[{"name":"r"}]}}}"#,
        r#"policy.tools.x.rules[0]: expected exactly one of "deny_if", "require", "when", got none"#,
    ),
    (
        r#"{"version":"1","tools":{"x":{"rules":[{"name":"r","deny_if":[{"path":"args.a","op":"regex","value":"("}]}]}}}"#,
        "policy.tools.x.rules[0].deny_if[0].value: got \"(\", expected a valid regular expression",
    ),
    (
        r#"{"version":"1","tools":{"x":{"action":"approve"}}}"#,
        "policy.approval: missing, expected {\"cluster\": ",
    ),
];

#[test]
fn validate_prints_exactly_the_filter_messages_for_every_error_class() {
    for (i, (text, expected)) in BAD.iter().enumerate() {
        let file = scratch(&format!("bad{i}.json"), text);
        let (code, lines) = validate_lines(&file);
        assert_eq!(code, 1, "{text}");
        assert_eq!(lines, filter_messages(text), "{text}");
        assert!(
            lines.iter().any(|l| l.contains(expected)),
            "{text}: expected a line containing {expected:?}, got {lines:#?}"
        );
    }
}

#[test]
fn validate_reports_every_problem_not_only_the_first() {
    let text = r#"{"version":"2","default":"maybe","tools":{"x":{"action":"nope","limits":[{"counter":"c","window":"fortnight","max":0}]}},"extra":1}"#;
    let file = scratch("many.json", text);
    let (code, lines) = validate_lines(&file);
    assert_eq!(code, 1);
    assert_eq!(lines, filter_messages(text));
    assert_eq!(lines.len(), 6, "{lines:#?}");
    let o = run_path(&["validate"], &file, &[]);
    assert!(stderr(&o).contains("6 problem(s)"), "{}", stderr(&o));
}

#[test]
fn validate_accepts_the_seed_policy_and_the_examples_with_a_summary() {
    for f in [
        "envoy/seed-policy.json",
        "envoy/examples/approval.json",
        "envoy/examples/claude-code-guarded.json",
    ] {
        let o = run(&["validate", repo(f).to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{f}: {}{}", stdout(&o), stderr(&o));
        let out = stdout(&o);
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains("valid JSON policy (default "), "{out}");
    }
    let o = run(&["validate", seed().to_str().unwrap()]);
    assert!(stdout(&o).contains("default deny, 1 tool, 0 argument rules, 1 counter, 0 hidden"));
}

#[test]
fn yaml_and_json_give_the_same_messages() {
    // Every JSON case that is not a syntax error, read as YAML (JSON is
    // YAML flow syntax): same problems, same order, same text.
    for (i, (text, _)) in BAD.iter().enumerate() {
        if filter_messages(text)
            .iter()
            .any(|m| m.starts_with("policy: not valid JSON"))
        {
            continue;
        }
        let json_file = scratch(&format!("p{i}.json"), text);
        let yaml_file = scratch(&format!("p{i}.yaml"), text);
        assert_eq!(
            validate_lines(&json_file),
            validate_lines(&yaml_file),
            "{text}"
        );
    }
    // Block-style YAML written as people write it.
    let pairs = [
        (
            "version: '1'\ndefault: maybe\ntools:\n  x:\n    action: nope\n    limits:\n      - counter: c\n        window: fortnight\n        max: 0\n        scope: grant\n",
            r#"{"version":"1","default":"maybe","tools":{"x":{"action":"nope","limits":[{"counter":"c","window":"fortnight","max":0,"scope":"grant"}]}}}"#,
        ),
        (
            "version: 1\nhide: [a, a]\nsettings:\n  refund_on_error: 'yes'\n  max_depth: 500\n",
            r#"{"version":1,"hide":["a","a"],"settings":{"refund_on_error":"yes","max_depth":500}}"#,
        ),
        (
            "version: \"1\"\ntools:\n  a:\n    limits: [{counter: c, window: day, max: 1}]\n  b:\n    limits:\n    - {counter: c, window: day, max: 2}\n  \"\": {}\n",
            r#"{"version":"1","tools":{"a":{"limits":[{"counter":"c","window":"day","max":1}]},"b":{"limits":[{"counter":"c","window":"day","max":2}]},"":{}}}"#,
        ),
        (
            "# comment\nversion: \"1\"\ndefault: deny\nextra: ~\ntools:\n  x:\n    rules:\n      - name: r\n        deny_if:\n          - {path: args.a, op: regex, value: \"(\"}\n",
            r#"{"version":"1","default":"deny","extra":null,"tools":{"x":{"rules":[{"name":"r","deny_if":[{"path":"args.a","op":"regex","value":"("}]}]}}}"#,
        ),
    ];
    for (i, (yaml, json_text)) in pairs.iter().enumerate() {
        let (jc, jl) = validate_lines(&scratch(&format!("b{i}.json"), json_text));
        let (yc, yl) = validate_lines(&scratch(&format!("b{i}.yml"), yaml));
        assert_eq!(jc, 1);
        assert!(!jl.is_empty());
        assert_eq!((jc, jl), (yc, yl), "{yaml}");
    }
}

#[test]
fn yaml_seed_policy_is_valid_and_renders_like_its_json() {
    let yaml = "version: \"1\"\ndefault: deny\ntools:\n  claude_code_session:\n    limits:\n      - counter: claude_code_session_rate\n        window: minute\n        max: 10\n        scope: grant\n";
    let file = scratch("seed.yaml", yaml);
    let o = run_path(&["validate"], &file, &[]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
    assert!(stdout(&o).contains("valid YAML policy"));
    let o = run_path(&["explain"], &file, &["--tool", "claude_code_session"]);
    assert_eq!(code(&o), 0, "{}", stdout(&o));
}

#[test]
fn yaml_errors_are_reported_with_line_and_column() {
    let file = scratch(
        "broken.yaml",
        "version: \"1\"\ntools:\n  x: [1, 2\n  y: 3\n",
    );
    let (code, lines) = validate_lines(&file);
    assert_eq!(code, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("policy: not valid YAML: "),
        "{lines:?}"
    );
    assert!(lines[0].contains(" at line "), "{lines:?}");
    assert!(lines[0].contains(", column "), "{lines:?}");

    let file = scratch(
        "dup.yaml",
        "version: \"1\"\ndefault: deny\ndefault: allow\n",
    );
    let (_, lines) = validate_lines(&file);
    assert_eq!(
        lines,
        [r#"policy: not valid YAML: duplicate key "default" at line 3, column 1"#]
    );
}

#[test]
fn format_is_detected_by_content_without_extension() {
    let json_file = scratch("policy", r#"{"version":"1","default":"maybe"}"#);
    let yaml_file = scratch("policy", "version: '1'\ndefault: maybe\n");
    assert_eq!(validate_lines(&json_file), validate_lines(&yaml_file));
    let o = run_path(&["validate"], &scratch("p", r#"{"version":"1"}"#), &[]);
    assert!(stdout(&o).contains("valid JSON policy"));
}

#[test]
fn unreadable_file_and_bad_usage_exit_1() {
    let o = run(&["validate", "/nonexistent/policy.json"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("cannot read /nonexistent/policy.json"));
    for args in [
        &["frobnicate"][..],
        &["validate"],
        &["explain", "x.json"],
        &["render", "nginx", "x.json"],
        &[
            "explain",
            seed().to_str().unwrap(),
            "--tool",
            "t",
            "--args",
            "{bad",
        ],
        &[
            "render",
            "envoy",
            seed().to_str().unwrap(),
            "--upstream",
            "nohost",
        ],
    ] {
        let o = run(args);
        assert_eq!(code(&o), 1, "{args:?}");
        assert!(stdout(&o).is_empty(), "{args:?}");
        assert!(
            stderr(&o).starts_with("mcp-policy: "),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    let o = run(&["--help"]);
    assert_eq!(code(&o), 0);
    assert!(stdout(&o).contains("mcp-policy validate FILE"));
}

// ------------------------------------------------------------- explain

fn explain(file: &Path, rest: &[&str]) -> (i32, String) {
    let o = run_path(&["explain"], file, rest);
    (code(&o), stdout(&o))
}

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {key}: in\n{out}"))
}

#[test]
fn explain_takes_a_caller() {
    let roles = repo("envoy/examples/roles.json");
    let cancel = [
        "--tool",
        "claude_code_session",
        "--args",
        r#"{"action":"cancel"}"#,
    ];
    let as_who = |claims: &str| {
        let mut a = cancel.to_vec();
        a.extend_from_slice(&["--claims", claims]);
        explain(&roles, &a)
    };
    let (c, out) = as_who(r#"{"sub":"ci-bot","roles":["ci"]}"#);
    assert_eq!(c, 2, "{out}");
    assert_eq!(
        field(&out, "rule"),
        "tools.claude_code_session.rules.cancel-is-for-admins"
    );
    let (c, out) = as_who(r#"{"sub":"alice","roles":["admin"]}"#);
    assert_eq!(c, 0, "{out}");
    assert!(out.contains("named by settings.grant_from"), "{out}");
    let (c, out) = explain(&roles, &cancel);
    assert_eq!((c, field(&out, "rule")), (2, "settings.require_caller"));
    let (c, _) = as_who("[1]");
    assert_eq!(c, 1);
    let mesh = scratch(
        "mesh.json",
        r#"{"version":"1","tools":{"t":{"rules":[{"name":"ci","require":[{"path":"caller.principal","op":"eq","value":"spiffe://cluster.local/ns/ci/sa/agent"}]}]}}}"#,
    );
    let (c, _) = explain(
        &mesh,
        &[
            "--tool",
            "t",
            "--principal",
            "spiffe://cluster.local/ns/ci/sa/agent",
        ],
    );
    assert_eq!(c, 0);
    let (c, _) = explain(&mesh, &["--tool", "t", "--principal", "spiffe://x"]);
    assert_eq!(c, 2);
}

#[test]
fn explain_seed_policy() {
    let (c, out) = explain(
        &seed(),
        &[
            "--tool",
            "claude_code_session",
            "--args",
            r#"{"action":"list"}"#,
        ],
    );
    assert_eq!(c, 0, "{out}");
    assert_eq!(field(&out, "decision"), "allowed");
    assert_eq!(field(&out, "rule"), "tools.claude_code_session");
    assert!(
        out.contains("  - claude_code_session_rate: 10 per minute (sliding window), scope grant; this call takes 1"),
        "{out}"
    );
    assert!(out.contains("no --grant given"), "{out}");
    let (_, out) = explain(
        &seed(),
        &["--tool", "claude_code_session", "--grant", "Bearer k"],
    );
    assert!(out.contains("the --grant value"), "{out}");

    let (c, out) = explain(
        &seed(),
        &[
            "--tool",
            "claude_code",
            "--args",
            r#"{"prompt":"rm -rf /"}"#,
        ],
    );
    assert_eq!(c, 2, "{out}");
    assert_eq!(field(&out, "decision"), "denied");
    assert_eq!(field(&out, "rule"), "default");
    assert_eq!(
        field(&out, "reason"),
        r#"tool "claude_code" is not allowed by policy (default: deny)"#
    );
    assert!(field(&out, "limits").starts_with("none consulted"));
    let answer = field(&out, "answer");
    assert!(answer.contains(r#""code":-31001"#), "{answer}");
    json::parse(answer.as_bytes()).unwrap();

    // Names are exact: case matters.
    let (c, out) = explain(&seed(), &["--tool", "Claude_Code_Session"]);
    assert_eq!((c, field(&out, "decision")), (2, "denied"));
}

#[test]
fn explain_guarded_example() {
    let guarded = repo("envoy/examples/claude-code-guarded.json");
    let ok_args =
        r#"{"prompt":"x","maxTurns":5,"cwd":"/work/app","advanced":{"maxBudgetUsd":2.5}}"#;
    let (c, out) = explain(
        &guarded,
        &[
            "--tool",
            "claude_code",
            "--args",
            ok_args,
            "--grant",
            "Bearer g",
        ],
    );
    assert_eq!(c, 0, "{out}");
    assert!(
        out.contains(
            "claude_code_spend_usd: 50 per day (sliding window), scope grant; this call takes 2.5"
        ),
        "{out}"
    );

    let (c, out) = explain(
        &guarded,
        &[
            "--tool",
            "claude_code",
            "--args",
            r#"{"prompt":"x","maxTurns":50,"cwd":"/work/app"}"#,
        ],
    );
    assert_eq!(c, 2);
    assert_eq!(field(&out, "rule"), "tools.claude_code.rules.bounded-turns");
    assert_eq!(field(&out, "reason"), "set maxTurns to 20 or less");

    // A spend bigger than the whole daily budget: rate limited at once.
    let big = r#"{"prompt":"x","maxTurns":5,"cwd":"/work/app","advanced":{"maxBudgetUsd":80}}"#;
    let (c, out) = explain(&guarded, &["--tool", "claude_code", "--args", big]);
    assert_eq!(c, 2, "{out}");
    assert_eq!(field(&out, "decision"), "rate limited");
    assert_eq!(field(&out, "rule"), "limits.claude_code_spend_usd");
    assert!(field(&out, "answer").contains(r#""code":-31002"#), "{out}");

    let (c, out) = explain(
        &guarded,
        &[
            "--tool",
            "claude_code_session",
            "--args",
            r#"{"action":"cancel"}"#,
        ],
    );
    assert_eq!(c, 2);
    assert_eq!(
        field(&out, "rule"),
        "tools.claude_code_session.rules.no-cancel"
    );
}

#[test]
fn explain_approval_example() {
    let approval = repo("envoy/examples/approval.json");
    let (c, out) = explain(
        &approval,
        &["--tool", "claude_code", "--args", r#"{"prompt":"x"}"#],
    );
    assert_eq!(c, 2, "{out}");
    assert_eq!(field(&out, "decision"), "needs approval");
    assert_eq!(field(&out, "rule"), "tools.claude_code");
    assert_eq!(
        field(&out, "reason"),
        "every autonomous session needs a human yes"
    );
    assert!(
        field(&out, "approval").contains(r#"cluster "approval_service""#),
        "{out}"
    );

    let (c, out) = explain(
        &approval,
        &[
            "--tool",
            "claude_code_session",
            "--args",
            r#"{"action":"list"}"#,
        ],
    );
    assert_eq!((c, field(&out, "decision")), (0, "allowed"), "{out}");
    let (c, out) = explain(
        &approval,
        &[
            "--tool",
            "claude_code_session",
            "--args",
            r#"{"action":"cancel"}"#,
        ],
    );
    assert_eq!((c, field(&out, "decision")), (2, "needs approval"), "{out}");
    assert_eq!(
        field(&out, "rule"),
        "tools.claude_code_session.rules.cancel-needs-a-human"
    );
}

#[test]
fn explain_risk_actions_use_the_server_hint() {
    let file = scratch(
        "risk.json",
        r#"{"version":"1","risk_actions":{"destructive":"deny"}}"#,
    );
    let (c, out) = explain(&file, &["--tool", "t"]);
    assert_eq!(
        (c, field(&out, "rule")),
        (2, "risk_actions.destructive"),
        "{out}"
    );
    assert!(out.contains("note:"), "{out}");
    let (c, out) = explain(&file, &["--tool", "t", "--server-risk", "read"]);
    assert_eq!((c, field(&out, "decision")), (0, "allowed"), "{out}");
}

#[test]
fn explain_global_limits_assume_the_rate_limit_service_has_room() {
    let file = scratch(
        "global.json",
        r#"{"version":"1","tools":{"t":{"limits":[{"counter":"c","window":"minute","max":5,"scope":"grant","global":true}]}},"rate_limit_service":{"cluster":"ratelimit","domain":"mcp"}}"#,
    );
    let (c, out) = explain(&file, &["--tool", "t"]);
    assert_eq!((c, field(&out, "decision")), (0, "allowed"), "{out}");
    assert!(
        out.contains("c: 5 per minute (sliding window), scope grant, cluster-wide via the rate limit service; this call takes 1"),
        "{out}"
    );
    assert!(
        field(&out, "note").contains(r#"rate limit service at cluster "ratelimit""#),
        "{out}"
    );
}

#[test]
fn explain_tool_result_style_shows_that_answer() {
    let file = scratch(
        "style.json",
        r#"{"version":"1","default":"deny","settings":{"error_style":"tool_result"}}"#,
    );
    let (c, out) = explain(&file, &["--tool", "t"]);
    assert_eq!((c, field(&out, "rule")), (2, "default"));
    assert!(field(&out, "answer").contains("[POLICY DENIED]"), "{out}");
}

#[test]
fn explain_refuses_an_invalid_policy() {
    let file = scratch("bad.json", r#"{"version":"1","default":"maybe"}"#);
    let o = run_path(&["explain"], &file, &["--tool", "t"]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).is_empty());
    assert!(stderr(&o).contains(r#"policy.default: got "maybe""#));
}

// ------------------------------------------------------------- render

fn yaml_docs(text: &str) -> Vec<Yaml> {
    YamlLoader::load_from_str(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

fn at<'a>(y: &'a Yaml, path: &[&str]) -> &'a Yaml {
    path.iter().fold(y, |node, key| match key.parse::<usize>() {
        Ok(i) => &node[i],
        Err(_) => &node[*key],
    })
}

/// A policy with everything that is hard to embed: quotes, backslashes,
/// newlines, tabs, YAML indicators, non-ASCII, astral characters,
/// characters YAML refuses raw, and no trailing newline.
const NASTY: &str = "{\n\t\"version\": \"1\",\r\n  \"description\": \"it's \\\"quoted\\\" \\\\ back\\\\slash\\n# not a comment: {x} [y] & *z !t %p @a `b` | > ' \u{e9}\u{2713}\u{1f980} \\u2028 \\u0007 \u{7f}\u{85}\u{2028}\u{feff}\",\n  \"default\": \"deny\",\n  \"tools\": {\"a b:c\": {\"reason\": \"x\", \"action\": \"deny\"}, \"*\": {}, \"yes\": {}}\n}";

/// The HTTP connection manager's typed_config.
fn hcm(doc: &Yaml) -> &Yaml {
    at(
        doc,
        &[
            "static_resources",
            "listeners",
            "0",
            "filter_chains",
            "0",
            "filters",
            "0",
            "typed_config",
        ],
    )
}

fn listener_address(doc: &Yaml) -> &Yaml {
    at(
        doc,
        &[
            "static_resources",
            "listeners",
            "0",
            "address",
            "socket_address",
        ],
    )
}

fn http_filters(doc: &Yaml) -> &Yaml {
    &hcm(doc)["http_filters"]
}

#[test]
fn render_envoy_embeds_the_policy_byte_exact() {
    for (name, text) in [
        ("seed.json", std::fs::read_to_string(seed()).unwrap()),
        ("nasty.json", NASTY.to_string()),
    ] {
        assert!(
            config::load(text.as_bytes()).is_ok(),
            "{name} must be valid"
        );
        let file = scratch(name, &text);
        let o = run_path(
            &["render", "envoy"],
            &file,
            &[
                "--wasm",
                "/opt/x/plugin.wasm",
                "--upstream",
                "10.1.2.3:8080",
                "--port",
                "10001",
            ],
        );
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let out = stdout(&o);
        let docs = yaml_docs(&out);
        assert_eq!(docs.len(), 1);
        let filters = http_filters(&docs[0]);
        assert_eq!(filters[0]["name"].as_str(), Some("envoy.filters.http.wasm"));
        assert_eq!(
            filters[1]["name"].as_str(),
            Some("envoy.filters.http.router")
        );
        let config = &filters[0]["typed_config"]["config"];
        assert_eq!(
            config["allow_on_headers_stop_iteration"].as_bool(),
            Some(true)
        );
        assert_eq!(config["fail_open"].as_bool(), Some(false));
        assert_eq!(
            config["vm_config"]["configuration"]["value"].as_str(),
            Some(r#"{"header_mode":"hold"}"#)
        );
        assert_eq!(
            config["vm_config"]["code"]["local"]["filename"].as_str(),
            Some("/opt/x/plugin.wasm")
        );
        // YAML-decoded: byte for byte the file.
        assert_eq!(
            config["configuration"]["value"].as_str(),
            Some(text.as_str()),
            "{name}"
        );
        // JSON-decoded (the scalar as written is a JSON string literal).
        let line = out
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("value: "))
            .find(|v| v.len() > 40)
            .unwrap();
        let decoded = json::parse(line.as_bytes()).unwrap();
        assert_eq!(decoded.root.as_str(), Some(text.as_str()), "{name}");

        let hcm = hcm(&docs[0]);
        assert_eq!(hcm["codec_type"].as_str(), Some("AUTO"));
        let listener = listener_address(&docs[0]);
        assert_eq!(listener["port_value"].as_i64(), Some(10001));
        let cluster = at(&docs[0], &["static_resources", "clusters", "0"]);
        assert_eq!(cluster["type"].as_str(), Some("STATIC"));
        let ep = at(
            cluster,
            &[
                "load_assignment",
                "endpoints",
                "0",
                "lb_endpoints",
                "0",
                "endpoint",
                "address",
                "socket_address",
            ],
        );
        assert_eq!(
            (ep["address"].as_str(), ep["port_value"].as_i64()),
            (Some("10.1.2.3"), Some(8080))
        );
    }
}

#[test]
fn render_envoy_options() {
    let o = run(&[
        "render",
        "envoy",
        seed().to_str().unwrap(),
        "--upstream",
        "mcp.default.svc:8000",
        "--header-mode",
        "stream",
    ]);
    assert_eq!(code(&o), 0);
    let docs = yaml_docs(&stdout(&o));
    let cluster = at(&docs[0], &["static_resources", "clusters", "0"]);
    assert_eq!(cluster["type"].as_str(), Some("STRICT_DNS"));
    let config = &http_filters(&docs[0])[0]["typed_config"]["config"];
    assert_eq!(
        config["vm_config"]["configuration"]["value"].as_str(),
        Some(r#"{"header_mode":"stream"}"#)
    );
    // The module path is absolute: Envoy may start in any directory.
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"].as_str(),
        Some(cwd.join("dist/mcp_policy.wasm").to_str().unwrap())
    );
    // Loopback unless asked otherwise.
    let listener = listener_address(&docs[0]);
    assert_eq!(listener["address"].as_str(), Some("127.0.0.1"));
    assert_eq!(listener["port_value"].as_i64(), Some(10000));
    assert_eq!(
        config["vm_config"]["runtime"].as_str(),
        Some("envoy.wasm.runtime.v8")
    );
    // tcmalloc hands back what V8 freed after compiling the module.
    let release = at(&docs[0], &["memory_allocator_manager"]);
    assert_eq!(release["bytes_to_release"].as_i64(), Some(16 << 20));
    assert_eq!(release["memory_release_interval"].as_str(), Some("1s"));
}

#[test]
fn render_envoy_listen_address_runtime_and_access_log() {
    let o = run(&[
        "render",
        "envoy",
        seed().to_str().unwrap(),
        "--wasm",
        "rel/m.wasm",
        "--listen",
        "0.0.0.0:0",
        "--admin-port",
        "0",
        "--runtime",
        "null",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let docs = yaml_docs(&out);
    let listener = listener_address(&docs[0]);
    assert_eq!(listener["address"].as_str(), Some("0.0.0.0"));
    assert_eq!(listener["port_value"].as_i64(), Some(0));
    let config = &http_filters(&docs[0])[0]["typed_config"]["config"];
    assert_eq!(
        config["vm_config"]["runtime"].as_str(),
        Some("envoy.wasm.runtime.null")
    );
    let cwd = std::env::current_dir().unwrap();
    assert_eq!(
        config["vm_config"]["code"]["local"]["filename"].as_str(),
        Some(cwd.join("rel/m.wasm").to_str().unwrap())
    );
    // The access log uses the current field (text_format is deprecated).
    assert!(!out.contains("text_format:"), "{out}");
    let hcm = hcm(&docs[0]);
    let format = hcm["access_log"][0]["typed_config"]["log_format"]["text_format_source"]
        ["inline_string"]
        .as_str()
        .unwrap();
    assert!(format.contains("mcp_decision=%FILTER_STATE(wasm.mcp_policy.decision:PLAIN)%"));
    assert!(format.ends_with('\n'));

    for (flag, value) in [
        ("--listen", "localhost:10000"),
        ("--listen", "10000"),
        ("--runtime", "v9"),
    ] {
        let o = run(&["render", "envoy", seed().to_str().unwrap(), flag, value]);
        assert_eq!(code(&o), 1, "{flag} {value}");
        assert!(stderr(&o).contains(flag), "{}", stderr(&o));
    }
}

#[test]
fn render_refuses_an_invalid_policy() {
    let file = scratch(
        "bad.json",
        r#"{"version":"1","tools":{"x":{"action":"nope"}}}"#,
    );
    for target in ["envoy", "istio"] {
        let o = run_path(&["render", target], &file, &[]);
        assert_eq!(code(&o), 1, "{target}");
        assert!(stdout(&o).is_empty(), "{target}");
        assert!(
            stderr(&o).contains(r#"policy.tools.x.action: got "nope""#),
            "{target}"
        );
    }
}

#[test]
fn render_yaml_policy_embeds_its_json_form() {
    let file = scratch(
        "p.yaml",
        "version: \"1\"\ndefault: deny\ntools:\n  t: {action: deny, reason: \"no: really\"}\n",
    );
    let o = run_path(&["render", "envoy"], &file, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let docs = yaml_docs(&stdout(&o));
    let embedded = http_filters(&docs[0])[0]["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        embedded,
        r#"{"version": "1", "default": "deny", "tools": {"t": {"action": "deny", "reason": "no: really"}}}"#
    );
    assert!(config::load(embedded.as_bytes()).is_ok());
}

/// JSON text read as YAML, for comparing structures.
fn as_yaml(json_text: &str) -> Yaml {
    yaml_docs(json_text).remove(0)
}

#[test]
fn render_istio_wasmplugin_and_envoyfilter() {
    for (name, text) in [
        ("seed.json", std::fs::read_to_string(seed()).unwrap()),
        (
            "guarded.json",
            std::fs::read_to_string(repo("envoy/examples/claude-code-guarded.json")).unwrap(),
        ),
        (
            "approval.json",
            std::fs::read_to_string(repo("envoy/examples/approval.json")).unwrap(),
        ),
        ("nasty.json", NASTY.to_string()),
    ] {
        let file = scratch(name, &text);
        let o = run_path(
            &["render", "istio"],
            &file,
            &["--image", "oci://registry.example/mcp-policy:1.2.3"],
        );
        assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
        let docs = yaml_docs(&stdout(&o));
        assert_eq!(docs.len(), 2, "{name}");

        let plugin = &docs[0];
        assert_eq!(
            plugin["apiVersion"].as_str(),
            Some("extensions.istio.io/v1alpha1")
        );
        assert_eq!(plugin["kind"].as_str(), Some("WasmPlugin"));
        let spec = &plugin["spec"];
        assert_eq!(
            spec["url"].as_str(),
            Some("oci://registry.example/mcp-policy:1.2.3")
        );
        assert_eq!(spec["phase"].as_str(), Some("STATS"));
        assert_eq!(spec["match"][0]["mode"].as_str(), Some("SERVER"));
        assert_eq!(spec["match"][0]["ports"][0]["number"].as_i64(), Some(8000));
        assert_eq!(spec["failStrategy"].as_str(), Some("FAIL_CLOSE"));
        assert_eq!(
            spec["selector"]["matchLabels"]["app"].as_str(),
            Some("mcp-server")
        );
        // pluginConfig is the policy as structured YAML: same tree.
        assert_eq!(spec["pluginConfig"], as_yaml(&text), "{name}");

        let filter = &docs[1];
        assert_eq!(
            filter["apiVersion"].as_str(),
            Some("networking.istio.io/v1alpha3")
        );
        assert_eq!(filter["kind"].as_str(), Some("EnvoyFilter"));
        let patches = filter["spec"]["configPatches"].as_vec().unwrap();
        assert_eq!(patches.len(), 3);
        let ext = &patches[0];
        assert_eq!(ext["applyTo"].as_str(), Some("EXTENSION_CONFIG"));
        let version = ext["match"]["proxy"]["proxyVersion"].as_str().unwrap();
        // The deny-all fallback: every proxy, the MCP port, before the router.
        let deny = &patches[1];
        assert_eq!(deny["applyTo"].as_str(), Some("HTTP_FILTER"));
        assert_eq!(deny["match"]["context"].as_str(), Some("SIDECAR_INBOUND"));
        assert!(deny["match"]["proxy"].is_badvalue());
        assert_eq!(deny["match"]["listener"]["portNumber"].as_i64(), Some(8000));
        assert_eq!(deny["patch"]["operation"].as_str(), Some("INSERT_BEFORE"));
        assert_eq!(
            at(
                deny,
                &[
                    "match",
                    "listener",
                    "filterChain",
                    "filter",
                    "subFilter",
                    "name"
                ]
            )
            .as_str(),
            Some("envoy.filters.http.router")
        );
        assert_eq!(
            deny["patch"]["value"]["typed_config"]["@type"].as_str(),
            Some("type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC")
        );
        // The filter replaces it on proxies the version gate accepts.
        let http = &patches[2];
        assert_eq!(
            http["match"]["proxy"]["proxyVersion"].as_str(),
            Some(version)
        );
        assert_eq!(http["match"]["listener"]["portNumber"].as_i64(), Some(8000));
        assert_eq!(http["patch"]["operation"].as_str(), Some("REPLACE"));
        assert_eq!(
            at(
                http,
                &[
                    "match",
                    "listener",
                    "filterChain",
                    "filter",
                    "subFilter",
                    "name"
                ]
            )
            .as_str(),
            deny["patch"]["value"]["name"].as_str()
        );
        assert_eq!(
            http["patch"]["value"]["config_discovery"]["type_urls"]
                .as_vec()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .collect::<Vec<_>>(),
            [
                "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
                "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC"
            ]
        );
        assert_eq!(
            ext["patch"]["value"]["name"],
            http["patch"]["value"]["name"]
        );
        let typed = &ext["patch"]["value"]["typed_config"];
        assert_eq!(
            typed["@type"].as_str(),
            Some("type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm")
        );
        let config = &typed["config"];
        assert_eq!(
            config["allow_on_headers_stop_iteration"].as_bool(),
            Some(true)
        );
        assert_eq!(config["fail_open"].as_bool(), Some(false));
        assert_eq!(
            config["vm_config"]["configuration"]["value"].as_str(),
            Some(r#"{"header_mode":"hold"}"#)
        );
        assert_eq!(
            config["vm_config"]["code"]["remote"]["http_uri"]["uri"].as_str(),
            Some("oci://registry.example/mcp-policy:1.2.3")
        );
        assert_eq!(
            config["configuration"]["value"].as_str(),
            Some(text.as_str()),
            "{name}"
        );
    }
}

#[test]
fn render_istio_refuses_a_wasmplugin_for_a_hold_policy() {
    let file = scratch(
        "hold.json",
        r#"{"version":"1","settings":{"header_mode":"hold"}}"#,
    );
    let o = run_path(&["render", "istio"], &file, &[]);
    assert_eq!(code(&o), 1);
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("allow_on_headers_stop_iteration"),
        "{}",
        stderr(&o)
    );
    let o = run_path(&["render", "istio"], &file, &["--only", "envoyfilter"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let docs = yaml_docs(&stdout(&o));
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["kind"].as_str(), Some("EnvoyFilter"));
}

// ------------------------------------------------------------- patterns and warnings

const PATTERNS: &str = r#"{"version":"1","default":"allow","tools":{
  "delete_*":{"action":"deny","reason":"no deletes"},
  "delete_tmp":{},
  "db.*.drop":{"action":"deny"},
  "db.*":{}}}"#;

#[test]
fn explain_names_the_entry_that_matched() {
    let file = scratch("patterns.json", PATTERNS);
    let (c, out) = explain(&file, &["--tool", "delete_file"]);
    assert_eq!(c, 2, "{out}");
    assert!(
        field(&out, "entry").starts_with(r#"tools["delete_*"] (pattern, 7 literal characters"#),
        "{out}"
    );
    assert_eq!(field(&out, "rule"), "tools.delete_*");
    assert_eq!(field(&out, "reason"), "no deletes");
    assert!(
        field(&out, "answer").contains(r#""rule":"tools.delete_*""#),
        "{out}"
    );

    // Exact name first.
    let (c, out) = explain(&file, &["--tool", "delete_tmp"]);
    assert_eq!(c, 0, "{out}");
    assert_eq!(field(&out, "entry"), "tools.delete_tmp (exact name)");
    assert_eq!(field(&out, "rule"), "tools.delete_tmp");

    // The most specific pattern.
    let (c, out) = explain(&file, &["--tool", "db.users.drop"]);
    assert_eq!(c, 2, "{out}");
    assert!(
        field(&out, "entry").starts_with(r#"tools["db.*.drop"]"#),
        "{out}"
    );
    let (c, out) = explain(&file, &["--tool", "db.users.select"]);
    assert_eq!(c, 0, "{out}");
    assert!(
        field(&out, "entry").starts_with(r#"tools["db.*"]"#),
        "{out}"
    );
    assert_eq!(field(&out, "rule"), "tools.db.*");
    assert!(
        field(&out, "reason").contains(r#"matches the pattern "db.*""#),
        "{out}"
    );

    let (c, out) = explain(&file, &["--tool", "read_file"]);
    assert_eq!(c, 0, "{out}");
    assert!(field(&out, "entry").starts_with("none"), "{out}");
    assert_eq!(field(&out, "rule"), "default");
}

#[test]
fn validate_lists_patterns_in_precedence_order() {
    let file = scratch("patterns.json", PATTERNS);
    let o = run_path(&["validate"], &file, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("1 tool, 3 patterns,"), "{out}");
    assert_eq!(
        lines[1],
        r#"patterns, tried after exact names, most specific first (literal characters): tools["db.*.drop"] (8), tools["delete_*"] (7), tools["db.*"] (3)"#
    );
}

#[test]
fn validate_refuses_ambiguous_patterns_with_both_paths() {
    let text = r#"{"version":"1","tools":{"delete_*":{"action":"deny"},"*_report":{}}}"#;
    let file = scratch("ambiguous.json", text);
    let (c, lines) = validate_lines(&file);
    assert_eq!(c, 1);
    assert_eq!(lines, filter_messages(text));
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with(r#"policy.tools["*_report"]: pattern "*_report" and pattern "delete_*" at policy.tools["delete_*"] both match tool names such as "delete__report""#), "{lines:?}");
}

#[test]
fn validate_warns_about_require_rules_that_pass_on_absence() {
    let text = r#"{"version":"1","default":"deny","tools":{"claude_code_session":{"rules":[
      {"name":"no-cancel","require":[{"path":"args.action","op":"not_in","value":["cancel"]}]}]}}}"#;
    let file = scratch("absence.json", text);
    let o = run_path(&["validate"], &file, &[]);
    assert_eq!(code(&o), 0, "warnings alone do not fail: {}", stderr(&o));
    let out = stdout(&o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].contains("valid JSON policy"), "{out}");
    assert!(
        lines[1].starts_with("warning: policy.tools.claude_code_session.rules[0].require: passes when args.action is missing"),
        "{out}"
    );
    assert!(
        lines[1].contains(r#"add {"path": "args.action", "op": "exists", "value": true}"#),
        "{out}"
    );
    assert!(
        stderr(&o).contains("1 warning(s); the filter loads this policy"),
        "{}",
        stderr(&o)
    );

    let o = run_path(&["validate"], &file, &["--strict"]);
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("--strict"), "{}", stderr(&o));

    // The warning is right: explain allows the call without the argument.
    let (c, out) = explain(&file, &["--tool", "claude_code_session", "--args", "{}"]);
    assert_eq!((c, field(&out, "decision")), (0, "allowed"), "{out}");

    // With exists: true there is nothing to warn about, and --strict passes.
    let fixed = text.replace(
        r#"[{"path":"args.action","op":"not_in""#,
        r#"[{"path":"args.action","op":"exists","value":true},{"path":"args.action","op":"not_in""#,
    );
    let file = scratch("absence-fixed.json", &fixed);
    let o = run_path(&["validate"], &file, &["--strict"]);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
}

#[test]
fn yaml_unquoted_star_pattern_gets_a_hint() {
    let file = scratch(
        "star.yaml",
        "version: \"1\"\ntools:\n  *_admin: {action: deny}\n",
    );
    let (c, lines) = validate_lines(&file);
    assert_eq!(c, 1);
    assert!(lines[0].contains("quote tool-name patterns"), "{lines:?}");
    let file = scratch(
        "star-ok.yaml",
        "version: \"1\"\ntools:\n  \"*_admin\": {action: deny}\n  delete_*: {action: deny}\n",
    );
    let (c, lines) = validate_lines(&file);
    assert_eq!(c, 0, "{lines:?}");
    assert!(lines[0].contains("2 patterns"), "{lines:?}");
}

#[test]
fn render_istio_port_pull_secret_and_lowercase_image() {
    let file = scratch("seed-port.json", &std::fs::read_to_string(seed()).unwrap());
    let o = run_path(
        &["render", "istio"],
        &file,
        &["--port", "3000", "--pull-secret", "regcred"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let docs = yaml_docs(&stdout(&o));
    let spec = &docs[0]["spec"];
    assert_eq!(spec["imagePullSecret"].as_str(), Some("regcred"));
    assert_eq!(spec["match"][0]["ports"][0]["number"].as_i64(), Some(3000));
    for patch in &docs[1]["spec"]["configPatches"].as_vec().unwrap()[1..] {
        assert_eq!(
            patch["match"]["listener"]["portNumber"].as_i64(),
            Some(3000)
        );
    }
    for image in [
        "oci://ghcr.io/OWNER/mcp-policy:0.1.0",
        "oci://localhost:5000/Acme/mcp-policy@sha256:00",
    ] {
        let o = run_path(&["render", "istio"], &file, &["--image", image]);
        assert_eq!(code(&o), 1, "{image}");
        assert!(stderr(&o).contains("must be lowercase"), "{}", stderr(&o));
    }
    // Upper case in a tag is fine; a registry port is not a tag.
    let o = run_path(
        &["render", "istio"],
        &file,
        &["--image", "oci://localhost:5000/acme/mcp-policy:V1"],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for bad in [["--port", "0"], ["--pull-secret", "Bad_Name"]] {
        let o = run_path(&["render", "istio"], &file, &bad);
        assert_eq!(code(&o), 1, "{bad:?}");
    }
}
