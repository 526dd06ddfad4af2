//! MCP 2026-07-28 routing headers (`Mcp-Method`, `Mcp-Name`).
//!
//! Routers and servers may act on these headers; the filter decides on the
//! body. If the two disagree, something downstream could be fooled into
//! executing what the policy never judged, so the request is refused with
//! HTTP 400 and JSON-RPC -32020 (HeaderMismatch), as servers must do.

use crate::json::Node;
use crate::jsonrpc::Message;

/// The routing headers of a request, as received (still encoded).
#[derive(Debug, Default, Clone, Copy)]
pub struct RoutingHeaders<'a> {
    pub method: Option<&'a str>,
    pub name: Option<&'a str>,
}

/// The one value of routing header `header` from all the values the
/// request carries. Several values are refused: the filter could check one
/// while a router reads another (the last, or all joined by commas).
pub fn single<'a>(header: &str, values: &[&'a [u8]]) -> Result<Option<&'a str>, String> {
    match values {
        [] => Ok(None),
        [one] => std::str::from_utf8(one)
            .map(Some)
            .map_err(|_| format!("{header} header is not valid UTF-8")),
        _ => Err(format!(
            "the request carries {} {header} headers; send exactly one",
            values.len()
        )),
    }
}

/// Methods whose `Mcp-Name` is a resource URI, which may hold a comma.
fn names_a_uri(method: &str) -> bool {
    matches!(
        method,
        "resources/read" | "resources/subscribe" | "resources/unsubscribe"
    )
}

/// Decodes a header value: plain text, or `=?base64?<data>?=` for values
/// that are not plain ASCII. None when the encoding is malformed.
pub fn decode_value(raw: &str) -> Option<String> {
    let raw = raw.trim();
    match raw
        .strip_prefix("=?base64?")
        .and_then(|rest| rest.strip_suffix("?="))
    {
        Some(encoded) => String::from_utf8(base64_decode(encoded)?).ok(),
        None => Some(raw.to_string()),
    }
}

/// Standard base64 (with optional padding); None on any invalid character.
fn base64_decode(input: &str) -> Option<Vec<u8>> {
    let trimmed = input.trim_end_matches('=');
    let mut out = Vec::with_capacity(trimmed.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in trimmed.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xFF).ok()?);
        }
    }
    Some(out)
}

/// The name a message's `Mcp-Name` header must equal, if any.
fn body_name<'d>(method: &str, params: Option<&'d Node<'_>>) -> Option<&'d str> {
    let params = params?;
    match method {
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            params.get("uri").and_then(Node::as_str)
        }
        _ => params.get("name").and_then(Node::as_str),
    }
}

/// Checks the headers against every message of the body; returns what
/// disagrees, if anything.
pub fn mismatch(
    headers: &RoutingHeaders<'_>,
    messages: &[(&Node<'_>, &Message<'_, '_>)],
) -> Option<String> {
    if headers.method.is_none() && headers.name.is_none() {
        return None;
    }
    // A comma-joined value is how several headers look after some
    // intermediaries: refused. Methods and tool/prompt names never hold a
    // comma (names: A-Z a-z 0-9 _ - . /; others travel base64-encoded);
    // only a resource URI may, and it must then equal the body's exactly.
    if headers.method.is_some_and(|m| m.contains(',')) {
        return Some("Mcp-Method header holds a comma (several values?)".to_string());
    }
    if headers.name.is_some_and(|n| n.contains(',')) {
        let all_uris = messages.iter().all(|(node, msg)| {
            matches!(msg, Message::Response)
                || node
                    .get("method")
                    .and_then(Node::as_str)
                    .is_some_and(names_a_uri)
        });
        if !all_uris {
            return Some("Mcp-Name header holds a comma (several values?)".to_string());
        }
    }
    let method = match headers.method.map(decode_value) {
        Some(None) => return Some("Mcp-Method header is not validly encoded".to_string()),
        Some(Some(m)) => Some(m),
        None => None,
    };
    let name = match headers.name.map(decode_value) {
        Some(None) => return Some("Mcp-Name header is not validly encoded".to_string()),
        Some(Some(n)) => Some(n),
        None => None,
    };
    for (node, msg) in messages {
        if matches!(msg, Message::Response) {
            continue;
        }
        let body_method = node.get("method").and_then(Node::as_str).unwrap_or("");
        if let Some(m) = &method {
            if m != body_method {
                return Some(format!(
                    "Mcp-Method header \"{m}\" does not match the body's method \"{body_method}\""
                ));
            }
        }
        if let Some(n) = &name {
            let in_body = body_name(body_method, node.get("params"));
            let must_match = matches!(msg, Message::ToolCall { .. }) || in_body.is_some();
            if must_match && in_body != Some(n.as_str()) {
                return Some(format!(
                    "Mcp-Name header \"{n}\" does not match the body's name \"{}\"",
                    in_body.unwrap_or("")
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn plain_and_base64_values_decode() {
        assert_eq!(decode_value("tools/call").as_deref(), Some("tools/call"));
        // "héllo" in base64
        assert_eq!(
            decode_value("=?base64?aMOpbGxv?=").as_deref(),
            Some("héllo")
        );
        assert_eq!(
            decode_value("=?base64?aMOpbGxv").as_deref(),
            Some("=?base64?aMOpbGxv")
        );
        assert_eq!(decode_value("=?base64?***?="), None);
    }

    #[test]
    fn one_value_or_none_is_accepted_several_are_not() {
        assert_eq!(single("Mcp-Name", &[]), Ok(None));
        assert_eq!(single("Mcp-Name", &[b"echo"]), Ok(Some("echo")));
        let two = single("Mcp-Name", &[b"echo", b"rm"]).unwrap_err();
        assert!(two.contains("2 Mcp-Name headers"), "{two}");
        assert!(single("Mcp-Name", &[b"ech\xff"]).is_err());
    }

    fn check(method: Option<&str>, name: Option<&str>, body: &str) -> Option<String> {
        let doc = crate::json::parse(body.as_bytes()).unwrap();
        let msg = crate::jsonrpc::classify(&doc.root).unwrap();
        mismatch(&RoutingHeaders { method, name }, &[(&doc.root, &msg)])
    }

    #[test]
    fn a_comma_joined_value_is_refused_except_in_a_resource_uri() {
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a,b"}}"#;
        let problem = check(Some("tools/call"), Some("a,b"), call).unwrap();
        assert!(problem.contains("comma"), "{problem}");
        let problem = check(Some("tools/call, tools/call"), None, call).unwrap();
        assert!(problem.contains("Mcp-Method"), "{problem}");
        let read =
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a,b"}}"#;
        assert_eq!(
            check(Some("resources/read"), Some("file:///a,b"), read),
            None
        );
        assert!(check(Some("resources/read"), Some("file:///a,c"), read).is_some());
    }
}
