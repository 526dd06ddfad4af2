//! The per-request HTTP context: buffers the request body, asks the engine,
//! and either lets the request go or answers it locally.

use std::rc::Rc;
use std::time::Duration;

use mcp_policy_engine::answer::{self, LocalReply, Outcome};
use mcp_policy_engine::audit::{self, AuditContext};
use mcp_policy_engine::caller::Caller;
use mcp_policy_engine::credentials::{self, Grant};
use mcp_policy_engine::engine::{PendingApproval, PendingGlobal};
use mcp_policy_engine::global_limits;
use mcp_policy_engine::pins::{Mismatch, OnMismatch};
use mcp_policy_engine::policy::{GrantSource, HeaderMode};
use mcp_policy_engine::ratelimit::Charge;
use mcp_policy_engine::routing_headers::{self, RoutingHeaders};
use mcp_policy_engine::store::Clock;
use mcp_policy_engine::tools_list::{EventStreamFilter, ListId};
use mcp_policy_engine::{tunnels, CallRecord, Engine, Scopes, Verdict};

use crate::abi::{self, HeaderMap, MAP_REQUEST_HEADERS, MAP_RESPONSE_HEADERS};
use crate::host::{HostClock, Metrics, SharedData};
use crate::root::{HeldRequests, BODIES_ARRIVE_KEY};

/// What a request callback tells the host: go on, or hold the stream
/// (proxy-wasm's `Continue` / `StopIteration`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Action {
    Continue = 0,
    Pause = 1,
}

/// The request headers the decision needs, read once in the headers
/// callback: Envoy makes them unreachable once that callback continues.
#[derive(Default)]
struct RequestHeaders {
    grant: Grant,
    session: Option<String>,
    request_id: Option<String>,
    mcp_method: Option<String>,
    mcp_name: Option<String>,
}

/// How the answer must be buffered and read, decided on its headers.
#[derive(Debug)]
enum ResponseWork {
    /// Pass it through untouched.
    None,
    /// A JSON tools/list answer: buffer it, filter it.
    FilterList,
    /// A JSON answer to a limited call: look for a JSON-RPC error to give
    /// the rate-limit units back.
    CheckForRefund,
    /// An event stream (any request, any path): filter it event by event as
    /// it flows; `refund` also watches for an error answer.
    Stream {
        filter: EventStreamFilter,
        refund: bool,
    },
    /// An answer we cannot read (compressed) that may list tools: replace it.
    Withhold { sse: bool, why: &'static str },
}

pub struct Request {
    engine: Rc<Engine>,
    metrics: Rc<Metrics>,
    headers: RequestHeaders,
    /// Who is calling (read only when the policy uses it).
    caller: Option<Caller>,
    /// The request has a body we must judge before it may continue.
    inspecting: bool,
    /// Bytes buffered so far (Envoy reports the cumulative size).
    body_size: usize,
    /// A local answer was sent; nothing more may pass.
    answered: bool,
    list_ids: Vec<ListId>,
    charges: Vec<Charge>,
    response: ResponseWork,
    /// A call held while the approval service decides.
    pending_approval: Option<Box<PendingApproval>>,
    /// A request held while the rate limit service decides.
    pending_global: Option<Box<PendingGlobal>>,
    context_id: u32,
    /// Held requests waiting for their first body callback (see `Root`).
    held: HeldRequests,
}

impl Request {
    pub fn new(
        engine: Rc<Engine>,
        metrics: Rc<Metrics>,
        context_id: u32,
        held: HeldRequests,
    ) -> Self {
        Self {
            context_id,
            held,
            engine,
            metrics,
            headers: RequestHeaders::default(),
            caller: None,
            inspecting: false,
            body_size: 0,
            answered: false,
            list_ids: Vec::new(),
            charges: Vec::new(),
            response: ResponseWork::None,
            pending_approval: None,
            pending_global: None,
        }
    }

    /// Reads what the decision needs; a repeated routing header is refused
    /// here (-32020), whatever the body holds.
    fn read_headers(&self, map: &HeaderMap) -> Result<RequestHeaders, LocalReply> {
        let text = |name| map.text(name).map(str::to_string);
        let routing = |name: &str, shown: &str| {
            routing_headers::single(shown, &map.all(name))
                .map(|v| v.map(str::to_string))
                .map_err(|e| answer::header_mismatch(&e))
        };
        let grant = match &self.engine.policy.settings.grant {
            GrantSource::Header(name) => credentials::from_header(name, &map.all(name)),
            GrantSource::Property(path) => {
                let parts: Vec<&str> = path.iter().map(String::as_str).collect();
                credentials::from_property(abi::get_property(&parts))
            }
        };
        Ok(RequestHeaders {
            grant,
            session: text("mcp-session-id"),
            request_id: text("x-request-id"),
            mcp_method: routing("mcp-method", "Mcp-Method")?,
            mcp_name: routing("mcp-name", "Mcp-Name")?,
        })
    }

    /// Sends a local answer; the caller returns `Action::Pause`.
    fn reply(&mut self, reply: &LocalReply) -> Action {
        let headers: Vec<(&str, &[u8])> = reply
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_bytes()))
            .collect();
        if abi::send_response(reply.status, &headers, reply.body.as_bytes()).is_err() {
            // Could not answer: never let the request through instead.
            abi::reset_request();
        }
        self.answered = true;
        self.inspecting = false;
        Action::Pause
    }

    /// A refusal made before any tool call was judged (400/413/415).
    fn refuse_request(&mut self, reply: &LocalReply) -> Action {
        self.metrics.count(reply.outcome);
        // Access logs get a decision for every judged request, unreadable
        // ones included (`mcp_decision=invalid`, rule `http_400` etc.).
        abi::set_property(&["mcp_policy.decision"], reply.outcome.name().as_bytes());
        abi::set_property(
            &["mcp_policy.rule"],
            format!("http_{}", reply.status).as_bytes(),
        );
        log::info!(
            "mcp-policy: refused ({}) status {}: {}",
            reply.outcome.name(),
            reply.status,
            reply.body
        );
        self.reply(reply)
    }

    /// The whole body is buffered: judge it.
    fn decide(&mut self) -> Action {
        self.inspecting = false;
        let body = match abi::get_buffer(abi::BUFFER_REQUEST_BODY, 0, self.body_size) {
            Ok(bytes) => bytes.unwrap_or_default(),
            Err(_) => {
                return self
                    .refuse_request(&answer::http_error(500, "request body could not be read"));
            }
        };
        let source = if self.engine.needs_source_address() {
            source_address()
        } else {
            None
        };
        let h = &self.headers;
        let scopes = Scopes {
            grant: h.grant.key(),
            grant_error: h.grant.problem(),
            session: h.session.as_deref().map(str::as_bytes),
            source: source.as_deref().map(str::as_bytes),
            request_id: h.request_id.as_deref(),
            caller: self.caller.as_ref(),
        };
        let routing = RoutingHeaders {
            method: h.mcp_method.as_deref(),
            name: h.mcp_name.as_deref(),
        };
        let verdict =
            self.engine
                .decide_with_routing(&body, &scopes, &routing, &SharedData, &HostClock);
        self.apply(verdict)
    }

    /// Carries out a verdict: `Continue` forwards, `Pause` holds or answers.
    fn apply(&mut self, verdict: Verdict) -> Action {
        match verdict {
            Verdict::Forward(fwd) => {
                self.record(&fwd.calls);
                self.list_ids = fwd.list_ids;
                self.charges = fwd.charges;
                Action::Continue
            }
            Verdict::Reply { reply, calls } => {
                if calls.is_empty() {
                    return self.refuse_request(&reply);
                }
                self.record(&calls);
                self.reply(&reply)
            }
            Verdict::Approve(pending) => {
                let service = &pending.service;
                let headers: [(&str, &[u8]); 4] = [
                    (":method", b"POST"),
                    (":path", service.path.as_bytes()),
                    (":authority", service.authority.as_bytes()),
                    ("content-type", b"application/json"),
                ];
                let timeout = Duration::from_millis(service.timeout_ms);
                match abi::http_call(&service.cluster, &headers, pending.body.as_bytes(), timeout) {
                    Ok(token) => {
                        crate::dispatch::register_callout(token, self.context_id);
                        self.pending_approval = Some(pending);
                        Action::Pause
                    }
                    Err(_) => {
                        let v = self.engine.resolve_approval(*pending, None, &SharedData);
                        self.apply(v)
                    }
                }
            }
            Verdict::AskRateLimit(pending) => {
                let sent = abi::grpc_call(
                    &pending.cluster,
                    global_limits::SERVICE,
                    global_limits::METHOD,
                    &pending.request,
                    Duration::from_millis(pending.timeout_ms),
                );
                match sent {
                    Ok(token) => {
                        crate::dispatch::register_callout(token, self.context_id);
                        self.pending_global = Some(pending);
                        Action::Pause
                    }
                    Err(e) => {
                        let failure =
                            format!("cannot call cluster {}: status {}", pending.cluster, e.0);
                        let v = self
                            .engine
                            .resolve_global(*pending, Err(failure), &SharedData);
                        self.apply(v)
                    }
                }
            }
        }
    }

    /// After an asynchronous answer: forward (resume) or answer.
    fn settle(&mut self, verdict: Verdict) {
        if self.apply(verdict) == Action::Continue {
            abi::resume_request();
        }
    }

    /// Metrics, audit lines and filter state for the judged tool calls.
    fn record(&self, calls: &[CallRecord]) {
        let subject = self.caller.as_ref().and_then(Caller::subject);
        for call in calls {
            let entry = self.engine.policy.entry(&call.tool).map(|(key, _)| key);
            self.metrics.count_call(entry, call.outcome);
        }
        let entries = audit::entries(self.engine.policy.settings.audit, calls);
        if !entries.is_empty() {
            let grant = self
                .engine
                .grant_fingerprint_for(self.headers.grant.key(), self.caller.as_ref());
            let session = self
                .engine
                .session_fingerprint(self.headers.session.as_deref());
            let ctx = AuditContext {
                now_ms: HostClock.now_unix_millis(),
                request_id: self.headers.request_id.as_deref(),
                grant: &grant,
                session: session.as_deref(),
                subject: subject.as_deref(),
                principal: self.caller.as_ref().and_then(|c| c.principal.as_deref()),
            };
            for entry in &entries {
                log::info!("mcp-policy audit {}", audit::entry_line(&ctx, entry));
            }
        }
        // For access logs: %FILTER_STATE(wasm.mcp_policy.decision:PLAIN)% etc.
        // The first refused call (else the first call) speaks for the request.
        let shown = calls
            .iter()
            .find(|c| c.outcome != Outcome::Allowed)
            .or_else(|| calls.first());
        if let Some(call) = shown {
            abi::set_property(&["mcp_policy.decision"], call.outcome.name().as_bytes());
            abi::set_property(&["mcp_policy.tool"], call.tool.as_bytes());
            if let Some(rule) = &call.rule {
                abi::set_property(&["mcp_policy.rule"], rule.as_bytes());
            }
            // Who called: the verified subject, else the mTLS principal.
            let who = subject
                .as_deref()
                .or_else(|| self.caller.as_ref().and_then(|c| c.principal.as_deref()));
            if let Some(who) = who {
                abi::set_property(&["mcp_policy.caller"], who.as_bytes());
            }
        } else {
            // Judged, no tool call in it (initialize, tools/list, ...).
            abi::set_property(&["mcp_policy.decision"], b"passed");
        }
    }

    /// A request that ends stops being watched for its first body byte.
    fn release_hold(&self) {
        let id = self.context_id;
        self.held.borrow_mut().waiting.retain(|(c, _)| *c != id);
    }

    /// A body callback arrived: no longer at risk of hanging, and in `hold`
    /// mode proof that Envoy delivers bodies to held requests (so a later
    /// timeout means a slow client, not a missing Envoy field).
    fn body_arrived(&self) {
        self.release_hold();
        if self.engine.policy.settings.header_mode != HeaderMode::Hold {
            return;
        }
        let mut held = self.held.borrow_mut();
        if !held.bodies_arrive {
            held.bodies_arrive = true;
            if abi::get_shared_data(BODIES_ARRIVE_KEY).is_none() {
                let _ = abi::set_shared_data(BODIES_ARRIVE_KEY, b"1", 0);
            }
        }
    }

    fn refund(&mut self) {
        self.engine.refund(&SharedData, &self.charges);
        self.charges.clear();
    }

    /// Replaces a buffered tools/list answer with its filtered version.
    fn filter_list(&self, body: &[u8], body_size: usize) {
        let (filtered, mismatches) = self.engine.filter_tools_list_learning(
            body,
            &self.list_ids,
            self.caller.as_ref(),
            &SharedData,
        );
        self.report_pin_mismatches(&mismatches);
        match filtered {
            Ok(Some(new_body)) => {
                let _ =
                    abi::set_buffer(abi::BUFFER_RESPONSE_BODY, 0, body_size, new_body.as_bytes());
            }
            Ok(None) => {}
            Err(e) => self.withhold_list(body_size, false, &e.0),
        }
    }

    /// Metrics and audit lines for pinned tools listed with a changed
    /// definition.
    fn report_pin_mismatches(&self, mismatches: &[Mismatch]) {
        if mismatches.is_empty() {
            return;
        }
        self.metrics.count_pin_mismatches(mismatches.len());
        let settings = &self.engine.policy.settings;
        let flag = settings.pin_mismatch == OnMismatch::Flag;
        let now = HostClock.now_unix_millis();
        for m in mismatches {
            if let Some(line) = audit::pin_mismatch_line(settings.audit, now, m, flag) {
                log::info!("mcp-policy audit {line}");
            }
        }
    }

    /// Replaces a tools/list answer that cannot be filtered with a JSON-RPC
    /// error: hidden tools must never reach the agent.
    fn withhold_list(&self, body_size: usize, sse: bool, why: &str) {
        log::warn!("mcp-policy: tools/list answer withheld: {why}");
        let id = match self.list_ids.as_slice() {
            [one] => one.to_json(),
            _ => "null".to_string(),
        };
        let msg = answer::error_message(
            &id,
            -32603,
            &format!("tools/list answer withheld by the MCP policy filter: {why}"),
        );
        let replacement = if sse {
            format!("event: message\ndata: {msg}\n\n")
        } else {
            msg
        };
        let _ = abi::set_buffer(
            abi::BUFFER_RESPONSE_BODY,
            0,
            body_size,
            replacement.as_bytes(),
        );
    }
}

/// The downstream address without its port (ports change per connection).
fn source_address() -> Option<String> {
    let raw = abi::get_property(&["source", "address"])?;
    let text = String::from_utf8(raw).ok()?;
    let host = match text.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h.to_string(),
        _ => text,
    };
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
}

impl Drop for Request {
    /// A request that ends (e.g. the client went away) stops being watched.
    fn drop(&mut self) {
        self.release_hold();
    }
}

/// The callbacks `dispatch` routes to a request.
impl Request {
    /// The approval service answered (or timed out: no headers).
    pub fn on_http_call_response(&mut self, num_headers: usize, body_size: usize) {
        let Some(pending) = self.pending_approval.take() else {
            return;
        };
        let status = if num_headers == 0 {
            None
        } else {
            abi::header_text(abi::MAP_HTTP_CALL_RESPONSE_HEADERS, ":status")
                .and_then(|s| s.parse::<u32>().ok())
        };
        let body = abi::get_buffer(abi::BUFFER_HTTP_CALL_RESPONSE, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let answer = status.map(|s| (s, body.as_slice()));
        let verdict = self.engine.resolve_approval(*pending, answer, &SharedData);
        self.settle(verdict);
    }

    /// The rate limit service answered (gRPC status 0) or failed.
    pub fn on_grpc_call_response(&mut self, status_code: u32, response_size: usize) {
        let Some(pending) = self.pending_global.take() else {
            return;
        };
        let body = abi::get_buffer(abi::BUFFER_GRPC_RECEIVE, 0, response_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let answer = if status_code == 0 {
            Ok(body.as_slice())
        } else {
            Err(format!("gRPC status {status_code}"))
        };
        let verdict = self.engine.resolve_global(*pending, answer, &SharedData);
        self.settle(verdict);
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Action {
        if end_of_stream {
            // No body: nothing to judge. A GET event stream may still carry
            // tools/list answers, filtered for this caller.
            if self.engine.caller_needs().any() {
                let map = HeaderMap::fetch(MAP_REQUEST_HEADERS);
                self.caller = crate::identity::read_caller(&self.engine, &map);
            }
            return Action::Continue;
        }
        let map = HeaderMap::fetch(MAP_REQUEST_HEADERS);
        if let Some(reply) = tunnels::refuse(
            map.get(":method"),
            map.get("upgrade"),
            map.get("connection"),
            map.get(":protocol"),
        ) {
            return self.refuse_request(&reply);
        }
        self.caller = crate::identity::read_caller(&self.engine, &map);
        let length = map.text("content-length");
        let encoding = map.get("content-encoding").map(String::from_utf8_lossy);
        if let Some(reply) = self.engine.check_headers(length, encoding.as_deref()) {
            return self.refuse_request(&reply);
        }
        self.headers = match self.read_headers(&map) {
            Ok(h) => h,
            Err(reply) => return self.refuse_request(&reply),
        };
        self.inspecting = true;
        // Answers the filter may have to read (tools/list) must not come
        // back compressed; identity is always acceptable to a server.
        if map.get("accept-encoding").is_some() {
            abi::remove_header(MAP_REQUEST_HEADERS, "accept-encoding");
        }
        match self.engine.policy.settings.header_mode {
            HeaderMode::Hold => {
                let deadline =
                    HostClock.now_unix_millis() + self.engine.policy.settings.hold_body_timeout_ms;
                self.held
                    .borrow_mut()
                    .waiting
                    .push((self.context_id, deadline));
                Action::Pause
            }
            HeaderMode::Stream => Action::Continue,
        }
    }

    pub fn on_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        self.body_arrived();
        if self.answered {
            return Action::Pause;
        }
        if !self.inspecting {
            return Action::Continue;
        }
        self.body_size = body_size;
        if let Some(reply) = self.engine.check_size(body_size as u64) {
            return self.refuse_request(&reply);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.decide()
    }

    pub fn on_request_trailers(&mut self) -> Action {
        self.body_arrived();
        if self.answered {
            return Action::Pause;
        }
        if !self.inspecting {
            return Action::Continue;
        }
        // HTTP/2 with trailers: the body callback never saw end_of_stream.
        self.decide()
    }

    pub fn on_response_headers(&mut self) -> Action {
        if self.answered {
            return Action::Continue;
        }
        // Single-header reads, only those this answer needs: most answers
        // (JSON, no tools/list, no refund) need just their content type,
        // and each header handed back re-enters the VM once; the whole map
        // costs more (serialised by Envoy, parsed here).
        let refund = self.engine.policy.settings.refund_on_error && !self.charges.is_empty();
        if refund {
            let status = abi::header_text(MAP_RESPONSE_HEADERS, ":status")
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0);
            if status >= 500 {
                self.refund();
            }
        }
        let content_type = abi::header(MAP_RESPONSE_HEADERS, "content-type")
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_default();
        let sse = content_type.starts_with(b"text/event-stream");
        let json = content_type.starts_with(b"application/json");
        let lists = sse || !self.list_ids.is_empty();
        let compressed = (sse || (json && lists))
            && abi::header(MAP_RESPONSE_HEADERS, "content-encoding")
                .is_some_and(|e| !e.trim_ascii().eq_ignore_ascii_case(b"identity"));
        self.response = if compressed {
            // Unreadable, so unfilterable: never pass it on.
            abi::remove_header(MAP_RESPONSE_HEADERS, "content-encoding");
            abi::remove_header(MAP_RESPONSE_HEADERS, "content-length");
            ResponseWork::Withhold {
                sse,
                why: "the server compressed it (Content-Encoding), so it cannot be filtered",
            }
        } else if sse {
            // Events may change length: let Envoy re-frame the stream.
            abi::remove_header(MAP_RESPONSE_HEADERS, "content-length");
            ResponseWork::Stream {
                filter: self.engine.event_stream_filter(),
                refund,
            }
        } else if json && lists {
            abi::remove_header(MAP_RESPONSE_HEADERS, "content-length");
            ResponseWork::FilterList
        } else if json && refund {
            ResponseWork::CheckForRefund
        } else {
            ResponseWork::None
        };
        Action::Continue
    }

    pub fn on_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if let ResponseWork::Stream { filter, refund } = &mut self.response {
            let chunk = abi::get_buffer(abi::BUFFER_RESPONSE_BODY, 0, body_size)
                .ok()
                .flatten()
                .unwrap_or_default();
            let out = self.engine.filter_event_chunk_for(
                filter,
                &chunk,
                end_of_stream,
                &SharedData,
                self.caller.as_ref(),
            );
            if let Some(why) = &out.withheld {
                log::warn!("mcp-policy: part of an event stream withheld: {why}");
            }
            let refund_now = *refund && self.engine.answer_is_error(&out.bytes, true);
            if refund_now {
                *refund = false;
            }
            let _ = abi::set_buffer(abi::BUFFER_RESPONSE_BODY, 0, body_size, &out.bytes);
            if refund_now {
                self.refund();
            }
            self.report_pin_mismatches(&out.pin_mismatches);
            return Action::Continue;
        }
        if matches!(self.response, ResponseWork::None) {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let work = std::mem::replace(&mut self.response, ResponseWork::None);
        let body = match abi::get_buffer(abi::BUFFER_RESPONSE_BODY, 0, body_size) {
            Ok(Some(b)) => b,
            _ => return Action::Continue,
        };
        match work {
            ResponseWork::FilterList => self.filter_list(&body, body_size),
            ResponseWork::Withhold { sse, why } => self.withhold_list(body_size, sse, why),
            ResponseWork::CheckForRefund => {
                if self.engine.answer_is_error(&body, false) {
                    self.refund();
                }
            }
            ResponseWork::None | ResponseWork::Stream { .. } => {}
        }
        Action::Continue
    }
}
