//! Decisions for the `resources` and `prompts` sections: rules keyed by URI
//! or name patterns (`*` matches any run of characters, as in tool-name
//! patterns), with the actions of a tool rule (allow, deny + reason, limits,
//! approve, shadow mode). The rules themselves ([`ItemRules`]) are part of
//! the policy model.

use crate::jsonrpc::CallKind;
use crate::policy::{Action, CallVerdict, ItemRules, Policy};

impl Policy {
    /// The section governing `kind`, if the policy has one (`tools` always).
    pub fn items(&self, kind: CallKind) -> Option<&ItemRules> {
        match kind {
            CallKind::Tool => None,
            CallKind::Resource => self.resources.as_ref(),
            CallKind::Prompt => self.prompts.as_ref(),
        }
    }

    /// Whether the policy judges requests of this kind (tools: always;
    /// resources and prompts: only with their section).
    pub fn governs(&self, kind: CallKind) -> bool {
        kind == CallKind::Tool || self.items(kind).is_some()
    }

    /// Decides a resource or prompt request. Unmatched names follow the
    /// policy's `default`.
    pub fn decide_item(&self, kind: CallKind, name: &str) -> CallVerdict {
        let shown = crate::text::shown_name(name);
        let what = match kind {
            CallKind::Prompt => "prompt",
            _ => "resource",
        };
        let Some((key, rule)) = self.items(kind).and_then(|s| s.find(name)) else {
            return match self.default {
                Action::Deny => CallVerdict::Deny {
                    rule: "default".to_string(),
                    reason: format!("{what} \"{shown}\" is not allowed by policy (default: deny)"),
                },
                _ => CallVerdict::Allow { limits: Vec::new() },
            };
        };
        let at = format!("{}.{key}", kind.section());
        match rule.action {
            Action::Deny => CallVerdict::Deny {
                rule: at,
                reason: rule
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("{what} \"{shown}\" is denied by policy")),
            },
            Action::Approve => CallVerdict::Approve {
                limits: rule.limits.clone(),
                rule: at,
                reason: rule
                    .reason
                    .clone()
                    .unwrap_or_else(|| format!("{what} \"{shown}\" requires approval")),
            },
            Action::Allow => CallVerdict::Allow {
                limits: rule.limits.clone(),
            },
        }
    }

    /// Whether a resource or prompt request runs in shadow mode.
    pub fn item_shadowed(&self, kind: CallKind, name: &str) -> bool {
        self.settings.shadow
            || self
                .items(kind)
                .and_then(|s| s.find(name))
                .is_some_and(|(_, r)| r.shadow)
    }

    /// Whether a list answer keeps this resource (URI or URI template) or
    /// prompt: everything unless the policy would always deny it.
    pub fn lists_item(&self, kind: CallKind, name: &str) -> bool {
        !self.governs(kind)
            || self.item_shadowed(kind, name)
            || !matches!(self.decide_item(kind, name), CallVerdict::Deny { .. })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn policy(text: &str) -> Policy {
        crate::config::load(text.as_bytes()).unwrap()
    }

    #[test]
    fn exact_then_longest_pattern_then_default() {
        let p = policy(
            r#"{"version":"1","default":"deny","resources":{
                "file:///*":{"action":"deny","reason":"no files"},
                "file:///public/*":{},
                "file:///public/secret.txt":{"action":"deny"}}}"#,
        );
        let k = CallKind::Resource;
        assert_eq!(
            p.decide_item(k, "file:///public/a"),
            CallVerdict::Allow { limits: vec![] }
        );
        assert!(matches!(p.decide_item(k, "file:///etc/passwd"),
            CallVerdict::Deny { rule, reason } if rule == "resources.file:///*" && reason == "no files"));
        assert!(matches!(p.decide_item(k, "file:///public/secret.txt"),
            CallVerdict::Deny { rule, .. } if rule == "resources.file:///public/secret.txt"));
        assert!(matches!(p.decide_item(k, "https://x"),
            CallVerdict::Deny { rule, .. } if rule == "default"));
        assert!(p.lists_item(k, "file:///public/{name}"));
        assert!(!p.lists_item(k, "file:///etc/{name}"));
        // No prompts section: prompts are not governed.
        assert!(!p.governs(CallKind::Prompt));
        assert!(p.lists_item(CallKind::Prompt, "anything"));
    }

    fn errors(text: &str) -> Vec<String> {
        crate::config::load(text.as_bytes())
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn equal_specificity_overlaps_are_errors_naming_both_paths() {
        // Both match "file:///ab/x.md" with 11 literal characters each.
        let e = errors(
            r#"{"version":"1","resources":{"file:///ab/*":{},"file:///*.md":{"action":"deny"}}}"#,
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].starts_with(r#"policy.resources["file:///*.md"]: pattern "file:///*.md" and pattern "file:///ab/*" at policy.resources["file:///ab/*"] both match URIs such as "file:///ab/.md""#), "{e:?}");
        assert!(
            e[0].contains("same specificity (11 literal characters)"),
            "{e:?}"
        );
        let e = errors(
            r#"{"version":"1","prompts":{"review-*":{"action":"approve"},"*-commit":{"action":"deny"}},
                "approval":{"cluster":"a"}}"#,
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].starts_with(r#"policy.prompts["*-commit"]: pattern "*-commit" and pattern "review-*" at policy.prompts["review-*"] both match prompt names such as "review--commit" with the same specificity (7 literal characters)"#),
            "{e:?}"
        );
    }

    #[test]
    fn item_overlaps_are_fine_when_rules_agree_or_specificity_differs_or_none_overlaps() {
        for text in [
            // Same rule.
            r#"{"version":"1","resources":{"file:///ab/*":{"action":"deny"},"file:///*.md":{"action":"deny"}}}"#,
            // Different specificity: the longer decides.
            r#"{"version":"1","resources":{"file:///abc/*":{},"file:///*.md":{"action":"deny"}}}"#,
            // Equal specificity, no common URI.
            r#"{"version":"1","resources":{"file:///a*":{},"https://*":{"action":"deny"}}}"#,
            // An exact key beside a pattern never conflicts.
            r#"{"version":"1","prompts":{"simple-*":{},"simple-one":{"action":"deny"}}}"#,
        ] {
            assert_eq!(errors(text), Vec::<String>::new(), "{text}");
        }
        // Resources and prompts are separate namespaces.
        assert_eq!(
            errors(r#"{"version":"1","resources":{"a*":{}},"prompts":{"*b":{"action":"deny"}}}"#),
            Vec::<String>::new()
        );
    }

    #[test]
    fn prompt_rules_approve_and_limit() {
        let p = policy(
            r#"{"version":"1","approval":{"cluster":"approver"},"prompts":{
                "review-*":{"action":"approve"},
                "simple_prompt":{"limits":[{"counter":"p","window":"minute","max":1,"scope":"grant"}]}}}"#,
        );
        assert!(matches!(
            p.decide_item(CallKind::Prompt, "review-code"),
            CallVerdict::Approve { .. }
        ));
        assert_eq!(
            p.decide_item(CallKind::Prompt, "simple_prompt"),
            CallVerdict::Allow { limits: vec![0] }
        );
        // default allow: unmatched prompts pass.
        assert_eq!(
            p.decide_item(CallKind::Prompt, "other"),
            CallVerdict::Allow { limits: vec![] }
        );
    }
}
