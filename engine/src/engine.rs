//! The decision for one HTTP request: read the body once, judge every
//! JSON-RPC message in it, and either forward it untouched or answer locally.

use std::borrow::Cow;

use crate::answer::{self, LocalReply, Outcome, RateInfo, Refusal};
pub use crate::audit::CallRecord;
use crate::caller::{Caller, CallerNeeds, CallerView};
use crate::config;
use crate::global_limits::{self, GlobalAnswer, GlobalTake};
use crate::json::{self, Node, Value};
use crate::jsonrpc::{self, CallKind, Message};
use crate::pins::{self, CallCheck, Listed, Mismatch};
use crate::policy::{
    ApprovalService, CallVerdict, Counter, ErrorStyle, FailureMode, Policy, Scope,
};
use crate::ratelimit::{self, Charge, Denial, Take};
use crate::risk;
use crate::routing_headers::{self, RoutingHeaders};
use crate::store::{Clock, SharedStore};
use crate::text;
use crate::tools_list::{self, EventStreamFilter, ListId, StreamOutput, Unfilterable};
use crate::write::ObjectWriter;

/// What the `global` scope counts by: one value for every call.
const GLOBAL_SCOPE_VALUE: &[u8] = b"global";

/// Default key for scope fingerprints; `settings.grant_hash_key` replaces it.
const DEFAULT_HASH_KEY: &[u8] = b"mcp-policy/scope-fingerprint/v1";

/// Name prefix of shadow budgets: shadowed calls count in a copy of each
/// counter under this name, never in the enforced one. Policy counter names
/// cannot start with `~`.
pub const SHADOW_PREFIX: &str = "~shadow/";

/// What the host knows about the request besides its body: scope values
/// (raw; hashed here) and the request id for approvals and audit.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scopes<'a> {
    /// The grant's canonical key (see [`crate::credentials`]).
    pub grant: Option<&'a [u8]>,
    /// Why the grant header was refused, if it was: a `tools/call` is then
    /// refused rather than counted under a key of the agent's choosing.
    pub grant_error: Option<&'a str>,
    pub session: Option<&'a [u8]>,
    pub source: Option<&'a [u8]>,
    /// `x-request-id`, passed to the approval service.
    pub request_id: Option<&'a str>,
    /// Who is calling (read by the host only when the policy uses it).
    pub caller: Option<&'a Caller>,
}

/// What the adapter should do with the request.
#[derive(Debug)]
pub enum Verdict {
    /// Forward the body unchanged.
    Forward(Forwarded),
    /// Answer locally; nothing reaches the upstream.
    Reply {
        reply: LocalReply,
        calls: Vec<CallRecord>,
    },
    /// Hold the request and ask the approval service; settle the answer
    /// with [`Engine::resolve_approval`].
    Approve(Box<PendingApproval>),
    /// Hold the request and ask the rate limit service (gRPC); settle the
    /// answer with [`Engine::resolve_global`].
    AskRateLimit(Box<PendingGlobal>),
}

/// A request held for the rate limit service.
#[derive(Debug)]
pub struct PendingGlobal {
    pub cluster: String,
    pub timeout_ms: u64,
    /// The encoded `RateLimitRequest`.
    pub request: Vec<u8>,
    /// (message index, what it takes) per global limit, in request order.
    takes: Vec<(usize, GlobalTake)>,
    ids: Vec<Option<ReplyTo<String>>>,
    batch: bool,
    forwarded: Forwarded,
    approval: Option<PendingApproval>,
}

/// A call held for approval.
#[derive(Debug)]
pub struct PendingApproval {
    pub service: ApprovalService,
    /// The JSON body to POST to the approval service.
    pub body: String,
    pub tool: String,
    pub rule: String,
    pub reason: String,
    /// The JSON-RPC id (raw) to answer with if refused.
    pub id: String,
    /// Whether the held message is a `tools/call` (not a resource or prompt).
    pub tool_call: bool,
    /// What forwarding leaves to do, if approved (units are already taken).
    pub forwarded: Forwarded,
}

/// What a forwarded request leaves to do on its answer.
#[derive(Debug, Default)]
pub struct Forwarded {
    /// Ids of `tools/list` requests whose answers must be filtered.
    pub list_ids: Vec<ListId>,
    /// Units taken from counters (given back on upstream error if enabled).
    pub charges: Vec<Charge>,
    pub calls: Vec<CallRecord>,
}

/// Counters count thousandths so `increment_from` amounts like 0.25 are
/// exact; a plain call takes one whole unit.
const MILLI: u64 = 1000;

/// The policy engine: immutable after configure, shared by every request.
#[derive(Debug)]
pub struct Engine {
    pub policy: Policy,
    /// The policy's counters with `max` in thousandths.
    scaled_counters: Vec<Counter>,
    /// `scaled_counters` renamed into the shadow namespace, same indices.
    shadow_counters: Vec<Counter>,
    /// Some counter is scoped by the downstream address.
    needs_source: bool,
    /// What the policy reads about the caller.
    caller_needs: CallerNeeds,
    /// The `global` scope's fingerprint: the same for every call, so
    /// hashed once here rather than per call and counter.
    global_fingerprint: u64,
    /// Some tool call can be shadowed (settings, `"*"` or an entry): without
    /// it, the per-call look-up in [`Policy::shadowed`] is skipped.
    any_shadow: bool,
}

impl Engine {
    pub fn new(policy: Policy) -> Self {
        let scaled_counters: Vec<Counter> = policy
            .counters
            .iter()
            .map(|c| Counter {
                max: c.max.saturating_mul(MILLI),
                ..c.clone()
            })
            .collect();
        let needs_source = policy.counters.iter().any(|c| c.scope == Scope::Source);
        let shadow_counters = scaled_counters
            .iter()
            .map(|c| Counter {
                name: format!("{SHADOW_PREFIX}{}", c.name),
                global: false,
                ..c.clone()
            })
            .collect();
        let caller_needs = policy.caller_needs();
        let any_shadow = policy.settings.shadow
            || policy.wildcard.shadow
            || policy.tools.values().any(|r| r.shadow)
            || policy.patterns.iter().any(|p| p.rule.shadow);
        let mut engine = Self {
            policy,
            scaled_counters,
            shadow_counters,
            needs_source,
            caller_needs,
            global_fingerprint: 0,
            any_shadow,
        };
        engine.global_fingerprint = engine.fingerprint(Scope::Global, Some(GLOBAL_SCOPE_VALUE));
        engine
    }

    /// Checks made on request headers, before any body byte is buffered.
    pub fn check_headers(
        &self,
        content_length: Option<&str>,
        content_encoding: Option<&str>,
    ) -> Option<LocalReply> {
        if let Some(enc) = content_encoding {
            let identity = enc
                .split(',')
                .all(|e| e.trim().eq_ignore_ascii_case("identity") || e.trim().is_empty());
            if !identity {
                return Some(answer::http_error(
                    415,
                    &format!(
                        "Content-Encoding \"{}\" is not accepted: the MCP policy filter inspects only identity-encoded bodies",
                        enc.trim()
                    ),
                ));
            }
        }
        if let Some(len) = content_length {
            match len.trim().parse::<u64>() {
                Ok(n) => return self.check_size(n),
                Err(_) => return Some(answer::http_error(400, "Content-Length is not a number")),
            }
        }
        None
    }

    /// 413 when a body (announced or buffered so far) passes the limit.
    pub fn check_size(&self, size: u64) -> Option<LocalReply> {
        let limit = self.policy.settings.max_body_bytes;
        (size > limit).then(|| {
            answer::http_error(
                413,
                &format!(
                    "Request body of {size} bytes exceeds the MCP policy limit of {limit} bytes"
                ),
            )
        })
    }

    /// Judges a complete request body.
    pub fn decide(
        &self,
        body: &[u8],
        scopes: &Scopes<'_>,
        store: &dyn SharedStore,
        clock: &dyn Clock,
    ) -> Verdict {
        self.decide_with_routing(body, scopes, &RoutingHeaders::default(), store, clock)
    }

    /// Judges a complete request body, also checking the MCP routing headers
    /// (`Mcp-Method`, `Mcp-Name`) against it.
    pub fn decide_with_routing(
        &self,
        body: &[u8],
        scopes: &Scopes<'_>,
        routing: &RoutingHeaders<'_>,
        store: &dyn SharedStore,
        clock: &dyn Clock,
    ) -> Verdict {
        let doc = match json::parse_with_depth(body, self.policy.settings.max_depth) {
            Ok(doc) => doc,
            Err(e) => return invalid(answer::parse_error(&e.to_string())),
        };
        let (messages, batch): (&[Node<'_>], bool) = match &doc.root.value {
            Value::Array(items) if items.is_empty() => {
                return invalid(answer::invalid_request("empty batch"));
            }
            Value::Array(items) if items.len() > self.policy.settings.max_batch => {
                return invalid(oversize_batch(items, self.policy.settings.max_batch));
            }
            Value::Array(items) => (items, true),
            _ => (std::slice::from_ref(&doc.root), false),
        };
        let mut classified = Vec::with_capacity(messages.len());
        for (i, node) in messages.iter().enumerate() {
            match jsonrpc::classify(node).map(|m| self.governed(m)) {
                Ok(Ok(m)) => classified.push(m),
                Ok(Err(reason)) if batch => {
                    return invalid(answer::invalid_request(&format!(
                        "batch element {i}: {reason}"
                    )))
                }
                Ok(Err(reason)) => return invalid(answer::invalid_request(&reason)),
                Err(e) if batch => {
                    return invalid(answer::invalid_request(&format!(
                        "batch element {i}: {}",
                        e.reason
                    )))
                }
                Err(e) => return invalid(answer::invalid_request(&e.reason)),
            }
        }
        if routing.method.is_some() || routing.name.is_some() {
            let pairs: Vec<_> = messages.iter().zip(classified.iter()).collect();
            if let Some(problem) = routing_headers::mismatch(routing, &pairs) {
                return invalid(answer::header_mismatch(&problem));
            }
        }
        if let Some(problem) = scopes.grant_error {
            // Only calls are counted, so only they need a certain identity;
            // other messages pass as they would without the header.
            if classified
                .iter()
                .any(|m| matches!(m, Message::ToolCall { .. }))
            {
                return invalid(answer::bad_credentials(problem));
            }
        }
        self.judge(doc.source, &classified, batch, scopes, store, clock)
    }

    /// Resource and prompt messages are judged only when the policy has
    /// their section; without it they pass as plumbing, exactly as before.
    /// An unreadable one of a governed kind is refused (the reason).
    fn governed<'d, 'a>(&self, msg: Message<'d, 'a>) -> Result<Message<'d, 'a>, String> {
        match msg {
            Message::ToolCall { kind, id, .. } | Message::ItemsList { kind, id }
                if !self.policy.governs(kind) =>
            {
                Ok(Message::Other { id: Some(id) })
            }
            Message::Unjudged { kind, id, .. } if !self.policy.governs(kind) => {
                Ok(Message::Other { id })
            }
            Message::Unjudged { reason, .. } => Err(reason),
            other => Ok(other),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn judge(
        &self,
        source: &str,
        messages: &[Message<'_, '_>],
        batch: bool,
        scopes: &Scopes<'_>,
        store: &dyn SharedStore,
        clock: &dyn Clock,
    ) -> Verdict {
        let caller = scopes.caller.map(Caller::view).unwrap_or_default();
        let unreadable = scopes.caller.and_then(|c| c.unreadable.as_deref());
        let grant = self.grant_value(scopes, &caller);
        let scopes = &Scopes {
            grant: grant.as_deref(),
            ..*scopes
        };
        let mut refusals: Vec<Option<Refusal>> = Vec::with_capacity(messages.len());
        // What the calls take, and the message each take belongs to.
        let mut takes: Vec<Take> = Vec::new();
        let mut take_messages: Vec<usize> = Vec::new();
        let mut approvals: Vec<(usize, String, String)> = Vec::new();
        let mut forwarded = Forwarded::default();
        // Shadowed calls: what would have happened, their shadow takes and
        // the approval they would have needed, per message.
        // (Filled on first use: most requests note nothing.)
        let mut notes: Vec<Option<Refusal>> = Vec::new();
        let mut shadow_takes: Vec<(usize, Vec<Take>)> = Vec::new();
        let mut shadow_approvals: Vec<(usize, String, String)> = Vec::new();
        let hint = |tool: &str| risk::lookup(store, tool);
        for (i, msg) in messages.iter().enumerate() {
            let mut refusal = None;
            // A pin mismatch in `flag` mode: forwarded, recorded as flagged.
            let mut flagged: Option<(String, String)> = None;
            // An identity we cannot read is refused even in shadow mode.
            let shadow = match msg {
                Message::ToolCall {
                    kind: CallKind::Tool,
                    tool,
                    ..
                } => unreadable.is_none() && self.any_shadow && self.policy.shadowed(tool),
                Message::ToolCall { kind, tool, .. } => self.policy.item_shadowed(*kind, tool),
                _ => false,
            };
            match msg {
                Message::ToolCall { tool, .. }
                    if scopes.grant.is_none() && self.policy.settings.require_grant =>
                {
                    refusal = Some(self.no_grant_refusal(tool));
                }
                Message::ToolCall {
                    kind,
                    tool,
                    arguments,
                    ..
                } => {
                    let mut own_takes = Vec::new();
                    let mut approval = None;
                    let verdict = match unreadable {
                        _ if *kind != CallKind::Tool => self.policy.decide_item(*kind, tool),
                        Some(why) => unreadable_caller(why),
                        None => match self.pin_check(store, tool) {
                            CallCheck::Refuse { rule, reason } => {
                                CallVerdict::Deny { rule, reason }
                            }
                            CallCheck::Flag { rule, reason } => {
                                flagged = Some((rule, reason));
                                self.policy
                                    .decide_call_for(tool, *arguments, &caller, &hint)
                            }
                            CallCheck::Pass => self
                                .policy
                                .decide_call_for(tool, *arguments, &caller, &hint),
                        },
                    };
                    let limits = match verdict {
                        CallVerdict::Deny { rule, reason } => {
                            refusal = Some(denied(tool, rule, reason));
                            Vec::new()
                        }
                        CallVerdict::Allow { limits } => limits,
                        CallVerdict::Approve {
                            limits,
                            rule,
                            reason,
                        } => {
                            approval = Some((i, rule, reason));
                            limits
                        }
                    };
                    own_takes.reserve_exact(limits.len());
                    for counter in limits {
                        match self.take(counter, scopes, *arguments) {
                            Ok(take) => own_takes.push(take),
                            Err(reason) => {
                                refusal = Some(self.limit_refusal(tool, counter, reason))
                            }
                        }
                    }
                    if shadow {
                        if refusal.is_none() {
                            shadow_takes.push((i, own_takes));
                            shadow_approvals.extend(approval);
                        }
                    } else {
                        take_messages.extend(std::iter::repeat_n(i, own_takes.len()));
                        takes.extend(own_takes);
                        approvals.extend(approval);
                    }
                }
                Message::ToolsList { id } | Message::ItemsList { id, .. } => {
                    if let Some(list_id) = ListId::of(id) {
                        forwarded.list_ids.push(list_id);
                    }
                }
                Message::Other { .. } | Message::Unjudged { .. } | Message::Response => {}
            }
            if shadow {
                if let Some(r) = refusal.take() {
                    note_shadowed(&mut notes, messages.len(), i, r);
                }
            }
            if let (Some(flag), None, Message::ToolCall { tool, .. }) = (flagged, &refusal, msg) {
                note_flagged(&mut notes, messages.len(), i, tool, flag);
            }
            refusals.push(refusal);
        }
        if refusals.iter().all(Option::is_none) && !takes.is_empty() {
            match ratelimit::acquire_indexed(
                store,
                &self.scaled_counters,
                self.policy.settings.counter_slots,
                &takes,
                clock.now_unix_millis(),
            ) {
                Ok(charges) => forwarded.charges = charges,
                Err((failed, denial)) => {
                    let element = take_messages.get(failed).copied().unwrap_or(0);
                    self.blame_rate(&mut refusals, messages, element, &denial);
                }
            }
        }
        let admitted = refusals.iter().all(Option::is_none);
        if admitted && !(shadow_takes.is_empty() && shadow_approvals.is_empty()) {
            self.shadow_limits(
                store,
                clock,
                messages,
                &shadow_takes,
                &mut notes,
                &mut forwarded,
            );
            note_shadow_approvals(&mut notes, messages, shadow_approvals);
        }
        let mut approval = None;
        if admitted && !approvals.is_empty() {
            match self.pending_approval(source, messages, batch, scopes, &approvals) {
                Ok(pending) => approval = Some(pending),
                Err(reason) => {
                    ratelimit::release(store, &forwarded.charges);
                    refuse_approvals(&mut refusals, messages, &approvals, &reason);
                }
            }
        }
        let calls = call_records(messages, &refusals, &notes);
        if refusals.iter().any(Option::is_some) {
            return Verdict::Reply {
                reply: self.refusal_answer(&raw_ids(source, messages), &refusals, batch),
                calls,
            };
        }
        forwarded.calls = calls;
        match &self.policy.rate_limit_service {
            Some(service) => {
                let takes = take_messages.iter().copied().zip(takes.iter());
                self.ask_rate_limit(service, source, messages, batch, takes, forwarded, approval)
            }
            None => self.after_limits(forwarded, approval),
        }
    }

    /// With a rate limit service: the request waits for its answer when
    /// any of its takes is one the service counts (`takes`: message index,
    /// take); otherwise it goes on as without a service.
    #[allow(clippy::too_many_arguments)]
    #[inline(never)]
    fn ask_rate_limit<'t>(
        &self,
        service: &crate::policy::RateLimitService,
        source: &str,
        messages: &[Message<'_, '_>],
        batch: bool,
        takes: impl Iterator<Item = (usize, &'t Take)>,
        forwarded: Forwarded,
        approval: Option<PendingApproval>,
    ) -> Verdict {
        let global: Vec<(usize, GlobalTake)> = takes
            .filter(|(_, t)| self.is_global(t.counter))
            .filter_map(|(i, t)| {
                let Some(Message::ToolCall { tool, .. }) = messages.get(i) else {
                    return None;
                };
                Some((
                    i,
                    GlobalTake {
                        counter: t.counter,
                        fingerprint: t.fingerprint,
                        amount: t.amount.div_ceil(MILLI),
                        tool: text::shown_name(tool).into_owned(),
                    },
                ))
            })
            .collect();
        if global.is_empty() {
            return self.after_limits(forwarded, approval);
        }
        let only: Vec<GlobalTake> = global.iter().map(|(_, t)| t.clone()).collect();
        Verdict::AskRateLimit(Box::new(PendingGlobal {
            cluster: service.cluster.clone(),
            timeout_ms: service.timeout_ms,
            request: global_limits::encode_request(
                &service.domain,
                &self.policy.counters,
                &only,
                service.include_tool,
            ),
            takes: global,
            ids: raw_ids(source, messages)
                .into_iter()
                .map(|to| {
                    to.map(|to| ReplyTo {
                        id: to.id.to_string(),
                        tool_call: to.tool_call,
                    })
                })
                .collect(),
            batch,
            forwarded,
            approval,
        }))
    }

    /// Counts shadowed calls in their shadow budgets (each call on its own,
    /// so one call's exhausted budget is not blamed on another): an
    /// exhausted budget is noted as `would_rate_limit`, a taken one is kept
    /// with the request's charges (refunds and releases treat it alike).
    fn shadow_limits(
        &self,
        store: &dyn SharedStore,
        clock: &dyn Clock,
        messages: &[Message<'_, '_>],
        shadow_takes: &[(usize, Vec<Take>)],
        notes: &mut Vec<Option<Refusal>>,
        forwarded: &mut Forwarded,
    ) {
        for (i, takes) in shadow_takes {
            if takes.is_empty() {
                continue;
            }
            match ratelimit::acquire_indexed(
                store,
                &self.shadow_counters,
                self.policy.settings.counter_slots,
                takes,
                clock.now_unix_millis(),
            ) {
                Ok(charges) => forwarded.charges.extend(charges),
                Err((_, denial)) => {
                    if let (Some(note), Some(Message::ToolCall { tool, .. })) =
                        (note_at(notes, messages.len(), *i), messages.get(*i))
                    {
                        *note = Some(self.rate_refusal(tool, &denial).shadowed());
                    }
                }
            }
        }
    }

    /// Limits are settled: ask for approval if needed, else forward.
    fn after_limits(&self, forwarded: Forwarded, approval: Option<PendingApproval>) -> Verdict {
        match approval {
            Some(mut pending) => {
                pending.forwarded = forwarded;
                Verdict::Approve(Box::new(pending))
            }
            None => Verdict::Forward(forwarded),
        }
    }

    fn is_global(&self, counter: usize) -> bool {
        match &self.policy.rate_limit_service {
            Some(service) => {
                service.all_limits || self.policy.counters.get(counter).is_some_and(|c| c.global)
            }
            None => false,
        }
    }

    /// Settles a call held for the rate limit service: its gRPC answer, or
    /// the failure (error status, timeout) as text.
    pub fn resolve_global(
        &self,
        pending: PendingGlobal,
        answer: Result<&[u8], String>,
        store: &dyn SharedStore,
    ) -> Verdict {
        let decoded = match answer {
            Ok(bytes) => global_limits::decode_response(bytes),
            Err(e) => GlobalAnswer::Failed(e),
        };
        let failure_mode = self
            .policy
            .rate_limit_service
            .as_ref()
            .map(|s| s.failure_mode)
            .unwrap_or(FailureMode::Deny);
        let (take_index, retry, detail) = match decoded {
            GlobalAnswer::Ok => return self.after_limits(pending.forwarded, pending.approval),
            // The local units already taken are the fallback limit.
            GlobalAnswer::Failed(_) if failure_mode == FailureMode::Local => {
                return self.after_limits(pending.forwarded, pending.approval)
            }
            GlobalAnswer::Failed(e) => (0, 1, Some(e)),
            GlobalAnswer::OverLimit {
                take,
                retry_after_seconds,
            } => (take, retry_after_seconds, None),
        };
        ratelimit::release(store, &pending.forwarded.charges);
        let (element, take) = match pending.takes.get(take_index) {
            Some((i, t)) => (*i, t.clone()),
            None => {
                return Verdict::Reply {
                    reply: answer::http_error(500, "internal: rate limit answer without a take"),
                    calls: Vec::new(),
                }
            }
        };
        let mut refusal = self.rate_refusal(
            &take.tool,
            &Denial::Exhausted {
                counter: take.counter,
                retry_after_seconds: retry,
            },
        );
        if let Some(e) = detail {
            refusal.rule = "rate_limit_service".to_string();
            refusal.reason = format!(
                "the rate limit service could not be asked ({e}) and failure_mode is deny; retry later"
            );
        }
        let mut refusals: Vec<Option<Refusal>> = vec![None; pending.ids.len()];
        if let Some(slot) = refusals.get_mut(element) {
            *slot = Some(refusal.clone());
        }
        let ids: Vec<Option<ReplyTo<&str>>> = pending
            .ids
            .iter()
            .map(|to| {
                to.as_ref().map(|to| ReplyTo {
                    id: to.id.as_str(),
                    tool_call: to.tool_call,
                })
            })
            .collect();
        let mut marked = false;
        let calls = pending
            .forwarded
            .calls
            .into_iter()
            .map(|mut call| {
                if !marked && call.tool == take.tool {
                    marked = true;
                    call.outcome = Outcome::RateLimited;
                    call.rule = Some(refusal.rule.clone());
                    call.reason = Some(refusal.reason.clone());
                } else {
                    call.outcome = Outcome::Denied;
                    call.rule = Some(crate::audit::BATCH_RULE.to_string());
                    call.reason = Some("another message in the same batch was refused".to_string());
                }
                call
            })
            .collect();
        Verdict::Reply {
            reply: self.refusal_answer(&ids, &refusals, pending.batch),
            calls,
        }
    }

    /// The local answer for a request with at least one refused message;
    /// `ids` holds where each message's answer goes (None for
    /// notifications/responses).
    fn refusal_answer(
        &self,
        ids: &[Option<ReplyTo<&str>>],
        refusals: &[Option<Refusal>],
        batch: bool,
    ) -> LocalReply {
        let outcome = refusals
            .iter()
            .flatten()
            .map(|r| r.outcome)
            .next()
            .unwrap_or(Outcome::Denied);
        let retry_after = refusals
            .iter()
            .flatten()
            .filter_map(|r| r.rate.as_ref().map(|x| x.retry_after_seconds))
            .max();
        let answers = ids
            .iter()
            .zip(refusals)
            .filter_map(|(to, refusal)| {
                let to = to.as_ref()?;
                Some(match refusal {
                    Some(r) => r.to_message(to.id, self.style_for(to.tool_call)),
                    None => answer::batch_sibling(to.id),
                })
            })
            .collect();
        answer::refusal_reply(answers, batch, outcome, retry_after)
    }

    /// The error style of a refusal's answer: the policy's for a `tools/call`;
    /// always a JSON-RPC error for a resource read or prompt get, whose
    /// result schema a tool result does not satisfy (every official client
    /// then fails on the schema and the reason is lost).
    fn style_for(&self, tool_call: bool) -> ErrorStyle {
        if tool_call {
            self.policy.settings.error_style
        } else {
            ErrorStyle::JsonRpc
        }
    }

    /// Builds the question for the approval service (one call, not a batch).
    fn pending_approval(
        &self,
        source: &str,
        messages: &[Message<'_, '_>],
        batch: bool,
        scopes: &Scopes<'_>,
        approvals: &[(usize, String, String)],
    ) -> Result<PendingApproval, String> {
        let Some(service) = self.policy.approval.clone() else {
            return Err("no approval service is configured".to_string());
        };
        let (i, rule, reason) = match (batch, approvals) {
            (false, [one]) => one,
            _ => return Err("calls that need approval cannot be sent in a batch".to_string()),
        };
        let Some(Message::ToolCall {
            kind,
            id,
            tool,
            arguments,
        }) = messages.get(*i)
        else {
            return Err("internal: approval for a non-call".to_string());
        };
        let grant = self.fingerprint(Scope::Grant, scopes.grant);
        let subject = scopes.caller.and_then(Caller::subject);
        let body = ObjectWriter::new()
            .str("tool", tool)
            .raw(
                "arguments",
                arguments.map(|a| a.raw(source)).unwrap_or("{}"),
            )
            .str("grant", &format!("{grant:016x}"))
            .opt_str(
                "session",
                scopes.session.and_then(|s| std::str::from_utf8(s).ok()),
            )
            .opt_str("request_id", scopes.request_id)
            .opt_str("subject", subject.as_deref())
            .opt_str(
                "principal",
                scopes.caller.and_then(|c| c.principal.as_deref()),
            )
            .raw("jsonrpc_id", id.raw(source))
            .str("rule", rule)
            .str("reason", reason)
            .finish();
        Ok(PendingApproval {
            service,
            body,
            tool: text::shown_name(tool).into_owned(),
            rule: rule.clone(),
            reason: reason.clone(),
            id: id.raw(source).to_string(),
            tool_call: *kind == CallKind::Tool,
            forwarded: Forwarded::default(),
        })
    }

    /// Settles a held call with the approval service's answer: `status` and
    /// `body` of its HTTP response, or None when it timed out or failed.
    pub fn resolve_approval(
        &self,
        pending: PendingApproval,
        answer: Option<(u32, &[u8])>,
        store: &dyn SharedStore,
    ) -> Verdict {
        let refused = match answer {
            None => {
                Some("the approval service did not answer (timeout or unreachable)".to_string())
            }
            Some((200, body)) => match json::parse(body) {
                Ok(doc) => match doc.root.get("decision").and_then(Node::as_str) {
                    Some("allow") => None,
                    Some("deny") => Some(
                        doc.root
                            .get("reason")
                            .and_then(Node::as_str)
                            .map(|r| format!("refused by the approver: {r}"))
                            .unwrap_or_else(|| "refused by the approver".to_string()),
                    ),
                    _ => Some("the approval service answered without a decision".to_string()),
                },
                Err(_) => Some("the approval service answered with invalid JSON".to_string()),
            },
            Some((status, _)) => Some(format!("the approval service answered HTTP {status}")),
        };
        let Some(reason) = refused else {
            return Verdict::Forward(pending.forwarded);
        };
        ratelimit::release(store, &pending.forwarded.charges);
        let refusal = Refusal {
            outcome: Outcome::ApprovalRefused,
            tool: pending.tool.clone(),
            rule: pending.rule.clone(),
            reason: format!("{} ({reason})", pending.reason),
            rate: None,
        };
        let message = refusal.to_message(&pending.id, self.style_for(pending.tool_call));
        Verdict::Reply {
            reply: answer::refusal_reply(vec![message], false, Outcome::ApprovalRefused, None),
            calls: vec![CallRecord {
                tool: pending.tool,
                outcome: Outcome::ApprovalRefused,
                rule: Some(refusal.rule),
                reason: Some(refusal.reason),
            }],
        }
    }

    fn counter_name(&self, counter: usize) -> &str {
        self.policy
            .counters
            .get(counter)
            .map(|c| c.name.as_str())
            .unwrap_or("?")
    }

    fn fingerprint(&self, scope: Scope, value: Option<&[u8]>) -> u64 {
        let key = self
            .policy
            .settings
            .grant_hash_key
            .as_deref()
            .map(str::as_bytes)
            .unwrap_or(DEFAULT_HASH_KEY);
        ratelimit::fingerprint(key, scope, value)
    }

    /// What a call takes from `counter`: 1, or an argument's value for
    /// `increment_from` counters (in thousandths; see `scaled_counters`).
    fn take(
        &self,
        counter: usize,
        scopes: &Scopes<'_>,
        args: Option<&Node<'_>>,
    ) -> Result<Take, String> {
        let def = self.policy.counters.get(counter);
        let scope = def.map(|c| c.scope).unwrap_or(Scope::Global);
        let value = match scope {
            Scope::Global => None,
            Scope::Grant => scopes.grant,
            Scope::Session => scopes.session,
            Scope::Source => scopes.source,
        };
        let amount = match def.and_then(|c| c.increment_from.as_ref().map(|p| (c, p))) {
            None => MILLI,
            Some((c, path)) => match path.resolve(args) {
                None => c.default_increment_milli.ok_or_else(|| {
                    format!(
                        "limit \"{}\" counts argument {}, which the call does not give",
                        c.name, path.text
                    )
                })?,
                Some(node) => match node.as_f64() {
                    Some(v) if v.is_finite() && v >= 0.0 => config::to_milli(v),
                    _ => {
                        return Err(format!(
                            "limit \"{}\" counts argument {}, which must be a number >= 0",
                            c.name, path.text
                        ))
                    }
                },
            },
        };
        let fingerprint = match scope {
            Scope::Global => self.global_fingerprint,
            _ => self.fingerprint(scope, value),
        };
        Ok(Take {
            counter,
            fingerprint,
            amount,
        })
    }

    /// A call without a grant where `settings.require_grant` is set.
    #[cold]
    #[inline(never)]
    fn no_grant_refusal(&self, tool: &str) -> Refusal {
        let reason = format!(
            "the call carries no grant ({}), and settings.require_grant is set",
            self.policy.settings.grant.describe()
        );
        denied(tool, "settings.require_grant".to_string(), reason)
    }

    /// A call whose limit could not be taken (its increment argument).
    #[cold]
    #[inline(never)]
    fn limit_refusal(&self, tool: &str, counter: usize, reason: String) -> Refusal {
        let rule = format!("limits.{}", self.counter_name(counter));
        denied(tool, rule, reason)
    }

    /// Blames the call at `element` for the limit that refused the request.
    #[cold]
    #[inline(never)]
    fn blame_rate(
        &self,
        refusals: &mut [Option<Refusal>],
        messages: &[Message<'_, '_>],
        element: usize,
        denial: &Denial,
    ) {
        if let (Some(slot), Some(Message::ToolCall { tool, .. })) =
            (refusals.get_mut(element), messages.get(element))
        {
            *slot = Some(self.rate_refusal(tool, denial));
        }
    }

    fn rate_refusal(&self, tool: &str, denial: &Denial) -> Refusal {
        let (counter_idx, retry, reason_tail) = match denial {
            Denial::Exhausted {
                counter,
                retry_after_seconds,
            } => (*counter, *retry_after_seconds, None),
            Denial::Unavailable { counter } => {
                (*counter, 1, Some("the counter store is unavailable"))
            }
        };
        let counter = self.policy.counters.get(counter_idx);
        let name = counter.map(|c| c.name.clone()).unwrap_or_default();
        let window = counter.map(|c| c.window.name()).unwrap_or("minute");
        let max = counter.map(|c| c.max).unwrap_or(0);
        let scope = counter.map(|c| c.scope.name()).unwrap_or("global");
        let reason = match (reason_tail, counter.and_then(|c| c.reason.as_ref())) {
            (Some(t), _) => format!("rate limit \"{name}\" cannot be checked: {t}; retry in {retry} s"),
            (None, Some(own)) => own.clone(),
            (None, None) => format!(
                "rate limit \"{name}\" of {max} calls per {window} (per {scope}) reached; retry in {retry} s"
            ),
        };
        Refusal {
            outcome: Outcome::RateLimited,
            tool: text::shown_name(tool).into_owned(),
            rule: format!("limits.{name}"),
            reason,
            rate: Some(RateInfo {
                counter: name,
                window,
                max,
                retry_after_seconds: retry,
            }),
        }
    }

    /// The grant fingerprint (hex) for audit lines: never the raw credential.
    pub fn grant_fingerprint(&self, grant: Option<&[u8]>) -> String {
        format!("{:016x}", self.fingerprint(Scope::Grant, grant))
    }

    /// The session fingerprint (hex) for audit lines: `Mcp-Session-Id` is a
    /// bearer value on many servers, so logs carry its keyed hash (the same
    /// value the `session` scope counts by), never the id itself.
    pub fn session_fingerprint(&self, session: Option<&str>) -> Option<String> {
        session.map(|s| {
            format!(
                "{:016x}",
                self.fingerprint(Scope::Session, Some(s.as_bytes()))
            )
        })
    }

    /// Whether any counter is scoped by the downstream address, so the host
    /// only looks the address up when a decision can use it.
    pub fn needs_source_address(&self) -> bool {
        self.needs_source
    }

    /// Whether `tools/list` answers keep `tool`.
    pub fn lists(&self, tool: &str) -> bool {
        self.policy.lists(tool)
    }

    /// What the host must read about the caller for this policy.
    pub fn caller_needs(&self) -> &CallerNeeds {
        &self.caller_needs
    }

    /// The grant scope's value: the verified identity `settings.grant_from`
    /// names, else the host's grant (header or property).
    /// (Borrowed when it is the host's: no copy per request.)
    fn grant_value<'s>(
        &self,
        scopes: &Scopes<'s>,
        caller: &CallerView<'_>,
    ) -> Option<Cow<'s, [u8]>> {
        match &self.policy.settings.caller.grant_from {
            Some(from) => caller.grant_value(from).map(Cow::Owned),
            None => scopes.grant.map(Cow::Borrowed),
        }
    }

    /// The grant fingerprint (hex) for one caller, as budgets see it.
    pub fn grant_fingerprint_for(&self, grant: Option<&[u8]>, caller: Option<&Caller>) -> String {
        let scopes = Scopes {
            grant,
            caller,
            ..Scopes::default()
        };
        let view = caller.map(Caller::view).unwrap_or_default();
        self.grant_fingerprint(self.grant_value(&scopes, &view).as_deref())
    }

    /// What the policy's pins say about a call of `tool` (nothing to check
    /// without a `pins` section).
    fn pin_check(&self, store: &dyn SharedStore, tool: &str) -> CallCheck {
        match &self.policy.pins {
            Some(p) => p.check_call(store, tool),
            None => CallCheck::Pass,
        }
    }

    /// Whether a listed tool passes the pins, judged on its entry; pinned
    /// tools are collected in `seen` to be learned.
    fn pins_keep(
        &self,
        name: &str,
        entry: &Node<'_>,
        seen: &std::cell::RefCell<Vec<Listed>>,
    ) -> bool {
        let Some(p) = &self.policy.pins else {
            return true;
        };
        if !p.tools.contains_key(name) {
            return p.lists(name, None);
        }
        let listed = Listed::of(name, entry);
        let keep = p.lists(name, Some(&listed));
        seen.borrow_mut().push(listed);
        keep
    }

    /// Filters a JSON `tools/list` answer like [`Engine::filter_tools_list_for`]
    /// and learns, into shared data, the server's risk hints and the
    /// definitions of pinned tools. Returns the pinned tools whose listed
    /// definition differs from their pin (for metrics and audit).
    pub fn filter_tools_list_learning(
        &self,
        body: &[u8],
        ids: &[ListId],
        caller: Option<&Caller>,
        store: &dyn SharedStore,
    ) -> (Result<Option<String>, Unfilterable>, Vec<Mismatch>) {
        self.learn_hints(body, store);
        let view = caller.map(Caller::view).unwrap_or_default();
        let seen = std::cell::RefCell::new(Vec::new());
        let keep = |name: &str, entry: &Node<'_>| {
            let pinned = self.pins_keep(name, entry, &seen);
            self.policy
                .lists_for(name, Some(risk::from_annotations(entry)), &view)
                && pinned
        };
        let result = if self.policy.resources.is_none() && self.policy.prompts.is_none() {
            tools_list::filter_json_with(body, ids, &keep)
        } else {
            let items = |kind: CallKind, name: &str| self.policy.lists_item(kind, name);
            tools_list::filter_json_items(body, ids, &keep, &items)
        };
        (result, self.learn_pins(store, &seen.into_inner()))
    }

    fn learn_pins(&self, store: &dyn SharedStore, seen: &[Listed]) -> Vec<Mismatch> {
        match &self.policy.pins {
            Some(p) => pins::learn(store, p, seen),
            None => Vec::new(),
        }
    }

    /// Filters a JSON `tools/list` answer by request id (event streams go
    /// through [`Engine::filter_event_chunk`], event by event).
    pub fn filter_tools_list(
        &self,
        body: &[u8],
        ids: &[ListId],
    ) -> Result<Option<String>, Unfilterable> {
        self.filter_tools_list_for(body, ids, None)
    }

    /// [`Engine::filter_tools_list`] for one caller: tools whose caller-only
    /// rules refuse this caller are removed too.
    pub fn filter_tools_list_for(
        &self,
        body: &[u8],
        ids: &[ListId],
        caller: Option<&Caller>,
    ) -> Result<Option<String>, Unfilterable> {
        let view = caller.map(Caller::view).unwrap_or_default();
        let keep = |name: &str, entry: &Node<'_>| {
            self.policy
                .lists_for(name, Some(risk::from_annotations(entry)), &view)
        };
        if self.policy.resources.is_none() && self.policy.prompts.is_none() {
            return tools_list::filter_json_with(body, ids, &keep);
        }
        let items = |kind: CallKind, name: &str| self.policy.lists_item(kind, name);
        tools_list::filter_json_items(body, ids, &keep, &items)
    }

    /// A filter for one `text/event-stream` answer, bounded like bodies.
    pub fn event_stream_filter(&self) -> EventStreamFilter {
        EventStreamFilter::new(
            usize::try_from(self.policy.settings.max_body_bytes).unwrap_or(usize::MAX),
        )
    }

    /// Filters the next chunk of an event-stream answer: every `tools/list`
    /// answer in it (recognised by shape) loses hidden and refused tools,
    /// and the server's risk hints are learned on the way.
    pub fn filter_event_chunk(
        &self,
        filter: &mut EventStreamFilter,
        chunk: &[u8],
        end: bool,
        store: &dyn SharedStore,
    ) -> StreamOutput {
        self.filter_event_chunk_for(filter, chunk, end, store, None)
    }

    /// [`Engine::filter_event_chunk`] for one caller.
    pub fn filter_event_chunk_for(
        &self,
        filter: &mut EventStreamFilter,
        chunk: &[u8],
        end: bool,
        store: &dyn SharedStore,
        caller: Option<&Caller>,
    ) -> StreamOutput {
        let view = caller.map(Caller::view).unwrap_or_default();
        let learning = !self.policy.risk_actions.is_empty();
        let seen = std::cell::RefCell::new(Vec::new());
        let pinned = std::cell::RefCell::new(Vec::new());
        let keep = |name: &str, entry: &Node<'_>| {
            let hint = risk::from_annotations(entry);
            if learning {
                seen.borrow_mut().push((name.to_string(), hint));
            }
            let pins_keep = self.pins_keep(name, entry, &pinned);
            self.policy.lists_for(name, Some(hint), &view) && pins_keep
        };
        let items = |kind: CallKind, name: &str| self.policy.lists_item(kind, name);
        let governs_items = self.policy.resources.is_some() || self.policy.prompts.is_some();
        let mut out = filter.push_items(chunk, end, &keep, governs_items.then_some(&items as _));
        if learning {
            risk::learn(store, &seen.into_inner());
        }
        out.pin_mismatches = self.learn_pins(store, &pinned.into_inner());
        out
    }

    /// Whether an upstream answer (JSON or event stream) carries a JSON-RPC
    /// error, i.e. the forwarded call failed. Unreadable answers count as
    /// successes: a refund must never be granted on a guess.
    pub fn answer_is_error(&self, body: &[u8], event_stream: bool) -> bool {
        let has_error = |json: &[u8]| match json::parse(json) {
            Ok(doc) => match &doc.root.value {
                Value::Array(items) => items.iter().any(|m| m.get("error").is_some()),
                _ => doc.root.get("error").is_some(),
            },
            Err(_) => false,
        };
        if !event_stream {
            return has_error(body);
        }
        let Ok(text) = std::str::from_utf8(body) else {
            return false;
        };
        tools_list::split_events(text)
            .into_iter()
            .filter_map(|e| tools_list::event_data(e).0)
            .any(|data| has_error(data.as_bytes()))
    }

    /// Learns the servers' risk hints from a JSON `tools/list` answer (only when
    /// the policy acts on risk categories; otherwise it costs nothing).
    pub fn learn_hints(&self, body: &[u8], store: &dyn SharedStore) {
        if self.policy.risk_actions.is_empty() {
            return;
        }
        risk::learn(store, &risk::hints_in_answer(body));
    }

    /// Gives back units taken for a call the upstream failed.
    pub fn refund(&self, store: &dyn SharedStore, charges: &[Charge]) {
        ratelimit::release(store, charges);
    }
}

/// A shadowed call's refusal, kept as a note (`would_...`).
#[cold]
#[inline(never)]
fn note_shadowed(notes: &mut Vec<Option<Refusal>>, len: usize, i: usize, refusal: Refusal) {
    if let Some(note) = note_at(notes, len, i) {
        *note = Some(refusal.shadowed());
    }
}

/// A forwarded call whose pin mismatched in `flag` mode: noted as flagged.
#[cold]
#[inline(never)]
fn note_flagged(
    notes: &mut Vec<Option<Refusal>>,
    len: usize,
    i: usize,
    tool: &str,
    (rule, reason): (String, String),
) {
    if let Some(note @ None) = note_at(notes, len, i) {
        *note = Some(refusal(Outcome::Flagged, tool, rule, reason));
    }
}

/// Shadowed calls that would have needed approval, noted as such.
#[cold]
#[inline(never)]
fn note_shadow_approvals(
    notes: &mut Vec<Option<Refusal>>,
    messages: &[Message<'_, '_>],
    shadow_approvals: Vec<(usize, String, String)>,
) {
    for (i, rule, reason) in shadow_approvals {
        if let (Some(note @ None), Some(Message::ToolCall { tool, .. })) =
            (note_at(notes, messages.len(), i), messages.get(i))
        {
            *note = Some(refusal(Outcome::WouldNeedApproval, tool, rule, reason));
        }
    }
}

/// Every call that needs approval refused (`ApprovalRefused`): the
/// approval service cannot be asked (`reason`).
#[cold]
#[inline(never)]
fn refuse_approvals(
    refusals: &mut [Option<Refusal>],
    messages: &[Message<'_, '_>],
    approvals: &[(usize, String, String)],
    reason: &str,
) {
    for (i, rule, _) in approvals {
        if let (Some(slot), Some(Message::ToolCall { tool, .. })) =
            (refusals.get_mut(*i), messages.get(*i))
        {
            *slot = Some(refusal(
                Outcome::ApprovalRefused,
                tool,
                rule.clone(),
                reason.to_string(),
            ));
        }
    }
}

/// A call refused because the caller's identity could not be read.
#[cold]
#[inline(never)]
fn unreadable_caller(why: &str) -> CallVerdict {
    CallVerdict::Deny {
        rule: "caller".to_string(),
        reason: format!("the caller's identity could not be read ({why}); the call is refused"),
    }
}

/// `notes[i]`, the notes filled with `None` for all `len` messages on first
/// use (so a request that notes nothing allocates nothing).
fn note_at(notes: &mut Vec<Option<Refusal>>, len: usize, i: usize) -> Option<&mut Option<Refusal>> {
    if notes.is_empty() {
        notes.resize(len, None);
    }
    notes.get_mut(i)
}

fn denied(tool: &str, rule: String, reason: String) -> Refusal {
    refusal(Outcome::Denied, tool, rule, reason)
}

/// A refusal (or note) of a call to `tool`, without a rate to report.
fn refusal(outcome: Outcome, tool: &str, rule: String, reason: String) -> Refusal {
    Refusal {
        outcome,
        tool: text::shown_name(tool).into_owned(),
        rule,
        reason,
        rate: None,
    }
}

/// One error for a batch past `settings.max_batch`, before any element is
/// classified or judged: the cost and the answer stay the same whatever the
/// batch holds.
fn oversize_batch(items: &[Node<'_>], max: usize) -> LocalReply {
    let calls = items
        .iter()
        .filter(|m| m.get("method").and_then(Node::as_str) == Some(jsonrpc::TOOLS_CALL))
        .count();
    answer::invalid_request(&format!(
        "batch of {} messages ({calls} tools/call) exceeds settings.max_batch ({max}); nothing was forwarded",
        items.len()
    ))
}

fn invalid(reply: LocalReply) -> Verdict {
    Verdict::Reply {
        reply,
        calls: Vec::new(),
    }
}

/// Each message's raw id text (None when it has none to answer).
/// Where a refused message's answer goes: its raw id, and whether the
/// message is a `tools/call` (see [`Engine::style_for`]).
#[derive(Debug, Clone)]
struct ReplyTo<S> {
    id: S,
    tool_call: bool,
}

fn raw_ids<'s>(source: &'s str, messages: &[Message<'_, '_>]) -> Vec<Option<ReplyTo<&'s str>>> {
    messages
        .iter()
        .map(|m| {
            request_id(m).map(|id| ReplyTo {
                id: id.raw(source),
                tool_call: matches!(
                    m,
                    Message::ToolCall {
                        kind: CallKind::Tool,
                        ..
                    }
                ),
            })
        })
        .collect()
}

fn request_id<'d, 'a>(msg: &Message<'d, 'a>) -> Option<&'d Node<'a>> {
    match msg {
        Message::ToolCall { id, .. }
        | Message::ToolsList { id }
        | Message::ItemsList { id, .. } => Some(id),
        Message::Other { id } | Message::Unjudged { id, .. } => *id,
        Message::Response => None,
    }
}

/// One record per tool call; in a refused batch, acceptable calls are
/// recorded as refused too, since they were not forwarded either.
/// `notes` holds what shadowed calls would have met.
fn call_records(
    messages: &[Message<'_, '_>],
    refusals: &[Option<Refusal>],
    notes: &[Option<Refusal>],
) -> Vec<CallRecord> {
    let any_refused = refusals.iter().any(Option::is_some);
    messages
        .iter()
        .zip(refusals)
        .zip(notes.iter().chain(std::iter::repeat(&None)))
        .filter_map(|((msg, refusal), note)| {
            let Message::ToolCall { tool, .. } = msg else {
                return None;
            };
            let tool = text::shown_name(tool).into_owned();
            Some(match refusal {
                Some(r) => CallRecord {
                    tool,
                    outcome: r.outcome,
                    rule: Some(r.rule.clone()),
                    reason: Some(r.reason.clone()),
                },
                None if !any_refused && note.is_some() => {
                    let note = note.as_ref();
                    CallRecord {
                        tool,
                        outcome: note.map(|n| n.outcome).unwrap_or(Outcome::Allowed),
                        rule: note.map(|n| n.rule.clone()),
                        reason: note.map(|n| n.reason.clone()),
                    }
                }
                None if any_refused => CallRecord {
                    tool,
                    outcome: Outcome::Denied,
                    rule: Some(crate::audit::BATCH_RULE.to_string()),
                    reason: Some("another message in the same batch was refused".to_string()),
                },
                None => CallRecord {
                    tool,
                    outcome: Outcome::Allowed,
                    rule: None,
                    reason: None,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod item_tests;
#[cfg(test)]
mod shadow_tests;
#[cfg(test)]
mod tests;
