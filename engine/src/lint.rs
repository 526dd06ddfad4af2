//! Warnings about a valid policy that may not mean what its author thinks.
//!
//! Warnings never stop a policy from loading (the filter logs them, the CLI
//! prints them); errors do. Host-free so the filter and the CLI agree.

use std::fmt;

use crate::conditions::Op;
use crate::config::child;
use crate::policy::{Policy, RuleKind, ToolRule};

/// One warning, located by JSON path like a [`crate::config::ConfigError`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Every warning for `policy`, in a stable order (entries by key, rules in
/// order). Paths are those of the policy text: a loaded policy keeps every
/// entry and rule it was given, in order.
pub fn lint(policy: &Policy) -> Vec<Warning> {
    let mut entries: Vec<(&str, &ToolRule)> = policy
        .tools
        .iter()
        .map(|(k, r)| (k.as_str(), r))
        .chain(
            policy
                .patterns
                .iter()
                .map(|p| (p.glob.text.as_str(), &p.rule)),
        )
        .chain([("*", &policy.wildcard)])
        .collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    for (key, rule) in entries {
        let entry_path = child("policy.tools", key);
        for (i, arg_rule) in rule.rules.iter().enumerate() {
            if let RuleKind::Require(conds) = &arg_rule.kind {
                let at = format!("{entry_path}.rules[{i}].require");
                passes_on_absence(conds, &at, &mut out);
            }
        }
    }
    out
}

/// A `require` is satisfied when an argument is missing if every condition
/// on that argument's path is `neq` / `not_in` (both hold for an absent
/// value, see [`crate::conditions`]).
fn passes_on_absence(conds: &[crate::conditions::Condition], at: &str, out: &mut Vec<Warning>) {
    let mut seen: Vec<&str> = Vec::new();
    for c in conds {
        let path = c.path.text();
        if seen.contains(&path) {
            continue;
        }
        seen.push(path);
        let on_path = conds.iter().filter(|d| d.path.text() == path);
        let only_negative = on_path
            .clone()
            .all(|d| matches!(d.op, Op::Neq(_) | Op::NotIn(_)));
        if !only_negative {
            continue;
        }
        let indices: Vec<String> = conds
            .iter()
            .enumerate()
            .filter(|(_, d)| d.path.text() == path)
            .map(|(j, _)| format!("[{j}]"))
            .collect();
        out.push(Warning {
            path: at.to_string(),
            message: format!(
                "passes when {path} is missing: its only conditions on {path} ({}) are neq/not_in, which hold for an absent argument (also when a step of the path is not an object or array); if the argument must be present, add {{\"path\": {}, \"op\": \"exists\", \"value\": true}}",
                indices.join(", "),
                crate::write::quoted(path),
            ),
        });
    }
}

#[cfg(test)]
mod tests;
