//! `mcp-policy render --canonical`: a loaded policy written back in today's
//! native vocabulary.
//!
//! The writer reads only the engine's [`Policy`] (what every dialect is
//! parsed into), never the input text, so what it prints is what the filter
//! enforces. Loading its output gives the same policy again; values equal to
//! their default are left out. One function per section: a new section of the
//! model gets a new function here and a line in [`to_value`]. Each writer
//! names every field of the struct it writes, so a field added to the model
//! does not compile until it is written here too.

use mcp_policy_engine::caller::{CallerSettings, GrantFrom};
use mcp_policy_engine::conditions::{Condition, Literal, Op};
use mcp_policy_engine::config;
use mcp_policy_engine::path_steps::Step;
use mcp_policy_engine::policy::{
    Action, ApprovalService, ArgRule, AuditLevel, Counter, ErrorStyle, FailureMode, GrantSource,
    HeaderMode, ItemRules, Policy, RateLimitService, Risk, RuleKind, Settings, ToolRule,
};
use mcp_policy_engine::write::quoted;

/// A JSON value being written (members keep their order).
#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// Already-formatted number text.
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

fn s(text: &str) -> Json {
    Json::Str(text.to_string())
}

fn int(n: impl std::fmt::Display) -> Json {
    Json::Num(n.to_string())
}

/// An object built member by member, skipping absent ones.
#[derive(Default)]
struct Members(Vec<(String, Json)>);

impl Members {
    fn put(&mut self, key: &str, value: Json) {
        self.0.push((key.to_string(), value));
    }

    fn opt(&mut self, key: &str, value: Option<Json>) {
        if let Some(v) = value {
            self.put(key, v);
        }
    }

    /// `key: value` unless `value` equals `default`.
    fn unless<T: PartialEq>(&mut self, key: &str, value: T, default: T, show: impl Fn(T) -> Json) {
        if value != default {
            self.put(key, show(value));
        }
    }

    fn done(self) -> Json {
        Json::Obj(self.0)
    }

    fn or_none(self) -> Option<Json> {
        (!self.0.is_empty()).then_some(Json::Obj(self.0))
    }
}

/// The policy as canonical JSON text (two-space indentation, final newline).
pub fn render(policy: &Policy) -> Result<String, String> {
    let mut out = String::new();
    write_pretty(&to_value(policy)?, 0, 0, &mut out);
    out.push('\n');
    Ok(out)
}

/// The policy as a JSON value, section by section.
pub fn to_value(p: &Policy) -> Result<Json, String> {
    // Every field named: a field added to the model fails to compile here
    // until the writer handles it.
    let Policy {
        description: _,
        default: _,
        tools: _,
        patterns: _,
        wildcard: _,
        hide: _,
        hide_patterns: _,
        hide_all: _,
        counters: _,
        risk_actions: _,
        resources: _,
        prompts: _,
        approval: _,
        rate_limit_service: _,
        settings: _,
    } = p;
    let mut m = Members::default();
    m.put("version", s("1"));
    m.opt("description", p.description.as_deref().map(s));
    m.put("default", s(p.default.name()));
    m.opt("settings", settings(&p.settings)?);
    m.opt("hide", hide(p));
    m.opt("tools", tools(p)?);
    m.opt(
        "resources",
        p.resources.as_ref().map(|r| items(r, p)).transpose()?,
    );
    m.opt(
        "prompts",
        p.prompts.as_ref().map(|r| items(r, p)).transpose()?,
    );
    m.opt("risk_actions", risk_actions(p));
    m.opt("approval", p.approval.as_ref().map(approval));
    m.opt(
        "rate_limit_service",
        p.rate_limit_service.as_ref().map(rate_limit_service),
    );
    Ok(m.done())
}

/// `settings`: only what differs from the filter's defaults.
fn settings(set: &Settings) -> Result<Option<Json>, String> {
    let Settings {
        max_body_bytes: _,
        max_depth: _,
        max_batch: _,
        error_style: _,
        header_mode: _,
        grant: _,
        refund_on_error: _,
        counter_slots: _,
        limit_algorithm: _,
        grant_hash_key: _,
        audit: _,
        require_grant: _,
        hold_body_timeout_ms: _,
        shadow: _,
        caller: _,
    } = set;
    let d = Settings::default();
    let mut m = Members::default();
    m.unless("mode", set.shadow, d.shadow, |b| {
        s(if b { "shadow" } else { "enforce" })
    });
    m.unless("max_body_bytes", set.max_body_bytes, d.max_body_bytes, int);
    m.unless("max_depth", set.max_depth, d.max_depth, int);
    m.unless("max_batch", set.max_batch, d.max_batch, int);
    m.unless("error_style", set.error_style, d.error_style, |e| {
        s(match e {
            ErrorStyle::JsonRpc => "jsonrpc",
            ErrorStyle::ToolResult => "tool_result",
            ErrorStyle::Intercept => "intercept",
        })
    });
    m.unless("header_mode", set.header_mode, d.header_mode, |h| {
        s(match h {
            HeaderMode::Stream => "stream",
            HeaderMode::Hold => "hold",
        })
    });
    if set.grant != d.grant {
        match &set.grant {
            GrantSource::Header(h) => m.put("grant_header", s(h)),
            GrantSource::Property(parts) => m.put(
                "grant_property",
                Json::Arr(parts.iter().map(|p| s(p)).collect()),
            ),
        }
    }
    m.unless(
        "refund_on_error",
        set.refund_on_error,
        d.refund_on_error,
        Json::Bool,
    );
    m.unless("counter_slots", set.counter_slots, d.counter_slots, int);
    m.unless(
        "limit_algorithm",
        set.limit_algorithm,
        d.limit_algorithm,
        |a| s(a.name()),
    );
    m.opt("grant_hash_key", set.grant_hash_key.as_deref().map(s));
    m.unless("audit", set.audit, d.audit, |a| {
        s(match a {
            AuditLevel::Off => "off",
            AuditLevel::Refused => "refused",
            AuditLevel::All => "all",
        })
    });
    m.unless(
        "require_grant",
        set.require_grant,
        d.require_grant,
        Json::Bool,
    );
    m.unless(
        "hold_body_timeout_ms",
        set.hold_body_timeout_ms,
        d.hold_body_timeout_ms,
        int,
    );
    caller_settings(&set.caller, &mut m)?;
    Ok(m.or_none())
}

/// `caller_claims`, `require_caller`, `grant_from` (members of `settings`).
fn caller_settings(c: &CallerSettings, m: &mut Members) -> Result<(), String> {
    let CallerSettings {
        claims_path: _,
        require: _,
        grant_from: _,
    } = c;
    let d = CallerSettings::default();
    if c.claims_path != d.claims_path {
        m.put(
            "caller_claims",
            Json::Arr(c.claims_path.iter().map(|p| s(p)).collect()),
        );
    }
    m.unless("require_caller", c.require, d.require, Json::Bool);
    match &c.grant_from {
        Some(GrantFrom::Principal) => m.put("grant_from", s("principal")),
        Some(GrantFrom::Claim(steps)) => m.put(
            "grant_from",
            Json::Str(format!("claims{}", steps_text(steps)?)),
        ),
        None => {}
    }
    Ok(())
}

/// Path steps as the path parser reads them: `.key`, `["odd.key"]`, `[0]`.
fn steps_text(steps: &[Step]) -> Result<String, String> {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Index(i) => out.push_str(&format!("[{i}]")),
            Step::Key(k) if !k.is_empty() && !k.contains(['.', '[']) => {
                out.push('.');
                out.push_str(k);
            }
            Step::Key(k) if !k.contains('"') => out.push_str(&format!("[\"{k}\"]")),
            Step::Key(k) => {
                return Err(format!(
                    "the key {} cannot be written as a path step",
                    quoted(k)
                ))
            }
        }
    }
    Ok(out)
}

/// `hide`: `"*"`, then names and patterns in order.
fn hide(p: &Policy) -> Option<Json> {
    let mut names: Vec<&str> = p.hide.iter().map(String::as_str).collect();
    names.extend(p.hide_patterns.iter().map(|g| g.text.as_str()));
    names.sort_unstable();
    if p.hide_all {
        names.insert(0, "*");
    }
    (!names.is_empty()).then(|| Json::Arr(names.into_iter().map(s).collect()))
}

/// `tools`: `"*"` first (PolicyLayer's `all_tools`), then names and patterns
/// in order.
fn tools(p: &Policy) -> Result<Option<Json>, String> {
    let mut entries: Vec<(&str, &ToolRule)> = p
        .tools
        .iter()
        .map(|(k, r)| (k.as_str(), r))
        .chain(
            p.patterns
                .iter()
                .map(|pat| (pat.glob.text.as_str(), &pat.rule)),
        )
        .collect();
    entries.sort_unstable_by_key(|(k, _)| *k);
    if p.wildcard != ToolRule::default() || p.wildcard.description.0.is_some() {
        entries.insert(0, ("*", &p.wildcard));
    }
    let mut m = Members::default();
    for (key, rule) in entries {
        m.put(key, tool_rule(rule, p)?);
    }
    Ok(m.or_none())
}

/// One tool entry (also a resource or prompt entry, which have no risk and
/// no argument rules).
fn tool_rule(rule: &ToolRule, p: &Policy) -> Result<Json, String> {
    let ToolRule {
        action: _,
        reason: _,
        limits: _,
        risk: _,
        rules: _,
        shadow: _,
        description: _,
    } = rule;
    let mut m = Members::default();
    m.opt("description", rule.description.0.as_deref().map(s));
    m.unless("action", rule.action, Action::Allow, |a| s(a.name()));
    m.opt("reason", rule.reason.as_deref().map(s));
    if rule.shadow {
        m.put("mode", s("shadow"));
    }
    m.opt("risk", rule.risk.map(|r| s(r.name())));
    if !rule.limits.is_empty() {
        let mut list = Vec::new();
        for idx in &rule.limits {
            let counter = p
                .counters
                .get(*idx)
                .ok_or_else(|| format!("internal: limit {idx} has no counter"))?;
            list.push(limit(counter, &p.settings)?);
        }
        m.put("limits", Json::Arr(list));
    }
    if !rule.rules.is_empty() {
        let list: Result<Vec<Json>, String> = rule.rules.iter().map(arg_rule).collect();
        m.put("rules", Json::Arr(list?));
    }
    Ok(m.done())
}

/// A counter in full, as every entry using it writes it (`rate_limit`
/// blocks become the counter they were loaded as).
fn limit(c: &Counter, set: &Settings) -> Result<Json, String> {
    let Counter {
        name: _,
        window: _,
        max: _,
        scope: _,
        algorithm: _,
        increment_from: _,
        default_increment_milli: _,
        global: _,
        reason: _,
    } = c;
    let mut m = Members::default();
    m.put("counter", s(&c.name));
    m.put("window", s(c.window.name()));
    m.put("max", int(c.max));
    m.put("scope", s(c.scope.name()));
    m.unless("algorithm", c.algorithm, set.limit_algorithm, |a| {
        s(a.name())
    });
    m.opt(
        "increment_from",
        c.increment_from.as_ref().map(|p| s(&p.text)),
    );
    if let Some(milli) = c.default_increment_milli {
        m.put("default_increment", Json::Num(milli_text(milli)?));
    }
    if c.global {
        m.put("global", Json::Bool(true));
    }
    m.opt("reason", c.reason.as_deref().map(s));
    Ok(m.done())
}

/// A number that loads back as exactly `milli` thousandths (the loader
/// rounds up, so the plain quotient is nudged down when it would not).
fn milli_text(milli: u64) -> Result<String, String> {
    let mut v = milli as f64 / 1000.0;
    for _ in 0..8 {
        if config::to_milli(v) == milli {
            return Ok(v.to_string());
        }
        v = f64::from_bits(v.to_bits().saturating_sub(1));
    }
    Err(format!(
        "default_increment of {milli} thousandths cannot be written exactly"
    ))
}

/// One argument rule (`deny_if` / `require` / `when`).
fn arg_rule(r: &ArgRule) -> Result<Json, String> {
    let ArgRule {
        name: _,
        kind: _,
        action: _,
        risk: _,
        reason: _,
    } = r;
    let mut m = Members::default();
    m.put("name", s(&r.name));
    let (kind, conds) = match &r.kind {
        RuleKind::DenyIf(c) => ("deny_if", c),
        RuleKind::Require(c) => ("require", c),
        RuleKind::When(c) => ("when", c),
    };
    let list: Result<Vec<Json>, String> = conds.iter().map(condition).collect();
    m.put(kind, Json::Arr(list?));
    if !matches!(r.kind, RuleKind::When(_)) {
        m.unless("action", r.action, Action::Deny, |a| s(a.name()));
    }
    m.opt("risk", r.risk.map(|k| s(k.name())));
    m.opt("reason", r.reason.as_deref().map(s));
    Ok(m.done())
}

fn condition(c: &Condition) -> Result<Json, String> {
    let (op, value) = match &c.op {
        Op::Eq(l) => ("eq", literal(l)?),
        Op::Neq(l) => ("neq", literal(l)?),
        Op::In(l) => ("in", literals(l)?),
        Op::NotIn(l) => ("not_in", literals(l)?),
        Op::Lt(x) => ("lt", number(*x)?),
        Op::Lte(x) => ("lte", number(*x)?),
        Op::Gt(x) => ("gt", number(*x)?),
        Op::Gte(x) => ("gte", number(*x)?),
        Op::Regex(re) => ("regex", s(re.as_str())),
        Op::Contains(l) => ("contains", literal(l)?),
        Op::NotContains(l) => ("not_contains", literal(l)?),
        Op::ContainsWord(w) => ("contains_word", s(w)),
        Op::Exists(b) => ("exists", Json::Bool(*b)),
    };
    let mut m = Members::default();
    m.put("path", s(c.path.text()));
    m.put("op", s(op));
    m.put("value", value);
    Ok(m.done())
}

fn literals(list: &[Literal]) -> Result<Json, String> {
    list.iter()
        .map(literal)
        .collect::<Result<Vec<_>, _>>()
        .map(Json::Arr)
}

fn literal(l: &Literal) -> Result<Json, String> {
    Ok(match l {
        Literal::Null => Json::Null,
        Literal::Bool(b) => Json::Bool(*b),
        Literal::Number(x) => number(*x)?,
        Literal::String(t) => s(t),
        Literal::Array(items) => literals(items)?,
        Literal::Object(members) => Json::Obj(
            members
                .iter()
                .map(|(k, v)| Ok((k.clone(), literal(v)?)))
                .collect::<Result<Vec<_>, String>>()?,
        ),
    })
}

/// A number as JSON text that parses back to the same `f64` (a literal too
/// large for `f64` loaded as infinity and is written as one again).
fn number(x: f64) -> Result<Json, String> {
    if x.is_nan() {
        return Err("a condition value is not a number the filter can compare".to_string());
    }
    Ok(Json::Num(if x == f64::INFINITY {
        "1e999".to_string()
    } else if x == f64::NEG_INFINITY {
        "-1e999".to_string()
    } else {
        x.to_string()
    }))
}

/// A `resources` or `prompts` section: entries in key order.
fn items(section: &ItemRules, p: &Policy) -> Result<Json, String> {
    let ItemRules {
        exact: _,
        patterns: _,
    } = section;
    let mut entries: Vec<(&str, &ToolRule)> = section
        .exact
        .iter()
        .map(|(k, r)| (k.as_str(), r))
        .chain(section.patterns.iter().map(|(g, r)| (g.text.as_str(), r)))
        .collect();
    entries.sort_unstable_by_key(|(k, _)| *k);
    let mut m = Members::default();
    for (key, rule) in entries {
        m.put(key, tool_rule(rule, p)?);
    }
    Ok(m.done())
}

fn risk_actions(p: &Policy) -> Option<Json> {
    let mut m = Members::default();
    for (name, risk) in Risk::ALL {
        if let Some(action) = p.risk_actions.get(&risk) {
            m.put(name, s(action.name()));
        }
    }
    m.or_none()
}

fn approval(a: &ApprovalService) -> Json {
    let ApprovalService {
        cluster: _,
        authority: _,
        path: _,
        timeout_ms: _,
    } = a;
    let mut m = Members::default();
    m.put("cluster", s(&a.cluster));
    m.unless("authority", a.authority.as_str(), a.cluster.as_str(), s);
    m.unless("path", a.path.as_str(), "/approve", s);
    m.unless("timeout_ms", a.timeout_ms, 30_000, int);
    m.done()
}

fn rate_limit_service(r: &RateLimitService) -> Json {
    let RateLimitService {
        cluster: _,
        domain: _,
        timeout_ms: _,
        failure_mode: _,
        all_limits: _,
        include_tool: _,
    } = r;
    let mut m = Members::default();
    m.put("cluster", s(&r.cluster));
    m.unless("domain", r.domain.as_str(), "mcp_policy", s);
    m.unless("timeout_ms", r.timeout_ms, 500, int);
    m.unless("failure_mode", r.failure_mode, FailureMode::Deny, |f| {
        s(match f {
            FailureMode::Deny => "deny",
            FailureMode::Local => "local",
        })
    });
    m.unless("all_limits", r.all_limits, false, Json::Bool);
    m.unless("include_tool", r.include_tool, true, Json::Bool);
    m.done()
}

/// `v` on one line.
pub fn compact(v: &Json) -> String {
    let mut out = String::new();
    write_compact(v, &mut out);
    out
}

/// One line when short (conditions, limits), else one member per line.
const LINE: usize = 100;

fn write_compact(v: &Json, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Num(n) => out.push_str(n),
        Json::Str(t) => out.push_str(&quoted(t)),
        Json::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_compact(item, out);
            }
            out.push(']');
        }
        Json::Obj(members) => {
            out.push('{');
            for (i, (k, item)) in members.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&quoted(k));
                out.push_str(": ");
                write_compact(item, out);
            }
            out.push('}');
        }
    }
}

/// `column`: where on its line the value starts.
fn write_pretty(v: &Json, indent: usize, column: usize, out: &mut String) {
    let mut compact = String::new();
    write_compact(v, &mut compact);
    let nested = match v {
        Json::Arr(items) => !items.is_empty(),
        Json::Obj(members) => !members.is_empty(),
        _ => false,
    };
    // The outermost object is always spread out.
    if !nested || (indent > 0 && column + compact.len() <= LINE) {
        out.push_str(&compact);
        return;
    }
    let pad = "  ".repeat(indent + 1);
    match v {
        Json::Arr(items) => {
            out.push_str("[\n");
            for (i, item) in items.iter().enumerate() {
                out.push_str(&pad);
                write_pretty(item, indent + 1, pad.len(), out);
                out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
            }
            out.push_str(&"  ".repeat(indent));
            out.push(']');
        }
        Json::Obj(members) => {
            out.push_str("{\n");
            for (i, (k, item)) in members.iter().enumerate() {
                out.push_str(&pad);
                let key = quoted(k);
                out.push_str(&key);
                out.push_str(": ");
                write_pretty(item, indent + 1, pad.len() + key.len() + 2, out);
                out.push_str(if i + 1 < members.len() { ",\n" } else { "\n" });
            }
            out.push_str(&"  ".repeat(indent));
            out.push('}');
        }
        _ => out.push_str(&compact),
    }
}
