//! The decision for one HTTP request: read the body once, judge every
//! JSON-RPC message in it, and either forward it untouched or answer locally.

use crate::answer::{self, LocalReply, Outcome, RateInfo, Refusal};
use crate::json::{self, Node, Value};
use crate::jsonrpc::{self, Message};
use crate::policy::{Policy, Scope, ToolVerdict};
use crate::ratelimit::{self, Charge, Clock, Denial, SharedStore, Take};
use crate::routing_headers::{self, RoutingHeaders};
use crate::tools_list::{self, ListId, Unfilterable};

/// Default key for scope fingerprints; `settings.grant_hash_key` replaces it.
const DEFAULT_HASH_KEY: &[u8] = b"mcp-policy/scope-fingerprint/v1";

/// The request's scope values, as the host read them (raw; hashed here).
#[derive(Debug, Default, Clone, Copy)]
pub struct Scopes<'a> {
    pub grant: Option<&'a [u8]>,
    pub session: Option<&'a [u8]>,
    pub source: Option<&'a [u8]>,
}

/// One judged `tools/call`, for metrics and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    pub tool: String,
    pub outcome: Outcome,
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

/// The policy engine: immutable after configure, shared by every request.
#[derive(Debug)]
pub struct Engine {
    pub policy: Policy,
}

impl Engine {
    pub fn new(policy: Policy) -> Self {
        Self { policy }
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
        let (messages, batch): (Vec<&Node<'_>>, bool) = match &doc.root.value {
            Value::Array(items) if items.is_empty() => {
                return invalid(answer::invalid_request("empty batch"));
            }
            Value::Array(items) => (items.iter().collect(), true),
            _ => (vec![&doc.root], false),
        };
        let mut classified = Vec::with_capacity(messages.len());
        for (i, node) in messages.iter().enumerate() {
            match jsonrpc::classify(node) {
                Ok(m) => classified.push(m),
                Err(e) if batch => {
                    return invalid(answer::invalid_request(&format!(
                        "batch element {i}: {}",
                        e.reason
                    )))
                }
                Err(e) => return invalid(answer::invalid_request(&e.reason)),
            }
        }
        let pairs: Vec<_> = messages.iter().copied().zip(classified.iter()).collect();
        if let Some(problem) = routing_headers::mismatch(routing, &pairs) {
            return invalid(answer::header_mismatch(&problem));
        }
        self.judge(doc.source, &classified, batch, scopes, store, clock)
    }

    fn judge(
        &self,
        source: &str,
        messages: &[Message<'_, '_>],
        batch: bool,
        scopes: &Scopes<'_>,
        store: &dyn SharedStore,
        clock: &dyn Clock,
    ) -> Verdict {
        let mut refusals: Vec<Option<Refusal>> = Vec::with_capacity(messages.len());
        let mut takes: Vec<(usize, Take)> = Vec::new();
        let mut forwarded = Forwarded::default();
        for (i, msg) in messages.iter().enumerate() {
            let mut refusal = None;
            match msg {
                Message::ToolCall { tool, .. } => match self.policy.decide(tool) {
                    ToolVerdict::Deny { rule, reason } => {
                        refusal = Some(Refusal {
                            outcome: Outcome::Denied,
                            tool: tool.to_string(),
                            rule,
                            reason,
                            rate: None,
                        });
                    }
                    ToolVerdict::Allow { limits } => {
                        for counter in limits {
                            takes.push((i, self.take(counter, scopes)));
                        }
                    }
                },
                Message::ToolsList { id } => {
                    if let Some(list_id) = ListId::of(id) {
                        forwarded.list_ids.push(list_id);
                    }
                }
                Message::Other { .. } | Message::Response => {}
            }
            refusals.push(refusal);
        }
        if refusals.iter().all(Option::is_none) && !takes.is_empty() {
            let only: Vec<Take> = takes.iter().map(|(_, t)| *t).collect();
            let now = clock.now_unix_millis();
            match ratelimit::acquire(
                store,
                &self.policy.counters,
                self.policy.settings.counter_slots,
                &only,
                now,
            ) {
                Ok(charges) => forwarded.charges = charges,
                Err(denial) => {
                    let failed = match &denial {
                        Denial::Exhausted { counter, .. } | Denial::Unavailable { counter } => {
                            *counter
                        }
                    };
                    let element = takes
                        .iter()
                        .find(|(_, t)| t.counter == failed)
                        .map(|(i, _)| *i)
                        .unwrap_or(0);
                    if let (Some(slot), Some(Message::ToolCall { tool, .. })) =
                        (refusals.get_mut(element), messages.get(element))
                    {
                        *slot = Some(self.rate_refusal(tool, &denial));
                    }
                }
            }
        }
        let calls = call_records(messages, &refusals);
        if refusals.iter().all(Option::is_none) {
            forwarded.calls = calls;
            return Verdict::Forward(forwarded);
        }
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
        let style = self.policy.settings.error_style;
        let answers = messages
            .iter()
            .zip(&refusals)
            .filter_map(|(msg, refusal)| {
                let id = request_id(msg)?.raw(source);
                Some(match refusal {
                    Some(r) => r.to_message(id, style),
                    None => answer::batch_sibling(id),
                })
            })
            .collect();
        Verdict::Reply {
            reply: answer::refusal_reply(answers, batch, outcome, retry_after),
            calls,
        }
    }

    fn take(&self, counter: usize, scopes: &Scopes<'_>) -> Take {
        let scope = self
            .policy
            .counters
            .get(counter)
            .map(|c| c.scope)
            .unwrap_or(Scope::Global);
        let value = match scope {
            Scope::Global => Some(b"global".as_slice()),
            Scope::Grant => scopes.grant,
            Scope::Session => scopes.session,
            Scope::Source => scopes.source,
        };
        let key = self
            .policy
            .settings
            .grant_hash_key
            .as_deref()
            .map(str::as_bytes)
            .unwrap_or(DEFAULT_HASH_KEY);
        Take {
            counter,
            fingerprint: ratelimit::fingerprint(key, scope, value),
            amount: 1,
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
        let reason = match reason_tail {
            Some(t) => format!("rate limit \"{name}\" cannot be checked: {t}; retry in {retry} s"),
            None => format!(
                "rate limit \"{name}\" of {max} calls per {window} (per {scope}) reached; retry in {retry} s"
            ),
        };
        Refusal {
            outcome: Outcome::RateLimited,
            tool: tool.to_string(),
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

    /// Whether `tools/list` answers keep `tool`.
    pub fn lists(&self, tool: &str) -> bool {
        self.policy.lists(tool)
    }

    /// Filters a `tools/list` answer body. `event_stream` selects SSE framing.
    pub fn filter_tools_list(
        &self,
        body: &[u8],
        event_stream: bool,
        ids: &[ListId],
    ) -> Result<Option<String>, Unfilterable> {
        let keep = |name: &str| self.lists(name);
        if event_stream {
            tools_list::filter_sse(body, ids, &keep)
        } else {
            tools_list::filter_json(body, ids, &keep)
        }
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

    /// Gives back units taken for a call the upstream failed.
    pub fn refund(&self, store: &dyn SharedStore, charges: &[Charge]) {
        ratelimit::release(store, charges);
    }
}

fn invalid(reply: LocalReply) -> Verdict {
    Verdict::Reply {
        reply,
        calls: Vec::new(),
    }
}

fn request_id<'d, 'a>(msg: &Message<'d, 'a>) -> Option<&'d Node<'a>> {
    match msg {
        Message::ToolCall { id, .. } | Message::ToolsList { id } => Some(id),
        Message::Other { id } => *id,
        Message::Response => None,
    }
}

fn call_records(messages: &[Message<'_, '_>], refusals: &[Option<Refusal>]) -> Vec<CallRecord> {
    messages
        .iter()
        .zip(refusals)
        .filter_map(|(msg, refusal)| match msg {
            Message::ToolCall { tool, .. } => Some(CallRecord {
                tool: tool.to_string(),
                outcome: refusal
                    .as_ref()
                    .map(|r| r.outcome)
                    .unwrap_or(Outcome::Allowed),
            }),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests;
