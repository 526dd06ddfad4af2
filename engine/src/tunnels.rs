//! Requests that open a tunnel: `CONNECT` and protocol upgrades.
//!
//! After the handshake such a stream carries bytes that are no HTTP request
//! the filter can judge (an MCP SDK WebSocket transport would carry
//! `tools/call` through it unseen), and no MCP transport uses one. They are
//! refused at once, whatever `header_mode`: held, they would wait for a body
//! that never comes as a request body.

use crate::answer::{self, LocalReply};

/// A refusal for a tunnel-opening request, None for an ordinary request.
/// `method` is `:method`; `upgrade`, `connection` and `protocol` (the
/// HTTP/2 extended CONNECT `:protocol`) as received.
pub fn refuse(
    method: Option<&[u8]>,
    upgrade: Option<&[u8]>,
    connection: Option<&[u8]>,
    protocol: Option<&[u8]>,
) -> Option<LocalReply> {
    if method.is_some_and(|m| m.eq_ignore_ascii_case(b"CONNECT")) {
        return Some(answer::not_mcp_transport("CONNECT"));
    }
    if protocol.is_some() || upgrade.is_some() {
        return Some(answer::not_mcp_transport(
            "a protocol upgrade (Upgrade header)",
        ));
    }
    let asks_upgrade = connection.is_some_and(|c| {
        c.split(|b| *b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    asks_upgrade.then(|| answer::not_mcp_transport("a protocol upgrade (Connection: upgrade)"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn connect_and_upgrades_are_refused_with_501() {
        let r = refuse(Some(b"CONNECT"), None, None, None).unwrap();
        assert_eq!(r.status, 501);
        assert!(r.body.contains("CONNECT"));
        let r = refuse(Some(b"GET"), Some(b"websocket"), Some(b"Upgrade"), None).unwrap();
        assert_eq!(r.status, 501);
        assert!(r.body.contains("upgrade"));
        assert!(refuse(Some(b"GET"), None, Some(b"keep-alive, UPGRADE"), None).is_some());
        assert!(refuse(Some(b"CONNECT"), None, None, Some(b"websocket")).is_some());
    }

    #[test]
    fn ordinary_requests_pass() {
        assert!(refuse(Some(b"POST"), None, None, None).is_none());
        assert!(refuse(Some(b"GET"), None, Some(b"keep-alive"), None).is_none());
        assert!(refuse(None, None, Some(b"close, upgraded"), None).is_none());
    }
}
