//! The policy model: what the plugin configuration means once validated.
//!
//! Everything here is computed once at configure time (`config::load`); the request
//! path only does map lookups on it.

use std::collections::{HashMap, HashSet};

use crate::caller::{CallerNeeds, CallerSettings, CallerView};
use crate::conditions::{self, ArgPath, Condition, Facts};
use crate::glob::Glob;
use crate::json::Node;
pub use crate::risk::Risk;

/// What happens to a call. Ordered: the most restrictive applicable wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    Allow,
    /// Forward only after the approval service says yes.
    Approve,
    Deny,
}

impl Action {
    pub fn name(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Approve => "approve",
            Action::Deny => "deny",
        }
    }
}

/// A window length; with [`Algorithm::Fixed`], aligned to UTC boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Window {
    Second,
    Minute,
    Hour,
    Day,
    /// 7 days.
    Week,
    /// 30 days (not a calendar month).
    Month,
}

impl Window {
    pub const ALL: [Window; 6] = [
        Window::Second,
        Window::Minute,
        Window::Hour,
        Window::Day,
        Window::Week,
        Window::Month,
    ];

    pub fn seconds(self) -> u64 {
        match self {
            Window::Second => 1,
            Window::Minute => 60,
            Window::Hour => 3600,
            Window::Day => 86_400,
            Window::Week => 604_800,
            Window::Month => 2_592_000,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Window::Second => "second",
            Window::Minute => "minute",
            Window::Hour => "hour",
            Window::Day => "day",
            Window::Week => "week",
            Window::Month => "month",
        }
    }
}

/// How a limit's window moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// At most `max` in every interval of the window's length (default):
    /// no burst of 2 x `max` across a boundary.
    #[default]
    Sliding,
    /// Windows aligned to UTC boundaries, reset at each one (PolicyLayer's
    /// semantics): up to 2 x `max` can pass around a boundary.
    Fixed,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sliding => "sliding",
            Algorithm::Fixed => "fixed",
        }
    }
}

/// Whose budget a counter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// The whole Envoy process.
    Global,
    /// The credential the agent presents.
    Grant,
    /// The MCP session (`Mcp-Session-Id`).
    Session,
    /// The downstream address.
    Source,
}

impl Scope {
    pub fn name(self) -> &'static str {
        match self {
            Scope::Global => "global",
            Scope::Grant => "grant",
            Scope::Session => "session",
            Scope::Source => "source",
        }
    }
}

/// One named budget. Tools naming the same counter share it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counter {
    pub name: String,
    pub window: Window,
    pub max: u64,
    pub scope: Scope,
    /// Sliding (any interval of the window's length) or fixed UTC windows.
    pub algorithm: Algorithm,
    /// Add this argument's numeric value instead of 1 (spend caps).
    pub increment_from: Option<ArgPath>,
    /// Amount used when `increment_from` is missing from the call, in
    /// thousandths; None refuses such calls.
    pub default_increment_milli: Option<u64>,
    /// Counted cluster-wide by the rate limit service.
    pub global: bool,
    /// What a refused call is told when this budget is spent, instead of
    /// the built-in text (Intercept's `on_deny` on a counting rule).
    pub reason: Option<String>,
}

/// When a rule triggers.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// Triggers when every condition holds.
    DenyIf(Vec<Condition>),
    /// Triggers unless every condition holds.
    Require(Vec<Condition>),
    /// Classification only: when every condition holds, the call has `risk`.
    When(Vec<Condition>),
}

/// A named rule on a call's arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ArgRule {
    pub name: String,
    pub kind: RuleKind,
    /// What a triggered rule does (`deny` or `approve`).
    pub action: Action,
    pub risk: Option<Risk>,
    pub reason: Option<String>,
}

/// The approval service, reached through an Envoy cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalService {
    pub cluster: String,
    pub authority: String,
    pub path: String,
    pub timeout_ms: u64,
}

/// What the filter does when the service errors or times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Refuse every call that needs the service (default).
    Deny,
    /// Fall back to the per-process shared-data limit.
    Local,
}

/// The `rate_limit_service` section of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitService {
    pub cluster: String,
    pub domain: String,
    pub timeout_ms: u64,
    pub failure_mode: FailureMode,
    /// Treat every limit as global, not only those marked `"global": true`.
    pub all_limits: bool,
    /// Send the `tool` descriptor entry (informational). Services that key
    /// counters on every entry (envoyproxy/ratelimit) need it off for
    /// counters shared by several tools.
    pub include_tool: bool,
}

/// What the policy says about one tool (or about every tool, for `"*"`).
/// Equality is equality of meaning (two pattern entries that agree may
/// overlap).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRule {
    pub action: Action,
    pub reason: Option<String>,
    /// Indices into `Policy::counters`.
    pub limits: Vec<usize>,
    /// The tool's category, as the policy author states it.
    pub risk: Option<Risk>,
    pub rules: Vec<ArgRule>,
    /// `"mode": "shadow"`: calls of this tool (every tool, on `"*"`) are
    /// judged and recorded but never refused.
    pub shadow: bool,
    /// The entry's `description`, kept so `render --canonical` keeps it.
    pub description: Note,
}

/// Free text the author wrote for people (`description`). It never changes
/// a decision, so it never makes two rules differ: equality is always true.
#[derive(Debug, Clone, Default)]
pub struct Note(pub Option<String>);

impl PartialEq for Note {
    fn eq(&self, _: &Note) -> bool {
        true
    }
}

impl Default for ToolRule {
    fn default() -> Self {
        Self {
            action: Action::Allow,
            reason: None,
            limits: Vec::new(),
            risk: None,
            rules: Vec::new(),
            shadow: false,
            description: Note::default(),
        }
    }
}

/// A `tools` entry whose key is a pattern (`delete_*`).
#[derive(Debug, Clone)]
pub struct ToolPattern {
    pub glob: Glob,
    pub rule: ToolRule,
}

/// One section: exact keys first, then patterns, most specific first.
#[derive(Debug, Clone, Default)]
pub struct ItemRules {
    pub exact: HashMap<String, ToolRule>,
    /// Keys holding `*` (the same patterns as tool names), sorted by
    /// specificity (literal characters, most first), then by text.
    pub patterns: Vec<(Glob, ToolRule)>,
}

impl ItemRules {
    /// Adds one entry; a key with a `*` must be a valid pattern.
    pub fn insert(&mut self, key: &str, rule: ToolRule) -> Result<(), String> {
        if key.contains('*') {
            self.patterns.push((Glob::parse(key)?, rule));
            self.patterns.sort_by(|a, b| {
                b.0.specificity()
                    .cmp(&a.0.specificity())
                    .then_with(|| a.0.text.cmp(&b.0.text))
            });
        } else {
            self.exact.insert(key.to_string(), rule);
        }
        Ok(())
    }

    /// The entry deciding `name`: its key and rule.
    pub fn find(&self, name: &str) -> Option<(&str, &ToolRule)> {
        if let Some((k, r)) = self.exact.get_key_value(name) {
            return Some((k.as_str(), r));
        }
        self.patterns
            .iter()
            .find(|(g, _)| g.matches(name))
            .map(|(g, r)| (g.text.as_str(), r))
    }
}

/// How a refused call is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorStyle {
    /// A JSON-RPC error object (default): clients raise their MCP error type.
    JsonRpc,
    /// PolicyLayer style: a `result` with `isError: true` the model reads.
    ToolResult,
    /// Intercept's: a `result` with `isError: true` whose text is
    /// `[INTERCEPT POLICY DENIED] ` and the refusal's reason alone.
    Intercept,
}

/// Whether request headers wait for the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderMode {
    /// Headers continue upstream at once, the body waits; a refused call
    /// resets the upstream stream. Works on every Envoy.
    Stream,
    /// Nothing goes upstream before the decision. Needs the Envoy plugin
    /// field `allow_on_headers_stop_iteration: true` (Envoy >= 1.35).
    Hold,
}

/// Where the `grant` scope value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantSource {
    /// A keyed hash of this request header (default `authorization`).
    Header(String),
    /// A keyed hash of an Envoy property path (e.g. JWT claims in metadata).
    Property(Vec<String>),
}

impl GrantSource {
    /// Where the grant comes from, for messages.
    pub fn describe(&self) -> String {
        match self {
            GrantSource::Header(h) => format!("header {h}"),
            GrantSource::Property(p) => format!("Envoy property {}", p.join(".")),
        }
    }
}

/// Filter settings with safe defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub max_body_bytes: u64,
    pub max_depth: usize,
    /// Most messages in one JSON-RPC batch; a larger batch is refused whole
    /// with one error before any message in it is judged.
    pub max_batch: usize,
    pub error_style: ErrorStyle,
    pub header_mode: HeaderMode,
    pub grant: GrantSource,
    /// Give a unit back when the upstream answers 5xx or a JSON-RPC error.
    pub refund_on_error: bool,
    /// Shared-data keys per counter; each tracks up to `ratelimit::ENTRIES`
    /// scope values at once, plus a shared overflow budget.
    pub counter_slots: u32,
    /// Algorithm of limits that do not name one.
    pub limit_algorithm: Algorithm,
    /// Secret key for scope fingerprints (grants, sessions); a built-in key
    /// when unset.
    pub grant_hash_key: Option<String>,
    /// Which tool calls get an audit line.
    pub audit: AuditLevel,
    /// Refuse every `tools/call` that carries no grant.
    pub require_grant: bool,
    /// `hold` mode: how long a held request may wait for its first body byte.
    pub hold_body_timeout_ms: u64,
    /// `mode: "shadow"`: nothing is refused; what would be is recorded.
    pub shadow: bool,
    /// Who is calling: where claims live, whether an identity is required,
    /// whether grant budgets follow it.
    pub caller: CallerSettings,
    /// What a listed definition that differs from its pin does.
    pub pin_mismatch: crate::pins::OnMismatch,
    /// What a listed tool without a pin does while the policy has pins.
    pub unpinned: crate::pins::Unpinned,
}

/// Default `settings.max_batch`: far above what a client batches (MCP
/// dropped batches in 2025-06-18), far below what amplifies.
pub const DEFAULT_MAX_BATCH: usize = 64;
/// Ceiling for `settings.max_batch`.
pub const MAX_BATCH_LIMIT: u64 = 1000;

/// Which judged tool calls are written as audit lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditLevel {
    Off,
    /// Refused calls only (default).
    Refused,
    All,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_depth: crate::json::DEFAULT_MAX_DEPTH,
            max_batch: DEFAULT_MAX_BATCH,
            error_style: ErrorStyle::JsonRpc,
            header_mode: HeaderMode::Stream,
            grant: GrantSource::Header("authorization".to_string()),
            refund_on_error: false,
            counter_slots: 256,
            limit_algorithm: Algorithm::Sliding,
            grant_hash_key: None,
            audit: AuditLevel::Refused,
            require_grant: false,
            hold_body_timeout_ms: 10_000,
            shadow: false,
            caller: CallerSettings::default(),
            pin_mismatch: crate::pins::OnMismatch::Refuse,
            unpinned: crate::pins::Unpinned::Allow,
        }
    }
}

/// A validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The policy's `description` (for people; kept by `render --canonical`).
    pub description: Option<String>,
    pub default: Action,
    /// Entries keyed by an exact tool name.
    pub tools: HashMap<String, ToolRule>,
    /// Entries keyed by a pattern, most specific first (ties by key), tried
    /// in order when no exact entry names the tool.
    pub patterns: Vec<ToolPattern>,
    /// Rules of the `"*"` entry: apply to every listed or default-allowed call.
    pub wildcard: ToolRule,
    pub hide: HashSet<String>,
    /// `hide` entries with a `*` (other than `"*"` itself).
    pub hide_patterns: Vec<Glob>,
    /// `hide: ["*"]` hides every tool.
    pub hide_all: bool,
    pub counters: Vec<Counter>,
    /// Action per risk category (`"risk_actions": {"destructive": "deny"}`).
    pub risk_actions: HashMap<Risk, Action>,
    /// `resources` (URI patterns): None leaves resource requests unjudged.
    pub resources: Option<ItemRules>,
    /// `prompts` (name patterns): None leaves prompt requests unjudged.
    pub prompts: Option<ItemRules>,
    /// `pins` (tool name → hash of its definition): None checks nothing.
    pub pins: Option<crate::pins::Pins>,
    pub approval: Option<ApprovalService>,
    pub rate_limit_service: Option<RateLimitService>,
    pub settings: Settings,
}

/// The outcome for one tool name, before any counter is consulted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolVerdict {
    /// Allowed if every listed counter has room.
    Allow { limits: Vec<usize> },
    Deny {
        /// Which part of the policy refused (`hide`, `default`, `tools.NAME`).
        rule: String,
        reason: String,
    },
}

impl Policy {
    /// Whether calls of `tool` run in shadow mode: judged, counted in
    /// shadow budgets and recorded, but forwarded whatever the verdict.
    pub fn shadowed(&self, tool: &str) -> bool {
        self.settings.shadow
            || self.wildcard.shadow
            || self.entry(tool).is_some_and(|(_, r)| r.shadow)
    }

    /// The `tools` entry that speaks for `tool`: its exact name, else the
    /// most specific matching pattern. Returns the entry's key and rule.
    /// (The `"*"` entry is not one of them: it applies on top of whichever
    /// entry matched, see [`Policy::wildcard`].)
    pub fn entry(&self, tool: &str) -> Option<(&str, &ToolRule)> {
        if let Some((key, rule)) = self.tools.get_key_value(tool) {
            return Some((key.as_str(), rule));
        }
        self.patterns
            .iter()
            .find(|p| p.glob.matches(tool))
            .map(|p| (p.glob.text.as_str(), &p.rule))
    }

    /// Whether `hide` names `tool` (exactly, by a pattern, or `"*"`).
    pub fn hidden(&self, tool: &str) -> bool {
        self.hide_all
            || self.hide.contains(tool)
            || self.hide_patterns.iter().any(|g| g.matches(tool))
    }

    /// Decides a `tools/call` for `tool` (exact name, already unescaped).
    pub fn decide(&self, tool: &str) -> ToolVerdict {
        self.decide_with(tool, self.entry(tool))
    }

    /// [`Policy::decide`] with the tool's entry already looked up (patterns
    /// are tried once per call).
    fn decide_with(&self, tool: &str, own: Option<(&str, &ToolRule)>) -> ToolVerdict {
        let shown = crate::text::shown_name(tool);
        // Intercept's agents read Intercept's own texts.
        let intercept = self.settings.error_style == ErrorStyle::Intercept;
        if self.hidden(tool) {
            return ToolVerdict::Deny {
                rule: "hide".to_string(),
                reason: if intercept {
                    format!("Tool \"{shown}\" is hidden by policy")
                } else {
                    format!("tool \"{shown}\" is hidden by policy")
                },
            };
        }
        match own {
            Some((key, rule)) if rule.action == Action::Deny => {
                return ToolVerdict::Deny {
                    rule: format!("tools.{key}"),
                    reason: rule
                        .reason
                        .clone()
                        .unwrap_or_else(|| format!("tool \"{shown}\" is denied by policy")),
                };
            }
            None if self.default == Action::Deny => {
                return ToolVerdict::Deny {
                    rule: "default".to_string(),
                    reason: if intercept {
                        format!("Tool \"{shown}\" is not permitted by policy")
                    } else {
                        format!("tool \"{shown}\" is not allowed by policy (default: deny)")
                    },
                };
            }
            _ => {}
        }
        if self.wildcard.action == Action::Deny {
            return ToolVerdict::Deny {
                rule: "tools.*".to_string(),
                reason: self
                    .wildcard
                    .reason
                    .clone()
                    .unwrap_or_else(|| "every tool is denied by policy".to_string()),
            };
        }
        let own_limits = own.map(|(_, r)| r.limits.as_slice()).unwrap_or_default();
        // Sized once: this runs for every allowed call.
        let mut limits = Vec::with_capacity(own_limits.len() + self.wildcard.limits.len());
        limits.extend_from_slice(own_limits);
        for idx in &self.wildcard.limits {
            if !limits.contains(idx) {
                limits.push(*idx);
            }
        }
        ToolVerdict::Allow { limits }
    }

    /// Judges one call with its arguments. `hint` gives the server's
    /// category for the tool when the policy gives none (looked up only if
    /// `risk_actions` is set).
    pub fn decide_call(
        &self,
        tool: &str,
        args: Option<&Node<'_>>,
        hint: &dyn Fn(&str) -> Option<Risk>,
    ) -> CallVerdict {
        self.decide_call_for(tool, args, &CallerView::default(), hint)
    }

    /// [`Policy::decide_call`] knowing who is calling (`caller.*` paths,
    /// `settings.require_caller`).
    pub fn decide_call_for(
        &self,
        tool: &str,
        args: Option<&Node<'_>>,
        caller: &CallerView<'_>,
        hint: &dyn Fn(&str) -> Option<Risk>,
    ) -> CallVerdict {
        let own = self.entry(tool);
        let limits = match self.decide_with(tool, own) {
            ToolVerdict::Deny { rule, reason } => return CallVerdict::Deny { rule, reason },
            ToolVerdict::Allow { limits } => limits,
        };
        if self.settings.caller.require && caller.claims.is_none() && caller.principal.is_none() {
            return CallVerdict::Deny {
                rule: "settings.require_caller".to_string(),
                reason: "this MCP server requires a verified caller identity (a valid JWT or an mTLS client certificate), and the request carries none".to_string(),
            };
        }
        let facts = Facts { args, caller };
        let shown = crate::text::shown_name(tool);
        let mut verdict = CallVerdict::Allow { limits };
        let mut policy_risk: Option<Risk> = None;
        let layers = [own, Some(("*", &self.wildcard))];
        for (scope, rule) in layers.into_iter().flatten() {
            if rule.action == Action::Approve {
                verdict = verdict.escalate(
                    Action::Approve,
                    format!("tools.{scope}"),
                    rule.reason
                        .clone()
                        .unwrap_or_else(|| format!("tool \"{shown}\" requires approval")),
                );
            }
            policy_risk = policy_risk.max(rule.risk);
            for arg_rule in &rule.rules {
                let triggered = match &arg_rule.kind {
                    RuleKind::DenyIf(c) => conditions::deny_if_holds(c, &facts),
                    RuleKind::Require(c) => !conditions::require_holds(c, &facts),
                    RuleKind::When(c) => {
                        if conditions::when_holds(c, &facts) {
                            policy_risk = policy_risk.max(arg_rule.risk);
                        }
                        false
                    }
                };
                if triggered {
                    let reason = arg_rule.reason.clone().unwrap_or_else(|| {
                        let of = if scope != "*" && scope.contains('*') {
                            "pattern"
                        } else {
                            "tool"
                        };
                        format!(
                            "rule \"{}\" of {of} \"{scope}\" refused the arguments",
                            arg_rule.name
                        )
                    });
                    verdict = verdict.escalate(
                        arg_rule.action,
                        format!("tools.{scope}.rules.{}", arg_rule.name),
                        reason,
                    );
                }
            }
        }
        if !self.risk_actions.is_empty() {
            // Policy first; else the server's hint; else never seen: worst.
            let (risk, source) = match (policy_risk, hint(tool)) {
                (Some(r), _) => (r, "by policy"),
                (None, Some(r)) => (r, "by the server's annotations"),
                (None, None) => (
                    Risk::Destructive,
                    "by default: the server never listed it, so the worst is assumed",
                ),
            };
            if let Some(action) = self.risk_actions.get(&risk) {
                verdict = verdict.escalate(
                    *action,
                    format!("risk_actions.{}", risk.name()),
                    format!(
                        "tool \"{shown}\" is classified {} ({source}); {} calls {} by policy",
                        risk.name(),
                        risk.name(),
                        match action {
                            Action::Deny => "are denied",
                            Action::Approve => "need approval",
                            Action::Allow => "are allowed",
                        }
                    ),
                );
            }
        }
        verdict
    }

    /// Whether `tools/list` answers keep this tool: hidden and always-refused
    /// tools are removed, so agents don't waste turns on them.
    pub fn lists(&self, tool: &str) -> bool {
        self.lists_with_hint(tool, None)
    }

    /// [`Policy::lists`] knowing the server's category for the tool (from
    /// the very answer being filtered): a tool whose category is always
    /// denied is removed too. Argument rules can only raise a category, so
    /// the base category decides.
    pub fn lists_with_hint(&self, tool: &str, hint: Option<Risk>) -> bool {
        // Shadow mode changes nothing agents see, lists included.
        if self.shadowed(tool) {
            return true;
        }
        let entry = self.entry(tool);
        if matches!(self.decide_with(tool, entry), ToolVerdict::Deny { .. }) {
            return false;
        }
        self.lists_by_risk(entry, hint)
    }

    /// [`Policy::lists_with_hint`] for one caller: a tool is also removed
    /// when one of its (or `"*"`'s) rules that read only `caller.*` refuses
    /// this caller whatever the arguments.
    pub fn lists_for(&self, tool: &str, hint: Option<Risk>, caller: &CallerView<'_>) -> bool {
        self.lists_with_hint(tool, hint) && !self.refuses_caller(tool, caller)
    }

    /// Whether a caller-only rule of `tool` or `"*"` refuses this caller.
    fn refuses_caller(&self, tool: &str, caller: &CallerView<'_>) -> bool {
        let facts = Facts { args: None, caller };
        let own = self.entry(tool).map(|(_, rule)| rule);
        own.into_iter().chain([&self.wildcard]).any(|rule| {
            rule.rules.iter().any(|r| {
                r.action == Action::Deny
                    && match &r.kind {
                        RuleKind::DenyIf(c) => {
                            conditions::only_caller(c) && conditions::deny_if_holds(c, &facts)
                        }
                        RuleKind::Require(c) => {
                            conditions::only_caller(c) && !conditions::require_holds(c, &facts)
                        }
                        RuleKind::When(_) => false,
                    }
            })
        })
    }

    /// What the policy's conditions read about the caller (the host reads
    /// nothing else).
    pub fn caller_needs(&self) -> CallerNeeds {
        let mut needs = CallerNeeds::default();
        let rules = self
            .tools
            .values()
            .chain(self.patterns.iter().map(|p| &p.rule))
            .chain([&self.wildcard]);
        for rule in rules.flat_map(|t| t.rules.iter()) {
            let conds = match &rule.kind {
                RuleKind::DenyIf(c) | RuleKind::Require(c) | RuleKind::When(c) => c,
            };
            for c in conds {
                if let Some(p) = c.path.caller() {
                    needs.add(p);
                }
            }
        }
        let c = &self.settings.caller;
        if c.require {
            needs.claims = true;
            needs.principal = true;
        }
        match &c.grant_from {
            Some(crate::caller::GrantFrom::Principal) => needs.principal = true,
            Some(crate::caller::GrantFrom::Claim(_)) => needs.claims = true,
            None => {}
        }
        needs
    }

    fn lists_by_risk(&self, entry: Option<(&str, &ToolRule)>, hint: Option<Risk>) -> bool {
        if self.risk_actions.is_empty() {
            return true;
        }
        let own = entry.and_then(|(_, r)| r.risk);
        let base = own
            .max(self.wildcard.risk)
            .or(hint)
            .unwrap_or(Risk::Destructive);
        self.risk_actions.get(&base) != Some(&Action::Deny)
    }
}

/// The outcome for one call with its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallVerdict {
    Allow {
        limits: Vec<usize>,
    },
    /// Allowed once the approval service says yes.
    Approve {
        limits: Vec<usize>,
        rule: String,
        reason: String,
    },
    Deny {
        rule: String,
        reason: String,
    },
}

impl CallVerdict {
    /// Applies `action` if it is more restrictive than the current verdict;
    /// the first rule reaching the most restrictive level is the one reported.
    fn escalate(self, action: Action, rule: String, reason: String) -> CallVerdict {
        match (self, action) {
            (v @ CallVerdict::Deny { .. }, _) => v,
            (_, Action::Deny) => CallVerdict::Deny { rule, reason },
            (CallVerdict::Allow { limits }, Action::Approve) => CallVerdict::Approve {
                limits,
                rule,
                reason,
            },
            (v, _) => v,
        }
    }
}

#[cfg(test)]
mod tests;
