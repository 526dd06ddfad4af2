//! Classifying JSON-RPC messages the way an MCP server will read them.
//!
//! Only the fields a decision needs are read. Anything a server could read
//! differently from us is refused: a missing or non-"2.0" `jsonrpc`, a
//! non-string method, a `tools/call` without an id or without a string tool
//! name.

use crate::json::{Node, Value};
use crate::key_folding;

/// The method policed by the tool policy. Compared exactly, after unescaping,
/// as servers do.
pub const TOOLS_CALL: &str = "tools/call";
pub const TOOLS_LIST: &str = "tools/list";

/// What a judged request asks for: the policy's `tools`, `resources` or
/// `prompts` section decides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallKind {
    Tool,
    /// `resources/read`, `resources/subscribe`: named by `params.uri`.
    Resource,
    /// `prompts/get`: named by `params.name`.
    Prompt,
}

impl CallKind {
    /// The policy section that governs this kind.
    pub fn section(self) -> &'static str {
        match self {
            CallKind::Tool => "tools",
            CallKind::Resource => "resources",
            CallKind::Prompt => "prompts",
        }
    }
}

/// One JSON-RPC message of a request body.
#[derive(Debug, PartialEq)]
pub enum Message<'d, 'a> {
    /// A `tools/call` request with an id and a tool name.
    ToolCall {
        kind: CallKind,
        id: &'d Node<'a>,
        tool: &'d str,
        arguments: Option<&'d Node<'a>>,
    },
    /// A `tools/list` request: its answer will be filtered.
    ToolsList { id: &'d Node<'a> },
    /// A `resources/list`, `resources/templates/list` or `prompts/list`
    /// request: filtered only when the policy has that section.
    ItemsList { kind: CallKind, id: &'d Node<'a> },
    /// A resource or prompt request we cannot read with certainty: refused
    /// when the policy governs its kind, passed through otherwise.
    Unjudged {
        kind: CallKind,
        id: Option<&'d Node<'a>>,
        reason: String,
    },
    /// Any other request or notification: protocol plumbing, passed through.
    Other { id: Option<&'d Node<'a>> },
    /// A client's answer to a server request (`result` or `error`).
    Response,
}

/// Why a message is not one we can judge with certainty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub reason: String,
}

fn invalid(reason: impl Into<String>) -> Invalid {
    Invalid {
        reason: reason.into(),
    }
}

/// Keys a server acts on, at the message level and inside `params`.
const MESSAGE_KEYS: [&str; 6] = ["jsonrpc", "id", "method", "params", "result", "error"];
const PARAMS_KEYS: [&str; 3] = ["name", "arguments", "_meta"];

/// Refuses a key that differs from a significant key only by case: the JS
/// and Python servers ignore it, but a case-folding server (the Go SDK
/// before CVE-2026-27896) would act on it while we judged the other one.
fn check_key_case(node: &Node<'_>, significant: &[&str], at: &str) -> Result<(), Invalid> {
    for (key, _) in node.as_object().unwrap_or(&[]) {
        // The targets are lower-case ASCII, so a key of lower-case ASCII
        // folds onto one only by being equal to it: skipped after one pass
        // over its bytes (this runs on every message).
        if !key.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii()) {
            continue;
        }
        for target in significant {
            if key != target && key_folding::fold_eq(key, target) {
                return Err(invalid(format!(
                    "{at}key \"{}\" differs from \"{target}\" only in case; refused as ambiguous",
                    key_folding::shown(key)
                )));
            }
        }
    }
    Ok(())
}

/// Longest id (its JSON text) accepted: ids are echoed in local answers, so
/// a client-chosen id must not make an answer large. Real clients send small
/// integers or UUIDs.
pub const MAX_ID_BYTES: usize = 256;

/// Is this id a legal JSON-RPC request id (string or number)?
fn usable_id(node: &Node<'_>) -> bool {
    matches!(node.value, Value::String(_) | Value::Number(_))
}

/// Classifies one message (an element of a batch, or the whole body).
pub fn classify<'d, 'a>(msg: &'d Node<'a>) -> Result<Message<'d, 'a>, Invalid> {
    if msg.as_object().is_none() {
        return Err(invalid(format!(
            "a JSON-RPC message must be an object, got {}",
            msg.type_name()
        )));
    }
    check_key_case(msg, &MESSAGE_KEYS, "")?;
    if let Some(params) = msg.get("params") {
        check_key_case(params, &PARAMS_KEYS, "params: ")?;
    }
    // Requests and notifications: no object anywhere may hold two keys that
    // fold together (a server's answers to our client's requests are not
    // judged, so responses are left alone).
    if msg.get("method").is_some() {
        if let Some(clash) = key_folding::find(msg) {
            return Err(invalid(clash.reason()));
        }
    }
    match msg.get("jsonrpc").and_then(Node::as_str) {
        Some("2.0") => {}
        _ => return Err(invalid("\"jsonrpc\" must be \"2.0\"")),
    }
    let id = msg.get("id");
    if let Some(id) = id {
        if !(usable_id(id) || id.is_null()) {
            return Err(invalid("\"id\" must be a string, a number or null"));
        }
        if id.end.saturating_sub(id.start) > MAX_ID_BYTES {
            return Err(invalid(format!(
                "\"id\" is longer than {MAX_ID_BYTES} bytes"
            )));
        }
    }
    let Some(method_node) = msg.get("method") else {
        // No method: only a response to a server request is acceptable.
        let has_outcome = msg.get("result").is_some() || msg.get("error").is_some();
        return match (id, has_outcome) {
            (Some(_), true) => Ok(Message::Response),
            _ => Err(invalid(
                "a message without \"method\" must be a response with \"id\" and \"result\" or \"error\"",
            )),
        };
    };
    let Some(method) = method_node.as_str() else {
        return Err(invalid("\"method\" must be a string"));
    };
    let request_id = id.filter(|n| usable_id(n));
    match method {
        TOOLS_CALL => {
            let Some(id) = request_id else {
                return Err(invalid(
                    "tools/call must be a request with a string or number \"id\" (notifications and null ids are refused)",
                ));
            };
            let params = msg
                .get("params")
                .filter(|p| p.as_object().is_some())
                .ok_or_else(|| invalid("tools/call needs \"params\" as an object"))?;
            let tool = params
                .get("name")
                .and_then(Node::as_str)
                .ok_or_else(|| invalid("tools/call needs \"params.name\" as a string"))?;
            let arguments = params.get("arguments");
            if let Some(args) = arguments {
                if args.as_object().is_none() && !args.is_null() {
                    return Err(invalid("tools/call \"params.arguments\" must be an object"));
                }
            }
            Ok(Message::ToolCall {
                kind: CallKind::Tool,
                id,
                tool,
                arguments,
            })
        }
        TOOLS_LIST => match request_id {
            Some(id) => Ok(Message::ToolsList { id }),
            None => Ok(Message::Other { id: None }),
        },
        "resources/read" | "resources/subscribe" => {
            Ok(item_request(msg, CallKind::Resource, "uri", request_id))
        }
        "prompts/get" => Ok(item_request(msg, CallKind::Prompt, "name", request_id)),
        "resources/list" | "resources/templates/list" | "prompts/list" => {
            let kind = if method.starts_with("prompts") {
                CallKind::Prompt
            } else {
                CallKind::Resource
            };
            match request_id {
                Some(id) => Ok(Message::ItemsList { kind, id }),
                None => Ok(Message::Other { id: None }),
            }
        }
        _ => Ok(Message::Other { id: request_id }),
    }
}

/// A resource or prompt request: judged like a tool call when it has an id
/// and a string `params.<key>`, else [`Message::Unjudged`].
fn item_request<'d, 'a>(
    msg: &'d Node<'a>,
    kind: CallKind,
    key: &str,
    request_id: Option<&'d Node<'a>>,
) -> Message<'d, 'a> {
    let unjudged = |reason: String| Message::Unjudged {
        kind,
        id: request_id,
        reason,
    };
    let Some(id) = request_id else {
        return unjudged(format!(
            "a {} request must have a string or number \"id\"",
            kind.section()
        ));
    };
    let Some(params) = msg.get("params").filter(|p| p.as_object().is_some()) else {
        return unjudged("\"params\" must be an object".to_string());
    };
    if let Err(e) = check_key_case(params, &[key, "arguments"], "params: ") {
        return unjudged(e.reason);
    }
    let Some(name) = params.get(key).and_then(Node::as_str) else {
        return unjudged(format!("\"params.{key}\" must be a string"));
    };
    let arguments = params.get("arguments").filter(|a| a.as_object().is_some());
    Message::ToolCall {
        kind,
        id,
        tool: name,
        arguments,
    }
}

#[cfg(test)]
mod tests;
