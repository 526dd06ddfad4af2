//! The per-request HTTP context: buffers the request body, asks the engine,
//! and either lets the request go or answers it locally.

use std::rc::Rc;

use mcp_policy_engine::answer::{self, LocalReply, Outcome};
use mcp_policy_engine::audit::{self, AuditContext};
use mcp_policy_engine::engine::{PendingApproval, PendingGlobal};
use mcp_policy_engine::global_limits;
use mcp_policy_engine::policy::AuditLevel;
use mcp_policy_engine::policy::{GrantSource, HeaderMode};
use mcp_policy_engine::ratelimit::Charge;
use mcp_policy_engine::ratelimit::Clock;
use mcp_policy_engine::routing_headers::RoutingHeaders;
use mcp_policy_engine::tools_list::ListId;
use mcp_policy_engine::{CallRecord, Engine, Scopes, Verdict};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::time::Duration;

use crate::host::{HostClock, Metrics, SharedData};

pub struct Request {
    engine: Rc<Engine>,
    metrics: Rc<Metrics>,
    /// The request has a body we must judge before it may continue.
    inspecting: bool,
    /// Bytes buffered so far (Envoy reports the cumulative size).
    body_size: usize,
    /// A local answer was sent; nothing more may pass.
    answered: bool,
    list_ids: Vec<ListId>,
    charges: Vec<Charge>,
    /// How the answer must be buffered and read, decided on its headers.
    response: ResponseWork,
    /// A call held while the approval service decides.
    pending: Option<Box<PendingApproval>>,
    /// A request held while the rate limit service decides.
    pending_global: Option<Box<PendingGlobal>>,
}

/// What the answer needs from us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResponseWork {
    /// Pass it through untouched.
    None,
    /// Filter a tools/list result (`sse` selects event-stream framing).
    FilterList { sse: bool },
    /// Look for a JSON-RPC error to give back the rate-limit units.
    CheckForRefund { sse: bool },
}

impl Request {
    pub fn new(engine: Rc<Engine>, metrics: Rc<Metrics>) -> Self {
        Self {
            engine,
            metrics,
            inspecting: false,
            body_size: 0,
            answered: false,
            list_ids: Vec::new(),
            charges: Vec::new(),
            response: ResponseWork::None,
            pending: None,
            pending_global: None,
        }
    }

    fn request_header(&self, name: &str) -> Option<String> {
        hostcalls::get_map_value(MapType::HttpRequestHeaders, name)
            .ok()
            .flatten()
    }

    /// Sends a local answer; the caller returns `Action::Pause`.
    fn reply(&mut self, reply: &LocalReply) -> Action {
        let headers: Vec<(&str, &str)> = reply
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        if hostcalls::send_http_response(reply.status, headers, Some(reply.body.as_bytes()))
            .is_err()
        {
            // Could not answer: never let the request through instead.
            let _ = hostcalls::reset_http_request();
        }
        self.answered = true;
        self.inspecting = false;
        Action::Pause
    }

    /// Metrics, audit lines and filter state for the judged tool calls.
    fn record(&self, calls: &[CallRecord]) {
        let settings = &self.engine.policy.settings;
        let mut audit_ctx: Option<(String, Option<String>, Option<String>)> = None;
        for call in calls {
            self.metrics.count_call(&call.tool, call.outcome);
            let wanted = match settings.audit {
                AuditLevel::Off => false,
                AuditLevel::Refused => call.outcome != Outcome::Allowed,
                AuditLevel::All => true,
            };
            if wanted {
                let (grant, request_id, session) = audit_ctx.get_or_insert_with(|| {
                    let grant = self.grant_value();
                    (
                        self.engine.grant_fingerprint(grant.as_deref()),
                        self.request_header("x-request-id"),
                        self.request_header("mcp-session-id"),
                    )
                });
                let ctx = AuditContext {
                    now_ms: HostClock.now_unix_millis(),
                    request_id: request_id.as_deref(),
                    grant,
                    session: session.as_deref(),
                };
                log::info!("mcp-policy audit {}", audit::line(&ctx, call));
            }
        }
        // For access logs: %FILTER_STATE(wasm.mcp_policy.decision:PLAIN)% etc.
        // The first refused call (else the first call) speaks for the request.
        let shown = calls
            .iter()
            .find(|c| c.outcome != Outcome::Allowed)
            .or_else(|| calls.first());
        if let Some(call) = shown {
            let _ = hostcalls::set_property(
                vec!["mcp_policy.decision"],
                Some(call.outcome.name().as_bytes()),
            );
            let _ = hostcalls::set_property(vec!["mcp_policy.tool"], Some(call.tool.as_bytes()));
            if let Some(rule) = &call.rule {
                let _ = hostcalls::set_property(vec!["mcp_policy.rule"], Some(rule.as_bytes()));
            }
        }
    }

    /// The whole body is buffered: judge it.
    fn decide(&mut self) -> Action {
        self.inspecting = false;
        let body = match hostcalls::get_buffer(BufferType::HttpRequestBody, 0, self.body_size) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => Vec::new(),
            Err(_) => {
                return self.reply(&answer::http_error(500, "request body could not be read"));
            }
        };
        let grant = self.grant_value();
        let session = self.request_header("mcp-session-id");
        let source = source_address();
        let request_id = self.request_header("x-request-id");
        let scopes = Scopes {
            grant: grant.as_deref(),
            session: session.as_deref().map(str::as_bytes),
            source: source.as_deref().map(str::as_bytes),
            request_id: request_id.as_deref(),
        };
        let mcp_method = self.request_header("mcp-method");
        let mcp_name = self.request_header("mcp-name");
        let routing = RoutingHeaders {
            method: mcp_method.as_deref(),
            name: mcp_name.as_deref(),
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
                self.record(&calls);
                if calls.is_empty() {
                    self.metrics.count(reply.outcome);
                }
                log::info!(
                    "mcp-policy: refused ({}) status {}: {}",
                    reply.outcome.name(),
                    reply.status,
                    reply.body
                );
                self.reply(&reply)
            }
            Verdict::Approve(pending) => {
                let service = &pending.service;
                let headers = vec![
                    (":method", "POST"),
                    (":path", service.path.as_str()),
                    (":authority", service.authority.as_str()),
                    ("content-type", "application/json"),
                ];
                let sent = hostcalls::dispatch_http_call(
                    &service.cluster,
                    headers,
                    Some(pending.body.as_bytes()),
                    vec![],
                    Duration::from_millis(service.timeout_ms),
                );
                match sent {
                    Ok(_token) => {
                        self.pending = Some(pending);
                        Action::Pause
                    }
                    Err(_) => {
                        let v = self.engine.resolve_approval(*pending, None, &SharedData);
                        self.apply(v)
                    }
                }
            }
            Verdict::AskRateLimit(pending) => {
                let sent = hostcalls::dispatch_grpc_call(
                    &pending.cluster,
                    global_limits::SERVICE,
                    global_limits::METHOD,
                    vec![],
                    Some(&pending.request),
                    Duration::from_millis(pending.timeout_ms),
                );
                match sent {
                    Ok(_token) => {
                        self.pending_global = Some(pending);
                        Action::Pause
                    }
                    Err(status) => {
                        let v = self.engine.resolve_global(
                            *pending,
                            Err(format!("cannot call cluster: {status:?}")),
                            &SharedData,
                        );
                        self.apply(v)
                    }
                }
            }
        }
    }

    fn grant_value(&self) -> Option<Vec<u8>> {
        match &self.engine.policy.settings.grant {
            GrantSource::Header(name) => self.request_header(name).map(String::into_bytes),
            GrantSource::Property(path) => {
                let parts: Vec<&str> = path.iter().map(String::as_str).collect();
                hostcalls::get_property(parts).ok().flatten()
            }
        }
    }
}

/// The downstream address without its port (ports change per connection).
fn source_address() -> Option<String> {
    let raw = hostcalls::get_property(vec!["source", "address"])
        .ok()
        .flatten()?;
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

impl Context for Request {
    /// The rate limit service answered (status 0 = OK) or failed.
    fn on_grpc_call_response(&mut self, _token: u32, status_code: u32, response_size: usize) {
        let Some(pending) = self.pending_global.take() else {
            return;
        };
        let body = hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, response_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let answer = if status_code == 0 {
            Ok(body.as_slice())
        } else {
            Err(format!("gRPC status {status_code}"))
        };
        let verdict = self.engine.resolve_global(*pending, answer, &SharedData);
        if self.apply(verdict) == Action::Continue {
            let _ = hostcalls::resume_http_request();
        }
    }

    /// The approval service answered (or timed out: no headers).
    fn on_http_call_response(
        &mut self,
        _token: u32,
        num_headers: usize,
        body_size: usize,
        _: usize,
    ) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let status = if num_headers == 0 {
            None
        } else {
            hostcalls::get_map_value(MapType::HttpCallResponseHeaders, ":status")
                .ok()
                .flatten()
                .and_then(|s| s.parse::<u32>().ok())
        };
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let answer = status.map(|s| (s, body.as_slice()));
        let verdict = self.engine.resolve_approval(*pending, answer, &SharedData);
        if self.apply(verdict) == Action::Continue {
            let _ = hostcalls::resume_http_request();
        }
    }
}

impl HttpContext for Request {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            return Action::Continue; // no body: nothing to judge
        }
        let length = self.request_header("content-length");
        let encoding = self.request_header("content-encoding");
        if let Some(reply) = self
            .engine
            .check_headers(length.as_deref(), encoding.as_deref())
        {
            self.metrics.count(reply.outcome);
            return self.reply(&reply);
        }
        self.inspecting = true;
        match self.engine.policy.settings.header_mode {
            HeaderMode::Hold => Action::Pause,
            HeaderMode::Stream => Action::Continue,
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.answered {
            return Action::Pause;
        }
        if !self.inspecting {
            return Action::Continue;
        }
        self.body_size = body_size;
        if let Some(reply) = self.engine.check_size(body_size as u64) {
            self.metrics.count(reply.outcome);
            return self.reply(&reply);
        }
        if !end_of_stream {
            return Action::Pause;
        }
        self.decide()
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.answered {
            return Action::Pause;
        }
        if !self.inspecting {
            return Action::Continue;
        }
        // HTTP/2 with trailers: the body callback never saw end_of_stream.
        self.decide()
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if self.answered {
            return Action::Continue;
        }
        let refund = self.engine.policy.settings.refund_on_error && !self.charges.is_empty();
        let status = hostcalls::get_map_value(MapType::HttpResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|s| s.parse::<u32>().ok())
            .unwrap_or(0);
        if refund && status >= 500 {
            self.engine.refund(&SharedData, &self.charges);
            self.charges.clear();
        }
        let content_type = hostcalls::get_map_value(MapType::HttpResponseHeaders, "content-type")
            .ok()
            .flatten()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let sse = content_type.starts_with("text/event-stream");
        let readable = sse || content_type.starts_with("application/json");
        self.response = if !readable {
            ResponseWork::None
        } else if !self.list_ids.is_empty() {
            // The body will change length: let Envoy re-frame it.
            let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, "content-length", None);
            ResponseWork::FilterList { sse }
        } else if !self.charges.is_empty() && self.engine.policy.settings.refund_on_error {
            ResponseWork::CheckForRefund { sse }
        } else {
            ResponseWork::None
        };
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if self.response == ResponseWork::None {
            return Action::Continue;
        }
        if !end_of_stream {
            return Action::Pause;
        }
        let work = std::mem::replace(&mut self.response, ResponseWork::None);
        let body = match hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size) {
            Ok(Some(b)) => b,
            _ => return Action::Continue,
        };
        match work {
            ResponseWork::FilterList { sse } => self.filter_list(&body, body_size, sse),
            ResponseWork::CheckForRefund { sse } => {
                if self.engine.answer_is_error(&body, sse) {
                    self.engine.refund(&SharedData, &self.charges);
                    self.charges.clear();
                }
            }
            ResponseWork::None => {}
        }
        Action::Continue
    }
}

impl Request {
    /// Replaces a buffered tools/list answer with its filtered version.
    fn filter_list(&self, body: &[u8], body_size: usize, sse: bool) {
        self.engine.learn_hints(body, sse, &SharedData);
        let replacement = match self.engine.filter_tools_list(body, sse, &self.list_ids) {
            Ok(Some(new_body)) => new_body,
            Ok(None) => return,
            Err(e) => {
                log::warn!("mcp-policy: tools/list answer withheld: {}", e.0);
                let msg = answer::error_message(
                    "null",
                    -32603,
                    &format!(
                        "tools/list answer withheld by the MCP policy filter: {}",
                        e.0
                    ),
                );
                if sse {
                    format!("event: message\ndata: {msg}\n\n")
                } else {
                    msg
                }
            }
        };
        let _ = hostcalls::set_buffer(
            BufferType::HttpResponseBody,
            0,
            body_size,
            replacement.as_bytes(),
        );
    }
}
