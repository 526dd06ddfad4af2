//! Intercept's rule vocabulary (PolicyLayer/Intercept, its POLICY.md), read
//! into the same policy model as this product's own words.
//!
//! A `rules` list is Intercept's when one of its rules uses Intercept's keys
//! (`conditions`, `on_deny`, `rate_limit`, `state`, `approval_timeout`) or
//! actions (`evaluate`, `require_approval`), or is a bare `action: deny`.
//! Meaning follows Intercept where it defines it:
//! * `evaluate` (the default): every condition must hold, else the call is
//!   refused with `on_deny` (or `Denied by rule "NAME"`). A missing argument
//!   fails every operator except `exists: false`, `neq` and `not_in`
//!   included, and a `null` argument does not exist.
//! * `deny`: the tool is refused; `require_approval`: the approval service
//!   must say yes when every condition holds (always, without conditions).
//! * `state` counts into `<tool>.<counter>` (`_global.<counter>` under `"*"`),
//!   in UTC-aligned windows, by `increment` or an argument's value
//!   (`increment_from`); the rule's `lte`/`lt` condition on its own counter
//!   is the budget. `rate_limit: "N/window"` is the same with counter
//!   `_rate_<window>`.
//! * Denials read `[INTERCEPT POLICY DENIED] <on_deny>` and counters are
//!   given back when the upstream answers a JSON-RPC error, unless
//!   `settings` says otherwise (see `Validator::policy`).

use super::{child, CounterTable, Validator};
use crate::conditions::{Condition, Literal, Op, Path};
use crate::json::Node;
use crate::policy::{
    Action, Algorithm, ArgRule, Counter, ErrorStyle, RuleKind, Scope, Settings, ToolRule, Window,
};

/// Keys only Intercept's rules have.
const INTERCEPT_KEYS: [&str; 5] = [
    "conditions",
    "on_deny",
    "rate_limit",
    "state",
    "approval_timeout",
];

/// Intercept's windows (calendar-aligned in UTC).
const WINDOWS: [(&str, Window); 3] = [
    ("minute", Window::Minute),
    ("hour", Window::Hour),
    ("day", Window::Day),
];

const WINDOW_NAMES: &str = "\"minute\", \"hour\" or \"day\"";

/// Whether a `rules` list is written in Intercept's vocabulary.
pub(super) fn is_intercept_rules(node: &Node<'_>) -> bool {
    let Some(items) = node.as_array() else {
        return false;
    };
    items.iter().any(|rule| {
        let native = ["deny_if", "require", "when"]
            .iter()
            .any(|k| rule.get(k).is_some());
        let action = rule.get("action").and_then(|a| a.as_str());
        INTERCEPT_KEYS.iter().any(|k| rule.get(k).is_some())
            || matches!(action, Some("evaluate") | Some("require_approval"))
            || (!native && action == Some("deny"))
    })
}

/// The parts of one `state.<scope>.<counter>` budget condition.
struct Budget {
    at: String,
    counter: String,
    max: f64,
}

impl Validator<'_> {
    /// Intercept's top-level keys, and its answer and refund behaviour for a
    /// policy whose rules are Intercept's (unless `settings` says otherwise).
    pub(super) fn intercept_top_level(&mut self, root: &Node<'_>, settings: &mut Settings) {
        // Intercept's out-of-band approval queue (webhook notifications) has
        // no counterpart here: approvals go to `approval`'s service. The
        // block is read as an object and otherwise has no effect.
        if let Some(a) = root.get("approvals") {
            if a.as_object().is_none() {
                self.wrong("policy.approvals", a, "an object");
            }
        }
        if let Some(t) = root.get("approval_timeout") {
            if !t.as_str().is_some_and(is_duration) {
                self.wrong(
                    "policy.approval_timeout",
                    t,
                    "a duration like \"30m\", \"1h\" or \"90s\"",
                );
            }
        }
        if !self.intercept_used {
            return;
        }
        let given = |key: &str| root.get("settings").and_then(|s| s.get(key)).is_some();
        if !given("error_style") {
            settings.error_style = ErrorStyle::Intercept;
        }
        if !given("refund_on_error") {
            settings.refund_on_error = true;
        }
    }

    /// Reads an Intercept `rules` list of the tool keyed `tool` into `rule`.
    pub(super) fn intercept_rules(
        &mut self,
        node: &Node<'_>,
        path: &str,
        tool: &str,
        counters: &mut CounterTable,
        rule: &mut ToolRule,
    ) {
        self.intercept_used = true;
        let Some(items) = node.as_array() else {
            self.wrong(path, node, "an array of rules");
            return;
        };
        let scope = if tool == "*" { "_global" } else { tool };
        // Intercept refuses two rules of one tool counting the same counter.
        let mut seen_counters: Vec<(String, usize)> = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let rpath = format!("{path}[{i}]");
            let Some(parsed) = self.intercept_rule(item, &rpath, scope) else {
                continue;
            };
            if let Some(counter) = parsed.counter {
                let short = counter
                    .name
                    .strip_prefix(&format!("{scope}."))
                    .unwrap_or(&counter.name)
                    .to_string();
                if let Some((_, prev)) = seen_counters.iter().find(|(n, _)| *n == short) {
                    self.error(
                        &rpath,
                        format!("duplicate state counter \"{short}\" (also used by rules[{prev}]); use another counter name or window"),
                    );
                    continue;
                }
                seen_counters.push((short, i));
                match counters.add(counter, &rpath) {
                    Ok(idx) => {
                        if !rule.limits.contains(&idx) {
                            rule.limits.push(idx);
                        }
                    }
                    Err(e) => self.errors.push(e),
                }
            }
            if let Some(mut arg_rule) = parsed.arg_rule {
                // Intercept allows two rules of one name; the model names
                // rules uniquely (audit, canonical form), so the later one
                // takes its position too.
                if rule.rules.iter().any(|r| r.name == arg_rule.name) {
                    arg_rule.name = format!("{} (rules[{i}])", arg_rule.name);
                }
                rule.rules.push(arg_rule);
            }
            if let Some((action, reason)) = parsed.whole_tool {
                // The most restrictive whole-tool action wins; the first
                // rule reaching it gives the reason.
                if action > rule.action {
                    rule.action = action;
                    rule.reason = Some(reason);
                }
            }
        }
    }

    #[inline(never)]
    fn intercept_rule(&mut self, node: &Node<'_>, path: &str, scope: &str) -> Option<Parsed> {
        let obj = self.object(
            node,
            path,
            &[
                "name",
                "action",
                "conditions",
                "on_deny",
                "rate_limit",
                "state",
                "approval_timeout",
            ],
        )?;
        let name = match obj.get("name") {
            Some(n) => self.string(n, &child(path, "name")),
            // Intercept names only the rules that are not rate_limit shorthands.
            None if obj.get("rate_limit").is_some() => Some(String::new()),
            None => {
                self.error(
                    &child(path, "name"),
                    "missing, expected a rule name".to_string(),
                );
                None
            }
        };
        let action = match obj.get("action") {
            Some(a) => self.choice(
                a,
                &child(path, "action"),
                &[
                    ("evaluate", Kind::Evaluate),
                    ("deny", Kind::Deny),
                    ("require_approval", Kind::Approval),
                ],
            ),
            None => Some(Kind::Evaluate),
        };
        let on_deny = match obj.get("on_deny") {
            Some(n) => Some(self.string(n, &child(path, "on_deny"))?),
            None => None,
        };
        if let Some(t) = obj.get("approval_timeout") {
            let tpath = child(path, "approval_timeout");
            if action != Some(Kind::Approval) {
                self.error(
                    &tpath,
                    "only rules with action \"require_approval\" take an approval_timeout"
                        .to_string(),
                );
            } else if !t.as_str().is_some_and(is_duration) {
                self.wrong(&tpath, t, "a duration like \"30m\", \"1h\" or \"90s\"");
            }
        }
        let (name, action) = (name?, action?);
        if let Some(rl) = obj.get("rate_limit") {
            return self.rate_limit_rule(obj, rl, path, scope, action, on_deny);
        }
        let cpath = child(path, "conditions");
        let conditions = obj.get("conditions");
        let state = obj.get("state");
        match action {
            Kind::Deny => {
                for (key, present) in [("conditions", conditions), ("state", state)] {
                    if present.is_some() {
                        self.error(&child(path, key), format!("deny rules must not have {key}"));
                    }
                }
                let reason = on_deny.unwrap_or_else(|| denied_by(&name));
                Some(Parsed {
                    whole_tool: Some((Action::Deny, reason)),
                    ..Parsed::default()
                })
            }
            Kind::Approval => {
                if let Some(s) = state {
                    self.wrong(
                        &child(path, "state"),
                        s,
                        "no state block on an approval rule",
                    );
                    return None;
                }
                let reason =
                    on_deny.unwrap_or_else(|| format!("Approval required by rule \"{name}\""));
                let Some(list) = conditions else {
                    return Some(Parsed {
                        whole_tool: Some((Action::Approve, reason)),
                        ..Parsed::default()
                    });
                };
                let (args, budgets) = self.intercept_conditions(list, &cpath)?;
                if let Some(b) = budgets.first() {
                    self.error(
                        &b.at,
                        "an approval rule's conditions read the call's arguments; counters belong to evaluate rules".to_string(),
                    );
                    return None;
                }
                Some(Parsed {
                    arg_rule: Some(ArgRule {
                        name,
                        kind: RuleKind::DenyIf(args),
                        action: Action::Approve,
                        risk: None,
                        reason: Some(reason),
                    }),
                    ..Parsed::default()
                })
            }
            Kind::Evaluate => {
                let Some(list) = conditions else {
                    self.error(
                        &cpath,
                        "missing: evaluate rules must have at least one condition".to_string(),
                    );
                    return None;
                };
                let (args, budgets) = self.intercept_conditions(list, &cpath)?;
                let reason = on_deny.clone().unwrap_or_else(|| denied_by(&name));
                let counter = match state {
                    Some(s) => self.state_counter(
                        s,
                        &child(path, "state"),
                        scope,
                        &name,
                        budgets,
                        on_deny,
                    )?,
                    None => {
                        if let Some(b) = budgets.first() {
                            self.error(
                                &b.at,
                                format!("reads counter \"{}\", but this rule has no state block counting it (a counter condition is supported only in the rule that counts it)", b.counter),
                            );
                            return None;
                        }
                        None
                    }
                };
                let arg_rule = (!args.is_empty()).then(|| ArgRule {
                    name,
                    kind: RuleKind::Require(args),
                    action: Action::Deny,
                    risk: None,
                    reason: Some(reason),
                });
                Some(Parsed {
                    arg_rule,
                    counter,
                    whole_tool: None,
                })
            }
        }
    }

    #[inline(never)]
    fn rate_limit_rule(
        &mut self,
        obj: &Node<'_>,
        node: &Node<'_>,
        path: &str,
        scope: &str,
        action: Kind,
        on_deny: Option<String>,
    ) -> Option<Parsed> {
        let rpath = child(path, "rate_limit");
        if obj.get("conditions").is_some() || obj.get("state").is_some() {
            self.error(
                &rpath,
                "rate_limit cannot be combined with conditions or state; use separate rules or the full syntax".to_string(),
            );
            return None;
        }
        if action != Kind::Evaluate {
            self.error(
                &rpath,
                "rate_limit needs action \"evaluate\" (the default)".to_string(),
            );
            return None;
        }
        let parsed = node.as_str().and_then(|text| {
            let (count, window) = text.split_once('/')?;
            let count = count
                .parse::<u64>()
                .ok()
                .filter(|c| (1..=1_000_000_000).contains(c))?;
            let window = WINDOWS.iter().find(|(n, _)| *n == window)?;
            Some((count, *window))
        });
        let Some((count, (window_name, window))) = parsed else {
            self.wrong(
                &rpath,
                node,
                &format!("\"<count>/<window>\" with a count >= 1 and a window of {WINDOW_NAMES}, like \"5/hour\""),
            );
            return None;
        };
        let reason = on_deny.unwrap_or_else(|| {
            format!("Rate limit of {count} per {window_name} reached. Try again later.")
        });
        Some(Parsed {
            counter: Some(budget_counter(
                format!("{scope}._rate_{window_name}"),
                window,
                count,
                None,
                reason,
            )),
            ..Parsed::default()
        })
    }

    /// A rule's `state` block and the budget its own condition sets.
    #[inline(never)]
    fn state_counter(
        &mut self,
        node: &Node<'_>,
        path: &str,
        scope: &str,
        rule_name: &str,
        budgets: Vec<Budget>,
        on_deny: Option<String>,
    ) -> Option<Option<Counter>> {
        let obj = self.object(
            node,
            path,
            &["counter", "window", "increment", "increment_from"],
        )?;
        let counter = match obj.get("counter") {
            Some(n) => match self.string(n, &child(path, "counter")) {
                Some(s) if !s.is_empty() => Some(s),
                Some(_) => {
                    self.wrong(&child(path, "counter"), n, "a counter name (not empty)");
                    None
                }
                None => None,
            },
            None => {
                self.error(
                    &child(path, "counter"),
                    "missing, expected a counter name".to_string(),
                );
                None
            }
        };
        let window = match obj.get("window") {
            Some(w) => self.choice(w, &child(path, "window"), &WINDOWS),
            None => {
                self.error(
                    &child(path, "window"),
                    format!("missing, expected {WINDOW_NAMES}"),
                );
                None
            }
        };
        let increment = match obj.get("increment") {
            // Intercept reads 0 as "not given": 1.
            Some(n) => match n.as_f64() {
                Some(v) if v.fract() == 0.0 && (0.0..=1e9).contains(&v) => Some((v as u64).max(1)),
                _ => {
                    self.wrong(&child(path, "increment"), n, "an integer >= 1");
                    None
                }
            },
            None => Some(1),
        };
        let increment_from = match obj.get("increment_from") {
            Some(n) => {
                let p = child(path, "increment_from");
                let text = self.string(n, &p)?;
                match text
                    .strip_prefix("args.")
                    .map(|_| crate::conditions::ArgPath::parse(&text))
                {
                    Some(Ok(ap)) => Some(ap),
                    _ => {
                        self.wrong(&p, n, "an argument path like \"args.amount\"");
                        return None;
                    }
                }
            }
            None => None,
        };
        let (counter, window, increment) = (counter?, window?, increment?);
        let mut own = Vec::new();
        for b in budgets {
            if b.counter == format!("state.{scope}.{counter}") {
                own.push(b);
            } else {
                self.error(
                    &b.at,
                    format!("reads {}, but this rule counts state.{scope}.{counter}; a counter condition is supported only on the counter its rule counts", b.counter),
                );
                return None;
            }
        }
        let Some(budget) = own.first() else {
            // Intercept never counts a state block without a budget on it.
            return Some(None);
        };
        if own.len() > 1 {
            self.error(&budget.at, "give one lt/lte budget per counter".to_string());
            return None;
        }
        // Intercept: the reservation must stay <= the budget (`lt N`: N - 1),
        // truncated to an integer; a fixed increment k fits max / k times.
        let units = budget.max.trunc();
        let mut max = if units >= 0.0 { units as u64 } else { 0 };
        if increment_from.is_none() {
            max /= increment;
        }
        if max < 1 {
            self.error(
                &budget.at,
                "this budget admits no call; refuse the tool with action \"deny\" instead"
                    .to_string(),
            );
            return None;
        }
        let reason = on_deny.unwrap_or_else(|| format!("Rate limit exceeded for {rule_name}"));
        Some(Some(budget_counter(
            format!("{scope}.{counter}"),
            window,
            max,
            increment_from,
            reason,
        )))
    }

    /// An Intercept rule's conditions: argument conditions with Intercept's
    /// meaning, and `state.` budgets (`lte`/`lt` with a number).
    #[inline(never)]
    fn intercept_conditions(
        &mut self,
        node: &Node<'_>,
        path: &str,
    ) -> Option<(Vec<Condition>, Vec<Budget>)> {
        let Some(items) = node.as_array().filter(|i| !i.is_empty()) else {
            self.wrong(path, node, "a non-empty array of conditions");
            return None;
        };
        let mut args = Vec::new();
        let mut budgets = Vec::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let cpath = format!("{path}[{i}]");
            let state_path = item
                .get("path")
                .and_then(|p| p.as_str())
                .filter(|p| p.starts_with("state."));
            if let Some(text) = state_path {
                match self.budget(item, &cpath, text) {
                    Some(b) => budgets.push(b),
                    None => ok = false,
                }
                continue;
            }
            let Some(c) = self.condition(item, &cpath) else {
                ok = false;
                continue;
            };
            args.extend(with_intercept_absence(c));
        }
        ok.then_some((args, budgets))
    }

    #[inline(never)]
    fn budget(&mut self, node: &Node<'_>, path: &str, text: &str) -> Option<Budget> {
        let obj = self.object(node, path, &["path", "op", "value"])?;
        // `state.<scope>.<counter>`; the counter part may hold dots.
        if text.splitn(3, '.').count() != 3 || text.splitn(3, '.').any(str::is_empty) {
            self.wrong(
                &child(path, "path"),
                obj.get("path")?,
                "a counter path \"state.<tool>.<counter>\"",
            );
            return None;
        }
        let op = obj.get("op").and_then(|o| o.as_str());
        let value = obj
            .get("value")
            .and_then(|v| v.as_f64())
            .filter(|v| v.is_finite());
        match (op, value) {
            (Some("lte"), Some(v)) => Some(Budget {
                at: path.to_string(),
                counter: text.to_string(),
                max: v,
            }),
            // `lt N`: Intercept reserves up to N - 1.
            (Some("lt"), Some(v)) => Some(Budget {
                at: path.to_string(),
                counter: text.to_string(),
                max: v.trunc() - 1.0,
            }),
            (Some("lte" | "lt"), None) => {
                let v = obj.get("value")?;
                self.wrong(&child(path, "value"), v, "a number");
                None
            }
            _ => {
                self.error(
                    &child(path, "op"),
                    "a counter condition must be \"lte\" or \"lt\" with a number (a budget); other reads of a counter are not supported".to_string(),
                );
                None
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Evaluate,
    Deny,
    Approval,
}

/// What one Intercept rule adds to its tool's rule.
#[derive(Default)]
struct Parsed {
    arg_rule: Option<ArgRule>,
    counter: Option<Counter>,
    /// `deny` or `require_approval` without conditions: the whole tool.
    whole_tool: Option<(Action, String)>,
}

fn denied_by(name: &str) -> String {
    format!("Denied by rule \"{name}\"")
}

fn budget_counter(
    name: String,
    window: Window,
    max: u64,
    increment_from: Option<crate::conditions::ArgPath>,
    reason: String,
) -> Counter {
    Counter {
        name,
        window,
        max,
        // Intercept keeps one count per proxy: the whole server's budget.
        scope: Scope::Global,
        algorithm: Algorithm::Fixed,
        increment_from,
        default_increment_milli: None,
        global: false,
        reason: Some(reason),
    }
}

/// Intercept's absence: a missing (or `null`) argument fails every operator
/// but `exists: false`. Ours lets `neq`/`not_in` hold on a missing value,
/// so those get an `exists: true` in front; `exists: true` also needs a
/// non-null value.
fn with_intercept_absence(c: Condition) -> Vec<Condition> {
    let exists = |path: &Path| Condition {
        path: path.clone(),
        op: Op::Exists(true),
    };
    match &c.op {
        Op::Neq(_) | Op::NotIn(_) | Op::NotContains(_) => vec![exists(&c.path), c],
        Op::Exists(true) => {
            let not_null = Condition {
                path: c.path.clone(),
                op: Op::Neq(Literal::Null),
            };
            vec![c, not_null]
        }
        _ => vec![c],
    }
}

/// Go duration text as Intercept reads it: `30m`, `1h30m`, `90s`.
fn is_duration(text: &str) -> bool {
    let mut digits = false;
    let mut any = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            digits = true;
            continue;
        }
        let unit: String = std::iter::once(c)
            .chain(std::iter::from_fn(|| {
                chars.next_if(|n| n.is_ascii_alphabetic())
            }))
            .collect();
        if !digits || !["ns", "us", "ms", "s", "m", "h"].contains(&unit.as_str()) {
            return false;
        }
        digits = false;
        any = true;
    }
    any && !digits
}
