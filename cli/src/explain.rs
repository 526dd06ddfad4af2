//! `mcp-policy explain`: what the filter would do with one `tools/call`.
//!
//! The call is judged by the filter's own engine ([`Engine::decide`]) on an
//! in-memory store, so the counters start empty: the answer is what the
//! first call of a window gets.

use std::time::{SystemTime, UNIX_EPOCH};

use mcp_policy_engine::caller::{Caller, GrantFrom};
use mcp_policy_engine::config;
use mcp_policy_engine::credentials;
use mcp_policy_engine::global_limits::{self, GlobalAnswer};
use mcp_policy_engine::json::{self, Node};
use mcp_policy_engine::policy::{Counter, ErrorStyle, GrantSource, Risk, Scope};
use mcp_policy_engine::ratelimit::{self, Charge};
use mcp_policy_engine::store::Clock;
use mcp_policy_engine::testing::MemoryStore;
use mcp_policy_engine::{risk, Engine, Policy, Scopes, Verdict};

use crate::quote::json_string;

/// The wall clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_millis(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// The call to explain.
#[derive(Debug, Default, Clone)]
pub struct Call {
    pub tool: String,
    /// The `arguments` object as JSON text; None leaves `arguments` out.
    pub args: Option<String>,
    pub grant: Option<String>,
    pub session: Option<String>,
    pub source: Option<String>,
    /// The verified JWT claims (a JSON object), as jwt_authn would give them.
    pub claims: Option<String>,
    /// The mTLS peer principal (URI SAN).
    pub principal: Option<String>,
    /// The category the server's `tools/list` annotations would give the
    /// tool (matters only under `risk_actions`).
    pub server_risk: Option<Risk>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Denied,
    RateLimited,
    NeedsApproval,
    /// The engine refused the request itself (e.g. `--args` not an object).
    Invalid,
}

impl Decision {
    pub fn name(self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Denied => "denied",
            Decision::RateLimited => "rate limited",
            Decision::NeedsApproval => "needs approval",
            Decision::Invalid => "invalid request",
        }
    }

    /// The process exit code: 0 forwarded, 2 refused or held, 1 invalid.
    pub fn exit_code(self) -> u8 {
        match self {
            Decision::Allowed => 0,
            Decision::Denied | Decision::RateLimited | Decision::NeedsApproval => 2,
            Decision::Invalid => 1,
        }
    }
}

/// One limit that applies to the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limit {
    pub counter: String,
    pub window: &'static str,
    /// "sliding" or "fixed".
    pub algorithm: &'static str,
    pub max: u64,
    pub scope: &'static str,
    /// Counted cluster-wide by the rate limit service (and locally).
    pub global: bool,
    /// Whose budget it is, for this call.
    pub whose: String,
    /// What the call takes (e.g. "1", "2.5"), or why it was refused.
    pub state: String,
}

#[derive(Debug, Clone)]
pub struct Explanation {
    pub tool: String,
    /// The `tools` entry that speaks for the tool, in words.
    pub entry: String,
    pub decision: Decision,
    pub rule: String,
    pub reason: String,
    pub limits: Vec<Limit>,
    /// Where the approval question goes (needs approval only).
    pub approval: Option<String>,
    /// The body the agent gets back when the call is refused.
    pub answer: Option<String>,
    pub notes: Vec<String>,
}

/// The `tools/call` request body the agent would send.
pub fn request_body(call: &Call) -> String {
    let mut params = format!("{{\"name\":{}", json_string(&call.tool));
    if let Some(args) = &call.args {
        params.push_str(",\"arguments\":");
        params.push_str(args);
    }
    params.push('}');
    format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{params}}}")
}

/// Judges `call` under `policy` at the time `clock` gives.
pub fn explain(policy: &Policy, call: &Call, clock: &dyn Clock) -> Result<Explanation, String> {
    if let Some(args) = &call.args {
        json::parse(args.as_bytes()).map_err(|e| format!("--args: not valid JSON: {e}"))?;
    }
    let body = request_body(call);
    // Details (rule, reason, counter) come from the JSON-RPC error data, so
    // the decision is taken with that style whatever the policy says; the
    // answer shown is the one the policy's own style produces.
    let mut jsonrpc_policy = policy.clone();
    jsonrpc_policy.settings.error_style = ErrorStyle::JsonRpc;
    let engine = Engine::new(jsonrpc_policy);
    let mut notes = Vec::new();
    let verdict = judge(&engine, &body, call, clock, &mut notes);
    let classified = policy
        .entry(&call.tool)
        .and_then(|(_, t)| t.risk)
        .or(policy.wildcard.risk)
        .is_some();
    let risk_note = !policy.risk_actions.is_empty() && call.server_risk.is_none() && !classified;
    let mut out = match verdict {
        Verdict::Forward(forwarded) => Explanation {
            tool: call.tool.clone(),
            entry: entry_text(policy, &call.tool),
            decision: Decision::Allowed,
            rule: allowed_rule(policy, &call.tool),
            reason: allowed_reason(policy, &call.tool),
            limits: charged_limits(policy, call, &forwarded.charges),
            approval: None,
            answer: None,
            notes: Vec::new(),
        },
        Verdict::Approve(pending) => {
            let doc = json::parse(pending.body.as_bytes()).map_err(|e| e.to_string())?;
            let field = |k: &str| str_at(&doc.root, &[k]).unwrap_or_default();
            let service = &pending.service;
            Explanation {
                tool: call.tool.clone(),
                entry: entry_text(policy, &call.tool),
                decision: Decision::NeedsApproval,
                rule: field("rule"),
                reason: field("reason"),
                limits: charged_limits(policy, call, &pending.forwarded.charges),
                approval: Some(format!(
                    "POST {} to cluster \"{}\" (authority {}), timeout {} ms; forwarded only if it answers 200 {{\"decision\":\"allow\"}}, otherwise refused with -31003",
                    service.path, service.cluster, service.authority, service.timeout_ms
                )),
                answer: None,
                notes: Vec::new(),
            }
        }
        Verdict::AskRateLimit(pending) => Explanation {
            tool: call.tool.clone(),
            entry: entry_text(policy, &call.tool),
            decision: Decision::NeedsApproval,
            rule: "rate_limit_service".to_string(),
            reason: format!(
                "held for the rate limit service at cluster \"{}\"",
                pending.cluster
            ),
            limits: Vec::new(),
            approval: None,
            answer: None,
            notes: Vec::new(),
        },
        Verdict::Reply { reply, .. } => {
            let doc = json::parse(reply.body.as_bytes()).map_err(|e| e.to_string())?;
            let root = &doc.root;
            let data = |k: &str| str_at(root, &["error", "data", k]);
            let decision = match data("decision").as_deref() {
                Some("deny") => Decision::Denied,
                Some("rate_limited") => Decision::RateLimited,
                // Only when approval cannot even be asked (e.g. in a batch).
                Some("approval_refused") => Decision::Denied,
                _ => Decision::Invalid,
            };
            let mut limits = Vec::new();
            if decision == Decision::RateLimited {
                if let Some(name) = data("counter") {
                    let retry = raw_at(root, &["error", "data", "retry_after_seconds"]);
                    limits = policy
                        .counters
                        .iter()
                        .filter(|c| c.name == name)
                        .map(|c| Limit {
                            counter: c.name.clone(),
                            window: c.window.name(),
                            algorithm: c.algorithm.name(),
                            max: c.max,
                            scope: c.scope.name(),
                            global: is_global(policy, c),
                            whose: whose(policy, c.scope, call),
                            state: format!(
                                "not enough room left for this call; retry in {} s",
                                retry.as_deref().unwrap_or("?")
                            ),
                        })
                        .collect();
                }
            }
            Explanation {
                tool: call.tool.clone(),
                entry: entry_text(policy, &call.tool),
                decision,
                rule: data("rule").unwrap_or_default(),
                reason: data("reason")
                    .or_else(|| str_at(root, &["error", "message"]))
                    .unwrap_or_default(),
                limits,
                approval: None,
                answer: Some(reply.body.clone()),
                notes: Vec::new(),
            }
        }
    };
    if out.answer.is_some() && policy.settings.error_style != ErrorStyle::JsonRpc {
        let own = Engine::new(policy.clone());
        if let Verdict::Reply { reply, .. } = judge(&own, &body, call, clock, &mut Vec::new()) {
            out.answer = Some(reply.body);
        }
    }
    if risk_note && out.rule.starts_with("risk_actions.") {
        notes.push(
            "no --server-risk given: under risk_actions a tool the policy does not classify and the filter has not seen in a tools/list answer counts as destructive"
                .to_string(),
        );
    }
    out.notes = notes;
    Ok(out)
}

/// A `RateLimitResponse` with `overall_code: OK` (field 1, varint 1).
const RATE_LIMIT_SERVICE_OK: &[u8] = &[0x08, 0x01];

fn judge(
    engine: &Engine,
    body: &str,
    call: &Call,
    clock: &dyn Clock,
    notes: &mut Vec<String>,
) -> Verdict {
    let store = MemoryStore::new();
    if let Some(r) = call.server_risk {
        risk::learn(&store, &[(call.tool.clone(), r)]);
    }
    // --grant is the header value as an agent would send it: canonical
    // (or refused) exactly as in Envoy.
    let grant = match (&engine.policy.settings.grant, &call.grant) {
        (_, None) => credentials::Grant::Absent,
        (GrantSource::Header(h), Some(g)) => credentials::from_header(h, &[g.as_bytes()]),
        (GrantSource::Property(_), Some(g)) => {
            credentials::from_property(Some(g.as_bytes().to_vec()))
        }
    };
    let caller = Caller {
        claims: call.claims.clone(),
        principal: call.principal.clone(),
        ..Caller::default()
    };
    let scopes = Scopes {
        grant: grant.key(),
        grant_error: grant.problem(),
        session: call.session.as_deref().map(str::as_bytes),
        source: call.source.as_deref().map(str::as_bytes),
        caller: Some(&caller),
        ..Scopes::default()
    };
    let verdict = engine.decide(body.as_bytes(), &scopes, &store, clock);
    match verdict {
        // Global limits: the local count passed (it is the pre-check); the
        // rate limit service cannot be asked from here, so assume it has room.
        Verdict::AskRateLimit(pending)
            if global_limits::decode_response(RATE_LIMIT_SERVICE_OK) == GlobalAnswer::Ok =>
        {
            notes.push(format!(
                "global limits: the filter would now ask the rate limit service at cluster \"{}\" (timeout {} ms); shown as if it answered OK (it refuses with -31002 when the cluster-wide count is used up)",
                pending.cluster, pending.timeout_ms
            ));
            engine.resolve_global(*pending, Ok(RATE_LIMIT_SERVICE_OK), &store)
        }
        other => other,
    }
}

fn allowed_rule(policy: &Policy, tool: &str) -> String {
    match policy.entry(tool) {
        Some((key, _)) => format!("tools.{key}"),
        None => "default".to_string(),
    }
}

fn allowed_reason(policy: &Policy, tool: &str) -> String {
    match policy.entry(tool) {
        Some((key, _)) if key != tool => format!(
            "tool \"{tool}\" matches the pattern \"{key}\" under \"tools\" and no rule refuses these arguments"
        ),
        Some(_) => {
            format!("tool \"{tool}\" is listed under \"tools\" and no rule refuses these arguments")
        }
        None => format!("tool \"{tool}\" is not listed and the policy's default is allow"),
    }
}

/// Which `tools` entry speaks for `tool`, and why that one.
fn entry_text(policy: &Policy, tool: &str) -> String {
    let shown = config::child("tools", tool);
    match policy.entry(tool) {
        Some((key, _)) if key == tool => format!("{shown} (exact name)"),
        Some((key, _)) => {
            let specificity = policy
                .patterns
                .iter()
                .find(|p| p.glob.text == key)
                .map_or(0, |p| p.glob.specificity());
            format!(
                "{} (pattern, {specificity} literal characters: no exact entry, and no more specific pattern matches)",
                config::child("tools", key)
            )
        }
        None => "none (no key under tools names or matches this tool)".to_string(),
    }
}

/// The limits a forwarded (or held) call was charged, in the order taken.
fn charged_limits(policy: &Policy, call: &Call, charges: &[Charge]) -> Vec<Limit> {
    charges
        .iter()
        .filter_map(|charge| {
            // Charges name their shared-data key, <KEY_PREFIX><counter>/<slot>.
            let counter = policy.counters.iter().find(|c| {
                charge
                    .key
                    .strip_prefix(&format!("{}{}/", ratelimit::KEY_PREFIX, c.name))
                    .is_some_and(|slot| {
                        !slot.is_empty() && slot.bytes().all(|b| b.is_ascii_digit())
                    })
            })?;
            Some(Limit {
                counter: counter.name.clone(),
                window: counter.window.name(),
                algorithm: counter.algorithm.name(),
                max: counter.max,
                scope: counter.scope.name(),
                global: is_global(policy, counter),
                whose: whose(policy, counter.scope, call),
                state: format!("this call takes {}", milli(charge.amount)),
            })
        })
        .collect()
}

/// Thousandths as a short decimal: 1000 → "1", 2500 → "2.5".
fn milli(amount: u64) -> String {
    let whole = amount / 1000;
    let frac = amount % 1000;
    if frac == 0 {
        whole.to_string()
    } else {
        let f = format!("{frac:03}");
        format!("{whole}.{}", f.trim_end_matches('0'))
    }
}

fn is_global(policy: &Policy, counter: &Counter) -> bool {
    counter.global
        || policy
            .rate_limit_service
            .as_ref()
            .is_some_and(|s| s.all_limits)
}

fn whose(policy: &Policy, scope: Scope, call: &Call) -> String {
    let anonymous = |flag: &str| format!("no {flag} given: the shared \"anonymous\" bucket");
    match scope {
        Scope::Global => "the whole Envoy process".to_string(),
        Scope::Grant => {
            match &policy.settings.caller.grant_from {
                Some(GrantFrom::Principal) => {
                    return match &call.principal {
                        Some(p) => format!("principal {}", json_string(p)),
                        None => anonymous("--principal"),
                    }
                }
                Some(GrantFrom::Claim(_)) => {
                    return match &call.claims {
                        Some(_) => "the --claims value named by settings.grant_from".to_string(),
                        None => anonymous("--claims"),
                    }
                }
                None => {}
            }
            let from = match &policy.settings.grant {
                GrantSource::Header(h) => format!("the {h} header"),
                GrantSource::Property(p) => format!("property {}", p.join(".")),
            };
            match &call.grant {
                Some(_) => format!("the --grant value (in Envoy: {from})"),
                None => format!("{} (in Envoy: {from})", anonymous("--grant")),
            }
        }
        Scope::Session => match &call.session {
            Some(s) => format!("session {}", json_string(s)),
            None => format!("{} (in Envoy: Mcp-Session-Id)", anonymous("--session")),
        },
        Scope::Source => match &call.source {
            Some(s) => format!("source address {s}"),
            None => format!("{} (in Envoy: the client address)", anonymous("--source")),
        },
    }
}

fn node_at<'n, 'a>(root: &'n Node<'a>, path: &[&str]) -> Option<&'n Node<'a>> {
    path.iter().try_fold(root, |node, key| node.get(key))
}

fn str_at(root: &Node<'_>, path: &[&str]) -> Option<String> {
    node_at(root, path)
        .and_then(Node::as_str)
        .map(str::to_string)
}

fn raw_at(root: &Node<'_>, path: &[&str]) -> Option<String> {
    match &node_at(root, path)?.value {
        json::Value::Number(n) => Some((*n).to_string()),
        json::Value::String(s) => Some(s.to_string()),
        _ => None,
    }
}

impl Explanation {
    /// The human-readable report.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let line = |out: &mut String, k: &str, v: &str| {
            out.push_str(format!("{k:<10}{v}").trim_end());
            out.push('\n');
        };
        line(&mut out, "decision:", self.decision.name());
        line(&mut out, "tool:", &json_string(&self.tool));
        line(&mut out, "entry:", &self.entry);
        if !self.rule.is_empty() {
            line(&mut out, "rule:", &self.rule);
        }
        line(&mut out, "reason:", &self.reason);
        if let Some(a) = &self.approval {
            line(&mut out, "approval:", a);
        }
        if self.limits.is_empty() {
            let none = match self.decision {
                Decision::Allowed | Decision::NeedsApproval => {
                    "none (no limit applies to this tool)"
                }
                Decision::Denied | Decision::Invalid | Decision::RateLimited => {
                    "none consulted (a refused call takes nothing from any counter)"
                }
            };
            line(&mut out, "limits:", none);
        } else {
            line(&mut out, "limits:", "");
            for l in &self.limits {
                let global = if l.global {
                    ", cluster-wide via the rate limit service"
                } else {
                    ""
                };
                out.push_str(&format!(
                    "  - {}: {} per {} ({} window), scope {}{global}; {}\n      budget of: {}\n",
                    l.counter, l.max, l.window, l.algorithm, l.scope, l.state, l.whose
                ));
            }
            if matches!(self.decision, Decision::Allowed | Decision::NeedsApproval) {
                out.push_str("  (counters start empty here; a running filter refuses the call once max is used up in the window)\n");
            }
        }
        if let Some(a) = &self.answer {
            line(&mut out, "answer:", a);
        }
        for n in &self.notes {
            line(&mut out, "note:", n);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::milli;

    #[test]
    fn thousandths_print_short() {
        assert_eq!(milli(1000), "1");
        assert_eq!(milli(2500), "2.5");
        assert_eq!(milli(250), "0.25");
        assert_eq!(milli(5001), "5.001");
    }
}
