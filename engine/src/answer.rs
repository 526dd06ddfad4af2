//! The answers the filter sends instead of forwarding.
//!
//! A refused `tools/call` gets HTTP 200 with a JSON-RPC error carrying the
//! request's id verbatim: every official MCP client turns that into its MCP
//! error type and keeps the session. 4xx is kept for input no conforming
//! client sends (parse errors, encodings, oversize bodies).

use crate::policy::ErrorStyle;
use crate::text::cut;
use crate::write::ObjectWriter;

/// Refused by the policy (deny, hide, default deny, argument rule).
pub const CODE_DENIED: i64 = -31001;
/// Refused because a rate limit is exhausted.
pub const CODE_RATE_LIMITED: i64 = -31002;
/// Refused because the approval service said no, timed out or was down.
pub const CODE_APPROVAL_REFUSED: i64 = -31003;
/// JSON-RPC parse error.
pub const CODE_PARSE_ERROR: i64 = -32700;
/// JSON-RPC invalid request.
pub const CODE_INVALID_REQUEST: i64 = -32600;
/// MCP 2026-07-28: a routing header disagrees with the body.
pub const CODE_HEADER_MISMATCH: i64 = -32020;

/// What happened to a request, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    Denied,
    RateLimited,
    ApprovalRefused,
    Invalid,
    /// Shadow mode: forwarded, but the policy would have denied it.
    WouldDeny,
    /// Shadow mode: forwarded, but its shadow budget is exhausted.
    WouldRateLimit,
    /// Shadow mode: forwarded without asking the approval service.
    WouldNeedApproval,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::RateLimited => "rate_limited",
            Outcome::ApprovalRefused => "approval_refused",
            Outcome::Invalid => "invalid",
            Outcome::WouldDeny => "would_deny",
            Outcome::WouldRateLimit => "would_rate_limit",
            Outcome::WouldNeedApproval => "would_need_approval",
        }
    }

    /// The shadow-mode twin of a refusal outcome: what is recorded when a
    /// shadowed call is forwarded anyway.
    pub fn shadowed(self) -> Outcome {
        match self {
            Outcome::Denied => Outcome::WouldDeny,
            Outcome::RateLimited => Outcome::WouldRateLimit,
            Outcome::ApprovalRefused => Outcome::WouldNeedApproval,
            other => other,
        }
    }
}

/// A complete local HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u32,
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
    pub outcome: Outcome,
}

/// Details of a rate-limit refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateInfo {
    pub counter: String,
    pub window: &'static str,
    pub max: u64,
    pub retry_after_seconds: u64,
}

/// Why one call was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub outcome: Outcome,
    pub tool: String,
    pub rule: String,
    pub reason: String,
    pub rate: Option<RateInfo>,
}

/// Longest reason or error message text in an answer (characters).
pub const MAX_ECHOED_TEXT: usize = 1024;

/// Largest body of a local answer to a batch: past it the per-element
/// answers are replaced by one error, so no answer amplifies a request.
pub const MAX_BATCH_ANSWER: usize = 64 * 1024;

impl Refusal {
    /// This refusal as a shadowed call records it (`would_*`).
    pub fn shadowed(self) -> Refusal {
        Refusal {
            outcome: self.outcome.shadowed(),
            ..self
        }
    }

    fn code(&self) -> i64 {
        match self.outcome {
            Outcome::RateLimited => CODE_RATE_LIMITED,
            Outcome::ApprovalRefused => CODE_APPROVAL_REFUSED,
            _ => CODE_DENIED,
        }
    }

    fn decision(&self) -> &'static str {
        match self.outcome {
            Outcome::RateLimited => "rate_limited",
            Outcome::ApprovalRefused => "approval_refused",
            _ => "deny",
        }
    }

    /// The human-readable message: names the tool and the reason.
    pub fn message(&self) -> String {
        let verb = match self.outcome {
            Outcome::RateLimited => "rate limited",
            Outcome::ApprovalRefused => "not approved",
            _ => "denied",
        };
        format!(
            "Tool \"{}\" {verb} by policy: {}",
            self.tool,
            cut(&self.reason, MAX_ECHOED_TEXT)
        )
    }

    fn data(&self) -> String {
        let mut w = ObjectWriter::new()
            .str("tool", &self.tool)
            .str("decision", self.decision())
            .str("rule", &self.rule)
            .str("reason", &cut(&self.reason, MAX_ECHOED_TEXT));
        if let Some(rate) = &self.rate {
            w = w
                .str("counter", &rate.counter)
                .str("window", rate.window)
                .raw("max", &rate.max.to_string())
                .raw("retry_after_seconds", &rate.retry_after_seconds.to_string());
        }
        w.finish()
    }

    /// The JSON-RPC message answering the call whose raw id is `id`.
    pub fn to_message(&self, id: &str, style: ErrorStyle) -> String {
        match style {
            ErrorStyle::JsonRpc => {
                let error = ObjectWriter::new()
                    .raw("code", &self.code().to_string())
                    .str("message", &self.message())
                    .raw("data", &self.data())
                    .finish();
                envelope(id).raw("error", &error).finish()
            }
            ErrorStyle::ToolResult | ErrorStyle::Intercept => {
                let text = if style == ErrorStyle::Intercept {
                    // Intercept's agents read the rule's own text, nothing else.
                    format!(
                        "[INTERCEPT POLICY DENIED] {}",
                        cut(&self.reason, MAX_ECHOED_TEXT)
                    )
                } else {
                    format!("[POLICY DENIED] {}", self.message())
                };
                let content = format!(
                    "[{}]",
                    ObjectWriter::new()
                        .str("type", "text")
                        .str("text", &text)
                        .finish()
                );
                // resultType: required by MCP 2026-07-28 clients (Python
                // mcp 2.x validates it); older clients ignore it.
                let result = ObjectWriter::new()
                    .raw("content", &content)
                    .raw("isError", "true")
                    .str("resultType", "complete")
                    .finish();
                envelope(id).raw("result", &result).finish()
            }
        }
    }
}

fn envelope(id: &str) -> ObjectWriter {
    ObjectWriter::new().str("jsonrpc", "2.0").raw("id", id)
}

/// A JSON-RPC error message with `id` (raw JSON) and an optional data object.
pub fn error_message(id: &str, code: i64, message: &str) -> String {
    let error = ObjectWriter::new()
        .raw("code", &code.to_string())
        .str("message", &cut(message, MAX_ECHOED_TEXT))
        .finish();
    envelope(id).raw("error", &error).finish()
}

/// HTTP answer with a JSON body.
pub fn json_reply(status: u32, body: String, outcome: Outcome) -> LocalReply {
    LocalReply {
        status,
        headers: vec![
            ("content-type", "application/json".to_string()),
            ("x-mcp-policy", outcome.name().to_string()),
        ],
        body,
        outcome,
    }
}

/// 400 with -32700: the body is not JSON we can read with certainty.
pub fn parse_error(detail: &str) -> LocalReply {
    json_reply(
        400,
        error_message("null", CODE_PARSE_ERROR, &format!("Parse error: {detail}")),
        Outcome::Invalid,
    )
}

/// 400 with -32600: JSON, but not a JSON-RPC message we accept.
pub fn invalid_request(detail: &str) -> LocalReply {
    json_reply(
        400,
        error_message(
            "null",
            CODE_INVALID_REQUEST,
            &format!("Invalid request: {detail}"),
        ),
        Outcome::Invalid,
    )
}

/// An HTTP error status with a JSON-RPC body saying why (413, 415, ...).
pub fn http_error(status: u32, detail: &str) -> LocalReply {
    json_reply(
        status,
        error_message("null", CODE_INVALID_REQUEST, detail),
        Outcome::Invalid,
    )
}

/// 400 with -32020: an `Mcp-Method`/`Mcp-Name` header disagrees with the body.
pub fn header_mismatch(detail: &str) -> LocalReply {
    json_reply(
        400,
        error_message(
            "null",
            CODE_HEADER_MISMATCH,
            &format!("Header mismatch: {detail}"),
        ),
        Outcome::Invalid,
    )
}

/// 400 with -32600: the grant header has a shape no conforming client
/// sends, so whose budget a call would spend is uncertain. Not 401: MCP
/// clients take 401 as the start of an authorization flow.
pub fn bad_credentials(detail: &str) -> LocalReply {
    json_reply(
        400,
        error_message(
            "null",
            CODE_INVALID_REQUEST,
            &format!("Invalid request: {detail}; a tools/call needs one unambiguous credential"),
        ),
        Outcome::Invalid,
    )
}

/// `hold` mode: no body byte came within the deadline. `bodies_arrive`
/// says whether this Envoy has delivered request bodies to held requests
/// before (then the configuration is right and the client is slow).
pub fn hold_timeout(bodies_arrive: bool, timeout_ms: u64) -> LocalReply {
    if bodies_arrive {
        http_error(
            408,
            &format!(
                "no request body arrived within {timeout_ms} ms (settings.hold_body_timeout_ms); the request was not forwarded"
            ),
        )
    } else {
        http_error(
            500,
            &format!(
                "the MCP policy filter is configured with header_mode \"hold\" but no request body reached it within {timeout_ms} ms; this Envoy probably lacks allow_on_headers_stop_iteration: true (or the client sent nothing); the request was not forwarded"
            ),
        )
    }
}

/// Protocol upgrades (WebSocket, h2c) and CONNECT tunnels carry no MCP
/// message the filter could judge, and MCP uses none of them: refused at
/// once instead of held or passed unjudged.
pub fn not_mcp_transport(what: &str) -> LocalReply {
    http_error(
        501,
        &format!(
            "{what} is not supported by the MCP policy filter: MCP uses plain HTTP requests, and a tunnel's content cannot be inspected"
        ),
    )
}

/// Answers a refused message or batch. `answers` holds the JSON-RPC message
/// for each request element; `batch` says whether to wrap them in an array.
pub fn refusal_reply(
    answers: Vec<String>,
    batch: bool,
    outcome: Outcome,
    retry_after: Option<u64>,
) -> LocalReply {
    let total = answers.iter().map(|a| a.len() + 1).sum::<usize>() + 1;
    let body = if batch && total > MAX_BATCH_ANSWER {
        error_message(
            "null",
            CODE_DENIED,
            &format!(
                "Not forwarded: {} messages of the batch were refused or held back by policy; the itemised answer would pass {MAX_BATCH_ANSWER} bytes",
                answers.len()
            ),
        )
    } else if batch {
        format!("[{}]", answers.join(","))
    } else {
        answers.into_iter().next().unwrap_or_default()
    };
    let mut reply = json_reply(200, body, outcome);
    if let Some(secs) = retry_after {
        reply.headers.push(("retry-after", secs.to_string()));
    }
    reply
}

/// The answer for an element of a refused batch that was itself acceptable:
/// always a JSON-RPC error, since it may not even be a tool call.
pub fn batch_sibling(id: &str) -> String {
    error_message(
        id,
        CODE_DENIED,
        "Not forwarded: another message in the same batch was refused by policy",
    )
}
