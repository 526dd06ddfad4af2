//! Loading and validating the policy (the plugin configuration).
//!
//! Validation collects every problem rather than stopping at the first, and
//! each message names the JSON path, the value found and what was expected,
//! because the person reading it is looking at an Envoy log, not a debugger.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::caller::{CallerSettings, GrantFrom};
use crate::conditions::{ArgPath, Condition, Op, Path};
use crate::glob::Glob;
use crate::json::{self, Node, Value};
use crate::pins::{OnMismatch, Pins, Unpinned};
use crate::policy::{
    Action, Algorithm, ApprovalService, ArgRule, AuditLevel, Counter, ErrorStyle, FailureMode,
    GrantSource, HeaderMode, ItemRules, Policy, RateLimitService, Risk, RuleKind, Scope, Settings,
    ToolPattern, ToolRule, Window,
};

const ALGORITHMS: [(&str, Algorithm); 2] =
    [("sliding", Algorithm::Sliding), ("fixed", Algorithm::Fixed)];

const SCOPES: [(&str, Scope); 4] = [
    ("global", Scope::Global),
    ("grant", Scope::Grant),
    ("session", Scope::Session),
    ("source", Scope::Source),
];

const WINDOW_TEXT: &str = "one of \"second\", \"minute\", \"hour\", \"day\", \"week\", \"month\" or its length in seconds (1, 60, 3600, 86400, 604800, 2592000)";

/// `mode` values: whether refusals are only recorded (`shadow`).
const MODES: [(&str, bool); 2] = [("enforce", false), ("shadow", true)];

const TOOL_ACTIONS: [(&str, Action); 3] = [
    ("allow", Action::Allow),
    ("deny", Action::Deny),
    ("approve", Action::Approve),
];

/// One problem in a policy, located by JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Parses and validates a policy; returns every problem found.
pub fn load(text: &[u8]) -> Result<Policy, Vec<ConfigError>> {
    load_with_base(text, &Settings::default())
}

/// Like [`load`], with `base` as the settings the policy's own `settings`
/// object overrides key by key (the base comes from the Envoy VM config).
pub fn load_with_base(text: &[u8], base: &Settings) -> Result<Policy, Vec<ConfigError>> {
    let doc = parse_doc(text, "policy")?;
    let mut v = Validator {
        source: doc.source,
        errors: Vec::new(),
        base: base.clone(),
        default_algorithm: base.limit_algorithm,
        tool_key: String::new(),
        intercept_used: false,
    };
    let policy = v.policy(&doc.root);
    match policy {
        Some(p) if v.errors.is_empty() => Ok(p),
        _ => Err(v.errors),
    }
}

/// Parses filter settings given on their own (the Envoy `vm_config`
/// configuration): the same keys as a policy's `settings` object.
pub fn load_settings(text: &[u8]) -> Result<Settings, Vec<ConfigError>> {
    let doc = parse_doc(text, "vm_config")?;
    let mut v = Validator {
        source: doc.source,
        errors: Vec::new(),
        base: Settings::default(),
        default_algorithm: Algorithm::default(),
        tool_key: String::new(),
        intercept_used: false,
    };
    let settings = v.settings(&doc.root, "vm_config");
    if v.errors.is_empty() {
        Ok(settings)
    } else {
        Err(v.errors)
    }
}

fn parse_doc<'a>(text: &'a [u8], what: &str) -> Result<json::Document<'a>, Vec<ConfigError>> {
    json::parse(text).map_err(|e| {
        vec![ConfigError {
            path: what.to_string(),
            message: format!("not valid JSON: {}", e.located(text)),
        }]
    })
}

/// Shows a value in an error message: its JSON text, shortened.
fn shown(node: &Node<'_>, source: &str) -> String {
    let raw = node.raw(source);
    if raw.chars().count() > 60 {
        let cut: String = raw.chars().take(57).collect();
        format!("{cut}...")
    } else {
        raw.to_string()
    }
}

/// `base.key`, or `base["key"]` when the key is not a plain identifier.
pub fn child(base: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if plain {
        format!("{base}.{key}")
    } else {
        format!("{base}[{}]", crate::write::quoted(key))
    }
}

/// Turns the policy document into a [`Policy`], collecting every error.
/// Its methods run once per configuration, never per request, and are kept
/// out of line (`#[inline(never)]`): inlined at opt-level 3 they made
/// functions of 10-20 KB of Wasm, and Envoy's V8 compiles each function
/// up front with memory that grows with its size (bench/README.md "Envoy
/// memory").
struct Validator<'s> {
    source: &'s str,
    errors: Vec<ConfigError>,
    /// Settings the policy's `settings` object starts from.
    base: Settings,
    /// Algorithm of limits that do not name one (the settings' choice).
    default_algorithm: Algorithm,
    /// The `tools` key being read (`"*"` for `all_tools`), for Intercept's
    /// counter names.
    tool_key: String,
    /// Some `rules` list is in Intercept's vocabulary.
    intercept_used: bool,
}

impl Validator<'_> {
    #[inline(never)]
    fn error(&mut self, path: &str, message: String) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            message,
        });
    }

    #[inline(never)]
    fn wrong(&mut self, path: &str, node: &Node<'_>, expected: &str) {
        let got = shown(node, self.source);
        self.error(path, format!("got {got}, expected {expected}"));
    }

    /// Checks `node` is an object whose keys are all in `allowed`.
    #[inline(never)]
    fn object<'n, 'a>(
        &mut self,
        node: &'n Node<'a>,
        path: &str,
        allowed: &[&str],
    ) -> Option<&'n Node<'a>> {
        let members = match node.as_object() {
            Some(m) => m,
            None => {
                self.wrong(path, node, "an object");
                return None;
            }
        };
        for (key, _) in members {
            if !allowed.contains(&key.as_ref()) {
                let list = allowed
                    .iter()
                    .map(|k| format!("\"{k}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.error(
                    &child(path, key),
                    format!("unknown key, expected one of {list}"),
                );
            }
        }
        Some(node)
    }

    #[inline(never)]
    fn string(&mut self, node: &Node<'_>, path: &str) -> Option<String> {
        match node.as_str() {
            Some("") => {
                self.wrong(path, node, "a non-empty string");
                None
            }
            Some(s) => Some(s.to_string()),
            None => {
                self.wrong(path, node, "a string");
                None
            }
        }
    }

    #[inline(never)]
    fn choice<T: Copy>(&mut self, node: &Node<'_>, path: &str, options: &[(&str, T)]) -> Option<T> {
        let found = node
            .as_str()
            .and_then(|s| options.iter().find(|(name, _)| *name == s));
        match found {
            Some((_, value)) => Some(*value),
            None => {
                let list = options
                    .iter()
                    .map(|(n, _)| format!("\"{n}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                self.wrong(path, node, &format!("one of {list}"));
                None
            }
        }
    }

    /// A positive integer no larger than `limit`.
    #[inline(never)]
    fn positive_int(&mut self, node: &Node<'_>, path: &str, limit: u64) -> Option<u64> {
        let parsed = match node.value {
            Value::Number(text) => text.parse::<u64>().ok(),
            _ => None,
        };
        match parsed {
            Some(n) if n >= 1 && n <= limit => Some(n),
            _ => {
                self.wrong(path, node, &format!("an integer from 1 to {limit}"));
                None
            }
        }
    }

    #[inline(never)]
    fn boolean(&mut self, node: &Node<'_>, path: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong(path, node, "true or false");
                None
            }
        }
    }

    #[inline(never)]
    fn policy(&mut self, root: &Node<'_>) -> Option<Policy> {
        let path = "policy";
        let root = self.object(
            root,
            path,
            &[
                "version",
                "description",
                "default",
                "tools",
                "hide",
                "settings",
                "risk_actions",
                "approval",
                "rate_limit_service",
                "resources",
                "prompts",
                "all_tools",
                "approvals",
                "approval_timeout",
                "pins",
            ],
        )?;
        match root.get("version") {
            Some(v) if v.as_str() == Some("1") => {}
            Some(v) => self.wrong("policy.version", v, "\"1\""),
            None => self.error("policy.version", "missing, expected \"1\"".to_string()),
        }
        let description = root.get("description").and_then(|d| {
            let text = d.as_str().map(str::to_string);
            if text.is_none() {
                self.wrong("policy.description", d, "a string");
            }
            text
        });
        let default = match root.get("default") {
            Some(node) => self
                .choice(
                    node,
                    "policy.default",
                    &[("allow", Action::Allow), ("deny", Action::Deny)],
                )
                .unwrap_or(Action::Deny),
            None => Action::Allow,
        };
        let mut settings = match root.get("settings") {
            Some(node) => self.settings(node, "policy.settings"),
            None => self.base.clone(),
        };
        self.default_algorithm = settings.limit_algorithm;
        let (hide, hide_patterns, hide_all) = match root.get("hide") {
            Some(node) => self.hide(node),
            None => (HashSet::new(), Vec::new(), false),
        };
        let mut counters = CounterTable::default();
        let mut tools = HashMap::new();
        let mut patterns = Vec::new();
        let mut wildcard = ToolRule::default();
        // A missing `tools` is legal: under default deny nothing can be called.
        if let Some(node) = root.get("tools") {
            if let Some(members) = node.as_object() {
                for (name, rule_node) in members {
                    let rule_path = child("policy.tools", name);
                    if name.is_empty() {
                        self.error(&rule_path, "tool name must not be empty".to_string());
                        continue;
                    }
                    self.tool_key = name.to_string();
                    let rule = self.tool_rule(rule_node, &rule_path, &mut counters);
                    if name == "*" {
                        wildcard = rule;
                    } else if name.contains('*') {
                        match Glob::parse(name) {
                            Ok(glob) => patterns.push((ToolPattern { glob, rule }, rule_path)),
                            Err(e) => self.error(&rule_path, format!("invalid pattern: {e}")),
                        }
                    } else {
                        tools.insert(name.to_string(), rule);
                    }
                }
            } else {
                self.wrong(
                    "policy.tools",
                    node,
                    "an object mapping tool names to rules",
                );
            }
        }
        let patterns = self.order_patterns(patterns);
        // PolicyLayer's `all_tools` is the `"*"` entry.
        if let Some(node) = root.get("all_tools") {
            if root.get("tools").and_then(|t| t.get("*")).is_some() {
                self.error(
                    "policy.all_tools",
                    "given together with tools.\"*\": both name the rules for every tool; keep one"
                        .to_string(),
                );
            } else {
                self.tool_key = "*".to_string();
                wildcard = self.tool_rule(node, "policy.all_tools", &mut counters);
            }
        }
        let resources = root
            .get("resources")
            .map(|n| self.item_rules(n, "policy.resources", &mut counters));
        let prompts = root
            .get("prompts")
            .map(|n| self.item_rules(n, "policy.prompts", &mut counters));
        let pins = root.get("pins").map(|n| self.pins(n, &settings));
        let risk_actions = match root.get("risk_actions") {
            Some(node) => self.risk_actions(node),
            None => HashMap::new(),
        };
        self.intercept_top_level(root, &mut settings);
        let approval = root.get("approval").and_then(|n| self.approval(n));
        // Shadowed calls never ask the approver, so only enforced ones need it.
        let all_shadow = settings.shadow || wildcard.shadow;
        let approves = !all_shadow
            && (tools
                .values()
                .chain(patterns.iter().map(|p| &p.rule))
                .chain([&wildcard])
                .any(|t| {
                    !t.shadow
                        && (t.action == Action::Approve
                            || t.rules.iter().any(|r| r.action == Action::Approve))
                })
                || risk_actions.values().any(|a| *a == Action::Approve)
                || [&resources, &prompts].into_iter().flatten().any(|section| {
                    section
                        .exact
                        .values()
                        .chain(section.patterns.iter().map(|(_, r)| r))
                        .any(|r| !r.shadow && r.action == Action::Approve)
                }));
        if approves && approval.is_none() && root.get("approval").is_none() {
            self.error(
                "policy.approval",
                "missing, expected {\"cluster\": \"<Envoy cluster of the approval service>\"} because the policy uses action \"approve\"".to_string(),
            );
        }
        let rate_limit_service = root
            .get("rate_limit_service")
            .and_then(|n| self.rate_limit_service(n));
        if rate_limit_service.is_none() && root.get("rate_limit_service").is_none() {
            if let Some(c) = counters.list.iter().find(|c| c.global) {
                let at = counters
                    .first_seen
                    .get(&c.name)
                    .cloned()
                    .unwrap_or_default();
                self.error(
                    &child(&at, "global"),
                    "true, but the policy has no rate_limit_service: expected policy.rate_limit_service.cluster".to_string(),
                );
            }
        }
        Some(Policy {
            description,
            default,
            rate_limit_service,
            tools,
            patterns,
            wildcard,
            hide,
            hide_patterns,
            hide_all,
            counters: counters.list,
            risk_actions,
            resources,
            prompts,
            pins,
            approval,
            settings,
        })
    }

    #[inline(never)]
    fn hide(&mut self, node: &Node<'_>) -> (HashSet<String>, Vec<Glob>, bool) {
        let mut set = HashSet::new();
        let mut globs: Vec<Glob> = Vec::new();
        let mut all = false;
        let Some(items) = node.as_array() else {
            self.wrong("policy.hide", node, "an array of tool names");
            return (set, globs, all);
        };
        for (i, item) in items.iter().enumerate() {
            let path = format!("policy.hide[{i}]");
            if let Some(name) = self.string(item, &path) {
                if name == "*" {
                    all = true;
                } else if name.contains('*') {
                    match Glob::parse(&name) {
                        Ok(g) if globs.contains(&g) => {
                            self.error(&path, format!("duplicate entry \"{name}\""))
                        }
                        Ok(g) => globs.push(g),
                        Err(e) => self.error(&path, format!("invalid pattern: {e}")),
                    }
                } else if !set.insert(name.clone()) {
                    self.error(&path, format!("duplicate entry \"{name}\""));
                }
            }
        }
        (set, globs, all)
    }

    /// Sorts pattern entries most specific first (ties by key) and refuses
    /// overlapping ones (see [`overlap_errors`]).
    #[inline(never)]
    fn order_patterns(&mut self, mut found: Vec<(ToolPattern, String)>) -> Vec<ToolPattern> {
        let entries: Vec<(&Glob, &ToolRule, &str)> = found
            .iter()
            .map(|(p, path)| (&p.glob, &p.rule, path.as_str()))
            .collect();
        let errors = overlap_errors(&entries, "tool names");
        self.errors.extend(errors);
        found.sort_by(|(a, _), (b, _)| {
            b.glob
                .specificity()
                .cmp(&a.glob.specificity())
                .then_with(|| a.glob.text.cmp(&b.glob.text))
        });
        found.into_iter().map(|(p, _)| p).collect()
    }

    /// A `resources` or `prompts` section: pattern -> rule with the actions
    /// of a tool rule (argument rules and risk are for tools only).
    #[inline(never)]
    fn item_rules(
        &mut self,
        node: &Node<'_>,
        path: &str,
        counters: &mut CounterTable,
    ) -> ItemRules {
        let mut section = ItemRules::default();
        let Some(members) = node.as_object() else {
            self.wrong(
                path,
                node,
                "an object mapping patterns (`*` matches anything) to rules",
            );
            return section;
        };
        let mut patterns: Vec<(Glob, ToolRule, String)> = Vec::new();
        for (key, rule_node) in members {
            let rule_path = child(path, key);
            if key.is_empty() {
                self.error(&rule_path, "pattern must not be empty".to_string());
                continue;
            }
            for tools_only in ["rules", "risk"] {
                if rule_node.get(tools_only).is_some() {
                    self.error(
                        &child(&rule_path, tools_only),
                        "only tool rules take this key; expected one of action, reason, limits, description, mode".to_string(),
                    );
                }
            }
            let rule = self.tool_rule(rule_node, &rule_path, counters);
            if key.contains('*') {
                if let Ok(glob) = Glob::parse(key) {
                    patterns.push((glob, rule.clone(), rule_path.clone()));
                }
            }
            if let Err(e) = section.insert(key, rule) {
                self.error(&rule_path, e);
            }
        }
        let entries: Vec<(&Glob, &ToolRule, &str)> = patterns
            .iter()
            .map(|(g, r, p)| (g, r, p.as_str()))
            .collect();
        let what = if path.ends_with("prompts") {
            "prompt names"
        } else {
            "URIs"
        };
        let errors = overlap_errors(&entries, what);
        self.errors.extend(errors);
        section
    }

    #[inline(never)]
    fn tool_rule(&mut self, node: &Node<'_>, path: &str, counters: &mut CounterTable) -> ToolRule {
        let mut rule = ToolRule::default();
        let Some(obj) = self.object(
            node,
            path,
            &[
                "action",
                "reason",
                "limits",
                "description",
                "risk",
                "rules",
                "mode",
                "rate_limit",
                "require",
                "deny_if",
            ],
        ) else {
            return rule;
        };
        // PolicyLayer's forms: `require` / `deny_if` directly on the tool
        // (empty lists say nothing), and the FAQ `rate_limit` block.
        for (key, require) in [("require", true), ("deny_if", false)] {
            let Some(n) = obj.get(key) else { continue };
            if n.as_array().is_some_and(|a| a.is_empty()) {
                continue;
            }
            if let Some(conditions) = self.conditions(n, &child(path, key)) {
                rule.rules.push(ArgRule {
                    name: key.to_string(),
                    kind: if require {
                        RuleKind::Require(conditions)
                    } else {
                        RuleKind::DenyIf(conditions)
                    },
                    action: Action::Deny,
                    risk: None,
                    reason: None,
                });
            }
        }
        if let Some(n) = obj.get("rate_limit") {
            let rpath = child(path, "rate_limit");
            if let Some(counter) = self.rate_limit_block(n, &rpath) {
                match counters.add(counter, &rpath) {
                    Ok(idx) => rule.limits.push(idx),
                    Err(e) => self.errors.push(e),
                }
            }
        }
        if let Some(m) = obj.get("mode") {
            rule.shadow = self
                .choice(m, &child(path, "mode"), &MODES)
                .unwrap_or(false);
        }
        if let Some(a) = obj.get("action") {
            rule.action = self
                .choice(a, &child(path, "action"), &TOOL_ACTIONS)
                .unwrap_or(Action::Deny);
        }
        if let Some(r) = obj.get("risk") {
            rule.risk = self.risk_name(r, &child(path, "risk"));
        }
        if let Some(r) = obj.get("rules") {
            let rpath = child(path, "rules");
            if intercept::is_intercept_rules(r) {
                let tool = self.tool_key.clone();
                self.intercept_rules(r, &rpath, &tool, counters, &mut rule);
            } else {
                // After the tool-level `require` / `deny_if`, never instead of them.
                let own = rule.rules.len();
                for (i, arg_rule) in self.arg_rules(r, &rpath).into_iter().enumerate() {
                    if rule.rules.iter().take(own).any(|o| o.name == arg_rule.name) {
                        self.error(
                            &child(&format!("{rpath}[{i}]"), "name"),
                            format!(
                                "rule name \"{}\" is taken by the tool's own \"{}\" key; rename the rule",
                                arg_rule.name, arg_rule.name
                            ),
                        );
                    }
                    rule.rules.push(arg_rule);
                }
            }
        }
        if let Some(r) = obj.get("reason") {
            rule.reason = self.string(r, &child(path, "reason"));
        }
        if let Some(d) = obj.get("description") {
            rule.description.0 = d.as_str().map(str::to_string);
            if rule.description.0.is_none() {
                self.wrong(&child(path, "description"), d, "a string");
            }
        }
        if let Some(l) = obj.get("limits") {
            let lpath = child(path, "limits");
            match l.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        let ipath = format!("{lpath}[{i}]");
                        if let Some(counter) = self.limit(item, &ipath) {
                            match counters.add(counter, &ipath) {
                                Ok(idx) => {
                                    if !rule.limits.contains(&idx) {
                                        rule.limits.push(idx);
                                    }
                                }
                                Err(e) => self.errors.push(e),
                            }
                        }
                    }
                }
                None => self.wrong(&lpath, l, "an array of limits"),
            }
        }
        rule
    }

    #[inline(never)]
    fn limit(&mut self, node: &Node<'_>, path: &str) -> Option<Counter> {
        let obj = self.object(
            node,
            path,
            &[
                "counter",
                "window",
                "max",
                "scope",
                "increment_from",
                "default_increment",
                "global",
                "algorithm",
                "reason",
            ],
        )?;
        let algorithm = match obj.get("algorithm") {
            Some(a) => self.choice(a, &child(path, "algorithm"), &ALGORITHMS),
            None => Some(self.default_algorithm),
        };
        let global = match obj.get("global") {
            Some(g) => self.boolean(g, &child(path, "global")).unwrap_or(false),
            None => false,
        };
        let increment_from = obj.get("increment_from").and_then(|n| {
            let p = child(path, "increment_from");
            let text = self.string(n, &p)?;
            match ArgPath::parse(&text) {
                Ok(ap) => Some(ap),
                Err(e) => {
                    self.wrong(
                        &p,
                        n,
                        &format!("an argument path like \"args.a.b[0]\" ({e})"),
                    );
                    None
                }
            }
        });
        let default_increment_milli = obj.get("default_increment").and_then(|n| {
            let p = child(path, "default_increment");
            match n.as_f64() {
                Some(v) if (0.0..=1e12).contains(&v) => Some(to_milli(v)),
                _ => {
                    self.wrong(&p, n, "a number >= 0");
                    None
                }
            }
        });
        if default_increment_milli.is_some() && increment_from.is_none() {
            self.error(
                &child(path, "default_increment"),
                "only meaningful with increment_from".to_string(),
            );
        }
        let name = match obj.get("counter") {
            Some(n) => match self.string(n, &child(path, "counter")) {
                // `~` starts the shadow budgets' names (see engine::SHADOW_PREFIX).
                Some(s) if s.starts_with('~') => {
                    self.wrong(
                        &child(path, "counter"),
                        n,
                        "a name not starting with \"~\" (reserved for shadow budgets)",
                    );
                    None
                }
                other => other,
            },
            None => {
                self.error(
                    &child(path, "counter"),
                    "missing, expected a counter name".into(),
                );
                None
            }
        };
        let (window, max) = self.window_and_max(obj, path);
        let scope = match obj.get("scope") {
            Some(s) => self.choice(s, &child(path, "scope"), &SCOPES),
            None => Some(Scope::Global),
        };
        let reason = match obj.get("reason") {
            Some(r) => Some(self.string(r, &child(path, "reason"))?),
            None => None,
        };
        Some(Counter {
            name: name?,
            window: window?,
            max: max?,
            scope: scope?,
            algorithm: algorithm?,
            increment_from,
            default_increment_milli,
            global,
            reason,
        })
    }

    /// A risk category name in any case (`Destructive`, PolicyLayer's
    /// spelling, is `destructive`).
    #[inline(never)]
    fn risk_name(&mut self, node: &Node<'_>, path: &str) -> Option<Risk> {
        let found = node.as_str().and_then(|s| {
            Risk::ALL
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(s))
                .map(|(_, r)| *r)
        });
        if found.is_none() {
            self.wrong(
                path,
                node,
                "one of \"read\", \"write\", \"execute\", \"destructive\" (any case)",
            );
        }
        found
    }

    /// A limit's required `window` and `max` (both forms of limit share them).
    #[inline(never)]
    fn window_and_max(&mut self, obj: &Node<'_>, path: &str) -> (Option<Window>, Option<u64>) {
        let window = match obj.get("window") {
            Some(w) => self.window(w, &child(path, "window")),
            None => {
                self.error(
                    &child(path, "window"),
                    format!("missing, expected {WINDOW_TEXT}"),
                );
                None
            }
        };
        let max = match obj.get("max") {
            Some(m) => self.positive_int(m, &child(path, "max"), 1_000_000_000),
            None => {
                self.error(
                    &child(path, "max"),
                    "missing, expected an integer >= 1".into(),
                );
                None
            }
        };
        (window, max)
    }

    /// A window by name, or in seconds when that is one named window's
    /// length (PolicyLayer's `"window": 60`).
    #[inline(never)]
    fn window(&mut self, node: &Node<'_>, path: &str) -> Option<Window> {
        let found = match (node.as_str(), node.as_f64()) {
            (Some(name), _) => Window::ALL.iter().find(|w| w.name() == name).copied(),
            (None, Some(secs)) => Window::ALL
                .iter()
                .find(|w| w.seconds() as f64 == secs)
                .copied(),
            _ => None,
        };
        if found.is_none() {
            self.wrong(path, node, WINDOW_TEXT);
        }
        found
    }

    /// PolicyLayer's FAQ limit on one tool (or `all_tools`):
    /// `{"max": 10, "window": 60}`, counted per grant unless `scope` says
    /// otherwise, in a counter named after where it stands.
    #[inline(never)]
    fn rate_limit_block(&mut self, node: &Node<'_>, path: &str) -> Option<Counter> {
        let obj = self.object(node, path, &["max", "window", "scope"])?;
        let (window, max) = self.window_and_max(obj, path);
        let scope = match obj.get("scope") {
            Some(s) => self.choice(s, &child(path, "scope"), &SCOPES),
            None => Some(Scope::Grant),
        };
        Some(Counter {
            name: path.strip_prefix("policy.").unwrap_or(path).to_string(),
            window: window?,
            max: max?,
            scope: scope?,
            algorithm: self.default_algorithm,
            increment_from: None,
            default_increment_milli: None,
            global: false,
            reason: None,
        })
    }

    /// `pins`: tool name → `sha256:<64 hex>` (or the bare hex).
    #[inline(never)]
    fn pins(&mut self, node: &Node<'_>, settings: &Settings) -> Pins {
        let mut tools = HashMap::new();
        match node.as_object() {
            Some(members) => {
                for (name, value) in members {
                    let at = child("policy.pins", name);
                    if name.is_empty() {
                        self.error(&at, "tool name must not be empty".to_string());
                        continue;
                    }
                    match value.as_str().and_then(crate::pins::parse_pin) {
                        Some(hex) => {
                            tools.insert(name.to_string(), hex);
                        }
                        None => self.wrong(
                            &at,
                            value,
                            "\"sha256:\" followed by 64 hex digits (`mcp-policy pin` prints them)",
                        ),
                    }
                }
            }
            None => self.wrong(
                "policy.pins",
                node,
                "an object mapping tool names to \"sha256:<hex>\" pins",
            ),
        }
        Pins {
            tools,
            on_mismatch: settings.pin_mismatch,
            unpinned: settings.unpinned,
        }
    }

    #[inline(never)]
    fn risk_actions(&mut self, node: &Node<'_>) -> HashMap<Risk, Action> {
        let mut out = HashMap::new();
        let path = "policy.risk_actions";
        let Some(members) = node.as_object() else {
            self.wrong(path, node, "an object mapping risk categories to actions");
            return out;
        };
        for (name, a) in members {
            let at = child(path, name);
            let Some(risk) = Risk::ALL
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, r)| *r)
            else {
                self.error(
                    &at,
                    "unknown key, expected one of \"read\", \"write\", \"execute\", \"destructive\" (any case)".to_string(),
                );
                continue;
            };
            if out.contains_key(&risk) {
                self.error(
                    &at,
                    "the same category is given twice (names are case-insensitive)".to_string(),
                );
                continue;
            }
            if let Some(action) = self.choice(a, &at, &TOOL_ACTIONS) {
                out.insert(risk, action);
            }
        }
        out
    }

    #[inline(never)]
    fn rate_limit_service(&mut self, node: &Node<'_>) -> Option<RateLimitService> {
        let path = "policy.rate_limit_service";
        let obj = self.object(
            node,
            path,
            &[
                "cluster",
                "domain",
                "timeout_ms",
                "failure_mode",
                "all_limits",
                "include_tool",
            ],
        )?;
        let cluster = match obj.get("cluster") {
            Some(c) => self.string(c, &child(path, "cluster")),
            None => {
                self.error(
                    &child(path, "cluster"),
                    "missing, expected the name of the Envoy cluster of the rate limit service"
                        .to_string(),
                );
                None
            }
        };
        let domain = match obj.get("domain") {
            Some(d) => self.string(d, &child(path, "domain")),
            None => Some("mcp_policy".to_string()),
        };
        let timeout_ms = match obj.get("timeout_ms") {
            Some(t) => self.positive_int(t, &child(path, "timeout_ms"), 60_000),
            None => Some(500),
        };
        let failure_mode = match obj.get("failure_mode") {
            Some(f) => self.choice(
                f,
                &child(path, "failure_mode"),
                &[("deny", FailureMode::Deny), ("local", FailureMode::Local)],
            ),
            None => Some(FailureMode::Deny),
        };
        let all_limits = match obj.get("all_limits") {
            Some(a) => self.boolean(a, &child(path, "all_limits")),
            None => Some(false),
        };
        let include_tool = match obj.get("include_tool") {
            Some(a) => self.boolean(a, &child(path, "include_tool")),
            None => Some(true),
        };
        Some(RateLimitService {
            include_tool: include_tool?,
            cluster: cluster?,
            domain: domain?,
            timeout_ms: timeout_ms?,
            failure_mode: failure_mode?,
            all_limits: all_limits?,
        })
    }

    #[inline(never)]
    fn approval(&mut self, node: &Node<'_>) -> Option<ApprovalService> {
        let path = "policy.approval";
        let obj = self.object(node, path, &["cluster", "authority", "path", "timeout_ms"])?;
        let cluster = match obj.get("cluster") {
            Some(c) => self.string(c, &child(path, "cluster")),
            None => {
                self.error(
                    &child(path, "cluster"),
                    "missing, expected the name of the Envoy cluster of the approval service"
                        .to_string(),
                );
                None
            }
        }?;
        let authority = match obj.get("authority") {
            Some(a) => self.string(a, &child(path, "authority"))?,
            None => cluster.clone(),
        };
        let req_path = match obj.get("path") {
            Some(p) => {
                let text = self.string(p, &child(path, "path"))?;
                if !text.starts_with('/') {
                    self.wrong(&child(path, "path"), p, "a path starting with \"/\"");
                    return None;
                }
                text
            }
            None => "/approve".to_string(),
        };
        let timeout_ms = match obj.get("timeout_ms") {
            Some(t) => self.positive_int(t, &child(path, "timeout_ms"), 3_600_000)?,
            None => 30_000,
        };
        Some(ApprovalService {
            cluster,
            authority,
            path: req_path,
            timeout_ms,
        })
    }

    #[inline(never)]
    fn arg_rules(&mut self, node: &Node<'_>, path: &str) -> Vec<ArgRule> {
        let mut out: Vec<ArgRule> = Vec::new();
        let Some(items) = node.as_array() else {
            self.wrong(path, node, "an array of rules");
            return out;
        };
        for (i, item) in items.iter().enumerate() {
            let rpath = format!("{path}[{i}]");
            if let Some(rule) = self.arg_rule(item, &rpath) {
                if out.iter().any(|r| r.name == rule.name) {
                    self.error(
                        &child(&rpath, "name"),
                        format!("duplicate rule name \"{}\"", rule.name),
                    );
                }
                out.push(rule);
            }
        }
        out
    }

    #[inline(never)]
    fn arg_rule(&mut self, node: &Node<'_>, path: &str) -> Option<ArgRule> {
        let obj = self.object(
            node,
            path,
            &[
                "name", "deny_if", "require", "when", "action", "risk", "reason",
            ],
        )?;
        let name = match obj.get("name") {
            Some(n) => self.string(n, &child(path, "name")),
            None => {
                self.error(
                    &child(path, "name"),
                    "missing, expected a rule name".to_string(),
                );
                None
            }
        };
        let kinds: Vec<&str> = ["deny_if", "require", "when"]
            .into_iter()
            .filter(|k| obj.get(k).is_some())
            .collect();
        let kind_name = match kinds.as_slice() {
            [one] => *one,
            _ => {
                self.error(
                    path,
                    format!(
                        "expected exactly one of \"deny_if\", \"require\", \"when\", got {}",
                        if kinds.is_empty() {
                            "none".to_string()
                        } else {
                            kinds.join(", ")
                        }
                    ),
                );
                return None;
            }
        };
        let cpath = child(path, kind_name);
        let conds = self.conditions(obj.get(kind_name)?, &cpath);
        let action = match obj.get("action") {
            Some(a) => self.choice(
                a,
                &child(path, "action"),
                &[("deny", Action::Deny), ("approve", Action::Approve)],
            ),
            None => Some(Action::Deny),
        };
        let risk = match obj.get("risk") {
            Some(r) => self.risk_name(r, &child(path, "risk")),
            None => None,
        };
        let reason = match obj.get("reason") {
            Some(r) => self.string(r, &child(path, "reason")),
            None => None,
        };
        let kind = match kind_name {
            "deny_if" => RuleKind::DenyIf(conds?),
            "require" => RuleKind::Require(conds?),
            _ => {
                if risk.is_none() {
                    self.error(
                        &child(path, "risk"),
                        "missing, a \"when\" rule classifies calls: expected one of \"read\", \"write\", \"execute\", \"destructive\"".to_string(),
                    );
                }
                if obj.get("action").is_some() {
                    self.error(
                        &child(path, "action"),
                        "a \"when\" rule only classifies; use deny_if or require to refuse"
                            .to_string(),
                    );
                }
                RuleKind::When(conds?)
            }
        };
        if risk.is_some() && !matches!(kind, RuleKind::When(_)) {
            self.error(
                &child(path, "risk"),
                "only \"when\" rules carry a risk".to_string(),
            );
        }
        Some(ArgRule {
            name: name?,
            kind,
            action: action?,
            risk,
            reason,
        })
    }

    #[inline(never)]
    fn conditions(&mut self, node: &Node<'_>, path: &str) -> Option<Vec<Condition>> {
        let Some(items) = node.as_array().filter(|i| !i.is_empty()) else {
            self.wrong(path, node, "a non-empty array of conditions");
            return None;
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            match self.condition(item, &format!("{path}[{i}]")) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    #[inline(never)]
    fn condition(&mut self, node: &Node<'_>, path: &str) -> Option<Condition> {
        let obj = self.object(node, path, &["path", "op", "value"])?;
        let ppath = child(path, "path");
        let arg_path = match obj.get("path") {
            Some(p) => {
                let text = self.string(p, &ppath)?;
                match Path::parse(&text) {
                    Ok(ap) => Some(ap),
                    Err(e) => {
                        self.wrong(
                            &ppath,
                            p,
                            &format!("a path like \"args.a.b[0]\" or \"caller.claims.role\" ({e})"),
                        );
                        None
                    }
                }
            }
            None => {
                self.error(
                    &ppath,
                    "missing, expected a path like \"args.action\"".to_string(),
                );
                None
            }
        };
        let opath = child(path, "op");
        let op_name = match obj.get("op") {
            Some(o) => {
                let ops: Vec<(&str, &str)> = Op::NAMES.iter().map(|n| (*n, *n)).collect();
                self.choice(o, &opath, &ops)
            }
            None => {
                self.error(
                    &opath,
                    format!("missing, expected one of {}", Op::NAMES.join(", ")),
                );
                None
            }
        };
        let vpath = child(path, "value");
        let Some(value) = obj.get("value") else {
            self.error(&vpath, "missing".to_string());
            return None;
        };
        let op = match Op::build(op_name?, value) {
            Ok(op) => op,
            Err(expected) => {
                self.wrong(&vpath, value, &expected);
                return None;
            }
        };
        Some(Condition {
            path: arg_path?,
            op,
        })
    }

    #[inline(never)]
    fn settings(&mut self, node: &Node<'_>, path: &str) -> Settings {
        let mut s = self.base.clone();
        let Some(obj) = self.object(
            node,
            path,
            &[
                "max_body_bytes",
                "max_depth",
                "max_batch",
                "error_style",
                "header_mode",
                "grant_header",
                "grant_property",
                "refund_on_error",
                "counter_slots",
                "limit_algorithm",
                "grant_hash_key",
                "audit",
                "require_grant",
                "hold_body_timeout_ms",
                "mode",
                "caller_claims",
                "require_caller",
                "grant_from",
                "pin_mismatch",
                "unpinned",
            ],
        ) else {
            return s;
        };
        if let Some(n) = obj.get("pin_mismatch") {
            if let Some(v) = self.choice(
                n,
                &child(path, "pin_mismatch"),
                &[("refuse", OnMismatch::Refuse), ("flag", OnMismatch::Flag)],
            ) {
                s.pin_mismatch = v;
            }
        }
        if let Some(n) = obj.get("unpinned") {
            if let Some(v) = self.choice(
                n,
                &child(path, "unpinned"),
                &[("allow", Unpinned::Allow), ("deny", Unpinned::Deny)],
            ) {
                s.unpinned = v;
            }
        }
        if let Some(n) = obj.get("mode") {
            if let Some(v) = self.choice(n, &child(path, "mode"), &MODES) {
                s.shadow = v;
            }
        }
        self.caller_settings(obj, path, &mut s.caller);
        if let Some(n) = obj.get("max_body_bytes") {
            // Envoy's own buffer limit answers 413 past 1 MiB by default; allow
            // more only up to a sane ceiling.
            if let Some(v) = self.positive_int(n, &child(path, "max_body_bytes"), 64 << 20) {
                s.max_body_bytes = v;
            }
        }
        if let Some(n) = obj.get("max_depth") {
            if let Some(v) = self.positive_int(n, &child(path, "max_depth"), 128) {
                s.max_depth = usize::try_from(v).unwrap_or(json::DEFAULT_MAX_DEPTH);
            }
        }
        if let Some(n) = obj.get("max_batch") {
            let at = child(path, "max_batch");
            if let Some(v) = self.positive_int(n, &at, crate::policy::MAX_BATCH_LIMIT) {
                s.max_batch = usize::try_from(v).unwrap_or(crate::policy::DEFAULT_MAX_BATCH);
            }
        }
        if let Some(n) = obj.get("error_style") {
            if let Some(v) = self.choice(
                n,
                &child(path, "error_style"),
                &[
                    ("jsonrpc", ErrorStyle::JsonRpc),
                    ("tool_result", ErrorStyle::ToolResult),
                    ("intercept", ErrorStyle::Intercept),
                ],
            ) {
                s.error_style = v;
            }
        }
        if let Some(n) = obj.get("header_mode") {
            if let Some(v) = self.choice(
                n,
                &child(path, "header_mode"),
                &[("stream", HeaderMode::Stream), ("hold", HeaderMode::Hold)],
            ) {
                s.header_mode = v;
            }
        }
        match (obj.get("grant_header"), obj.get("grant_property")) {
            (Some(_), Some(_)) => self.error(
                &child(path, "grant_property"),
                "set either grant_header or grant_property, not both".into(),
            ),
            (Some(n), None) => {
                if let Some(h) = self.string(n, &child(path, "grant_header")) {
                    s.grant = GrantSource::Header(h.to_ascii_lowercase());
                }
            }
            (None, Some(n)) => {
                let ppath = child(path, "grant_property");
                let parts: Option<Vec<String>> = n.as_array().and_then(|items| {
                    items
                        .iter()
                        .map(|i| i.as_str().filter(|s| !s.is_empty()).map(str::to_string))
                        .collect()
                });
                match parts {
                    Some(p) if !p.is_empty() => s.grant = GrantSource::Property(p),
                    _ => self.wrong(
                        &ppath,
                        n,
                        "a non-empty array of non-empty strings (an Envoy property path)",
                    ),
                }
            }
            (None, None) => {}
        }
        if let Some(n) = obj.get("refund_on_error") {
            if let Some(v) = self.boolean(n, &child(path, "refund_on_error")) {
                s.refund_on_error = v;
            }
        }
        if let Some(n) = obj.get("counter_slots") {
            if let Some(v) = self.positive_int(n, &child(path, "counter_slots"), 65_536) {
                s.counter_slots = u32::try_from(v).unwrap_or(256);
            }
        }
        if let Some(n) = obj.get("limit_algorithm") {
            if let Some(v) = self.choice(n, &child(path, "limit_algorithm"), &ALGORITHMS) {
                s.limit_algorithm = v;
            }
        }
        if let Some(n) = obj.get("audit") {
            if let Some(v) = self.choice(
                n,
                &child(path, "audit"),
                &[
                    ("off", AuditLevel::Off),
                    ("refused", AuditLevel::Refused),
                    ("all", AuditLevel::All),
                ],
            ) {
                s.audit = v;
            }
        }
        if let Some(n) = obj.get("require_grant") {
            if let Some(v) = self.boolean(n, &child(path, "require_grant")) {
                s.require_grant = v;
            }
        }
        if let Some(n) = obj.get("hold_body_timeout_ms") {
            if let Some(v) = self.positive_int(n, &child(path, "hold_body_timeout_ms"), 600_000) {
                s.hold_body_timeout_ms = v;
            }
        }
        if let Some(n) = obj.get("grant_hash_key") {
            s.grant_hash_key = self.string(n, &child(path, "grant_hash_key"));
        }
        s
    }
}

impl Validator<'_> {
    /// `caller_claims`, `require_caller`, `grant_from` (see `caller.rs`).
    #[inline(never)]
    fn caller_settings(&mut self, obj: &Node<'_>, path: &str, c: &mut CallerSettings) {
        if let Some(n) = obj.get("caller_claims") {
            let ppath = child(path, "caller_claims");
            let parts: Option<Vec<String>> = n.as_array().and_then(|items| {
                items
                    .iter()
                    .map(|i| i.as_str().filter(|s| !s.is_empty()).map(str::to_string))
                    .collect()
            });
            match parts.map(|p| CallerSettings::check_claims_path(&p).map(|()| p)) {
                Some(Ok(p)) => c.claims_path = p,
                Some(Err(expected)) => self.wrong(&ppath, n, &expected),
                None => self.wrong(&ppath, n, "a non-empty array of non-empty strings"),
            }
        }
        if let Some(n) = obj.get("require_caller") {
            if let Some(v) = self.boolean(n, &child(path, "require_caller")) {
                c.require = v;
            }
        }
        if let Some(n) = obj.get("grant_from") {
            let gpath = child(path, "grant_from");
            if let Some(text) = self.string(n, &gpath) {
                match GrantFrom::parse(&text) {
                    Ok(g) => c.grant_from = Some(g),
                    Err(e) => self.wrong(&gpath, n, &e),
                }
            }
        }
    }
}

/// Two pattern entries that some name (`what`: tool names, URIs, prompt
/// names) matches at equal specificity with different rules: which one
/// applied would be arbitrary. One error per pattern (the first conflict
/// found), so the list stays as long as the policy.
fn overlap_errors(found: &[(&Glob, &ToolRule, &str)], what: &str) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (i, (later, later_rule, later_path)) in found.iter().enumerate() {
        for (earlier, earlier_rule, earlier_path) in found.iter().take(i) {
            let specificity = later.specificity();
            if specificity != earlier.specificity() || later_rule == earlier_rule {
                continue;
            }
            if let Some(name) = later.overlap(earlier) {
                errors.push(ConfigError {
                    path: later_path.to_string(),
                    message: format!(
                        "pattern {} and pattern {} at {earlier_path} both match {what} such as {} with the same specificity ({specificity} literal characters) but different rules, so which one applies would be arbitrary: give the overlapping names an exact entry, make one pattern more specific, or give both the same rule",
                        crate::write::quoted(&later.text),
                        crate::write::quoted(&earlier.text),
                        crate::write::quoted(&name),
                    ),
                });
                break;
            }
        }
    }
    errors
}

/// A non-negative amount in thousandths, rounded up (never under-counts).
pub fn to_milli(v: f64) -> u64 {
    let scaled = (v * 1000.0).ceil();
    if scaled.is_finite() && scaled >= 0.0 {
        // Saturating float-to-int conversion.
        scaled as u64
    } else {
        u64::MAX
    }
}

/// A counter definition in words, for conflict messages.
fn describe(c: &Counter) -> String {
    let mut text = format!(
        "{{window {}, max {}, scope {}, algorithm {}",
        c.window.name(),
        c.max,
        c.scope.name(),
        c.algorithm.name()
    );
    if let Some(p) = &c.increment_from {
        text.push_str(&format!(", increment_from {}", p.text));
    }
    if c.global {
        text.push_str(", global");
    }
    if let Some(r) = &c.reason {
        text.push_str(&format!(", reason {r:?}"));
    }
    text.push('}');
    text
}

/// Counters by name: the first definition wins, later ones must agree.
#[derive(Default)]
struct CounterTable {
    list: Vec<Counter>,
    first_seen: HashMap<String, String>,
}

impl CounterTable {
    fn add(&mut self, counter: Counter, path: &str) -> Result<usize, ConfigError> {
        if let Some(idx) = self.list.iter().position(|c| c.name == counter.name) {
            let existing = self.list.get(idx).cloned();
            return match existing {
                Some(c) if c == counter => Ok(idx),
                Some(c) => Err(ConfigError {
                    path: path.to_string(),
                    message: format!(
                        "counter \"{}\" is defined here as {}, but as {} at {}; tools sharing a counter must define it the same way",
                        counter.name,
                        describe(&counter),
                        describe(&c),
                        self.first_seen.get(&counter.name).map(String::as_str).unwrap_or("?")
                    ),
                }),
                None => Ok(idx),
            };
        }
        self.first_seen
            .insert(counter.name.clone(), path.to_string());
        self.list.push(counter);
        Ok(self.list.len() - 1)
    }
}

mod intercept;
#[cfg(test)]
mod intercept_tests;
#[cfg(test)]
mod policylayer_tests;
#[cfg(test)]
mod tests;
