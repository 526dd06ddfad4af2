//! `mcp-policy pin`: pins computed from a server's `tools/list`, by the
//! engine's own canonical form, so what the CLI prints is what the filter
//! compares.
//!
//! A server is asked over MCP's Streamable HTTP with a minimal std-only
//! HTTP/1.1 client (plain `http://`; for TLS or unusual setups, save the
//! answer with any client and pass the file): `initialize`,
//! `notifications/initialized`, then `tools/list` page by page. Answers may
//! be JSON or an event stream; bodies may be chunked.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use mcp_policy_engine::json::{self, Node, Value};
use mcp_policy_engine::pins;
use mcp_policy_engine::tools_list::{event_data, split_events};
use mcp_policy_engine::write::quoted;

/// Protocol version offered in `initialize`.
const PROTOCOL_VERSION: &str = "2025-06-18";
/// Most `tools/list` pages followed.
const MAX_PAGES: usize = 100;
/// Largest answer read from a server.
const MAX_ANSWER: usize = 16 << 20;

/// Pins of every tool in the given answers (saved files or fetched pages),
/// by name. A name listed twice with different definitions is an error.
pub fn pins_of(answers: &[Vec<u8>]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for answer in answers {
        for (name, pin) in pins_in_answer(answer)? {
            match out.get(&name) {
                Some(p) if *p != pin => {
                    return Err(format!(
                        "tool {} is listed twice with different definitions",
                        quoted(&name)
                    ))
                }
                _ => {
                    out.insert(name, pin);
                }
            }
        }
    }
    Ok(out)
}

/// The (name, pin) of every tool in a `tools/list` answer: a JSON message,
/// a batch, a bare `result` object, or an event stream whose events carry
/// such messages. Errors name what could not be read.
pub fn pins_in_answer(text: &[u8]) -> Result<Vec<(String, String)>, String> {
    let Ok(s) = std::str::from_utf8(text) else {
        return Err("the answer is not UTF-8".to_string());
    };
    let trimmed = s.trim_start();
    let mut out = Vec::new();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        collect_pins(trimmed.as_bytes(), &mut out)?;
    } else {
        let mut any = false;
        for event in split_events(s) {
            let Some(data) = event_data(event).0 else {
                continue;
            };
            if data.trim().is_empty() {
                continue;
            }
            any = true;
            collect_pins(data.as_bytes(), &mut out)?;
        }
        if !any {
            return Err("neither JSON nor an event stream with data".to_string());
        }
    }
    Ok(out)
}

fn collect_pins(json_text: &[u8], out: &mut Vec<(String, String)>) -> Result<(), String> {
    let doc = json::parse(json_text).map_err(|e| e.located(json_text))?;
    let messages: Vec<&Node<'_>> = match &doc.root.value {
        Value::Array(items) => items.iter().collect(),
        _ => vec![&doc.root],
    };
    for msg in messages {
        if let Some(err) = msg.get("error") {
            return Err(format!(
                "the server answered with an error: {}",
                err.raw(doc.source)
            ));
        }
        let tools = match msg.get("result").or(Some(msg)).and_then(|r| r.get("tools")) {
            Some(t) => t,
            None => continue,
        };
        let Some(tools) = tools.as_array() else {
            return Err("result.tools is not an array".to_string());
        };
        for (i, tool) in tools.iter().enumerate() {
            let Some(name) = tool.get("name").and_then(Node::as_str) else {
                return Err(format!("result.tools[{i}] has no string name"));
            };
            out.push((
                name.to_string(),
                format!("sha256:{}", pins::definition_hash(tool)),
            ));
        }
    }
    Ok(())
}

/// `{"pins": {...}}`, one tool a line, names sorted.
pub fn pins_document(pins: &BTreeMap<String, String>) -> String {
    format!("{{\n  \"pins\": {}\n}}\n", pins_object(pins, "  "))
}

/// The pins object, its inner lines indented by `indent` + two spaces.
fn pins_object(pins: &BTreeMap<String, String>, indent: &str) -> String {
    if pins.is_empty() {
        return "{}".to_string();
    }
    let lines: Vec<String> = pins
        .iter()
        .map(|(name, pin)| format!("{indent}  {}: {}", quoted(name), quoted(pin)))
        .collect();
    format!("{{\n{}\n{indent}}}", lines.join(",\n"))
}

/// What `--write` did to the policy's pins.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct MergeCounts {
    pub added: usize,
    pub changed: usize,
    pub unchanged: usize,
    /// Pins in the file for tools the server did not list (kept).
    pub kept: usize,
}

/// The policy text with `pins` merged in: listed tools get their new pin,
/// pins of tools the server did not list are kept. The rest of the file is
/// left byte for byte. JSON policies only.
pub fn merge_into_policy(
    policy: &str,
    pins: &BTreeMap<String, String>,
) -> Result<(String, MergeCounts), String> {
    let doc = json::parse(policy.as_bytes()).map_err(|e| {
        format!(
            "--write: not a JSON policy: {}",
            e.located(policy.as_bytes())
        )
    })?;
    let Some(members) = doc.root.as_object() else {
        return Err("--write: the policy is not a JSON object".to_string());
    };
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    let mut counts = MergeCounts::default();
    let existing = doc.root.get("pins");
    if let Some(node) = existing {
        let Some(old) = node.as_object() else {
            return Err("--write: the policy's pins is not an object".to_string());
        };
        for (name, value) in old {
            let text = value.as_str().unwrap_or_default().to_string();
            match pins.get(name.as_ref()) {
                Some(new) if pins::parse_pin(new) == pins::parse_pin(&text) => {
                    counts.unchanged += 1
                }
                Some(_) => counts.changed += 1,
                None => counts.kept += 1,
            }
            merged.insert(name.to_string(), text);
        }
    }
    for (name, pin) in pins {
        if !merged.contains_key(name) {
            counts.added += 1;
        }
        merged.insert(name.clone(), pin.clone());
    }
    let source = doc.source;
    let text = match existing {
        Some(node) => format!(
            "{}{}{}",
            source.get(..node.start).unwrap_or(""),
            pins_object(&merged, "  "),
            source.get(node.end..).unwrap_or("")
        ),
        None => {
            // Before the root's closing brace, after its last member.
            let close = doc.root.end.saturating_sub(1);
            let after_last = members.last().map(|(_, v)| v.end);
            let (head, sep) = match after_last {
                Some(end) => (source.get(..end).unwrap_or(""), ","),
                None => (source.get(..close).unwrap_or("").trim_end(), ""),
            };
            format!(
                "{head}{sep}\n  \"pins\": {}\n{}",
                pins_object(&merged, "  "),
                source
                    .get(close..)
                    .unwrap_or("")
                    .trim_start_matches([' ', '\t'])
            )
        }
    };
    Ok((text, counts))
}

/// An `http://host[:port][/path]` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Url {
    pub fn parse(text: &str) -> Result<Url, String> {
        let Some(rest) = text.strip_prefix("http://") else {
            return Err(format!(
                "{text}: only http:// URLs are fetched; for https, save the tools/list answer (e.g. with curl) and pass the file"
            ));
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("/")),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("{text}: bad port {p:?}"))?,
            ),
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("{text}: no host"));
        }
        Ok(Url {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

/// One HTTP answer.
#[derive(Debug, Default)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn is_event_stream(&self) -> bool {
        self.header("content-type")
            .is_some_and(|c| c.to_ascii_lowercase().starts_with("text/event-stream"))
    }
}

/// An MCP client session over Streamable HTTP, just enough to list tools.
pub struct Client {
    url: Url,
    extra_headers: Vec<(String, String)>,
    session: Option<String>,
    protocol: Option<String>,
    next_id: u64,
}

impl Client {
    pub fn new(url: Url, extra_headers: Vec<(String, String)>) -> Self {
        Self {
            url,
            extra_headers,
            session: None,
            protocol: None,
            next_id: 1,
        }
    }

    /// The JSON text of every `tools/list` page.
    pub fn list_tools(&mut self) -> Result<Vec<Vec<u8>>, String> {
        let init = format!(
            r#"{{"protocolVersion":"{PROTOCOL_VERSION}","capabilities":{{}},"clientInfo":{{"name":"mcp-policy-pin","version":"{}"}}}}"#,
            env!("CARGO_PKG_VERSION")
        );
        let (answer, message) = self.request("initialize", &init)?;
        self.session = answer.header("mcp-session-id").map(str::to_string);
        if let Ok(doc) = json::parse(message.as_bytes()) {
            self.protocol = doc
                .root
                .get("result")
                .and_then(|r| r.get("protocolVersion"))
                .and_then(Node::as_str)
                .map(str::to_string);
        }
        self.post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)?;
        let mut pages = Vec::new();
        let mut cursor: Option<String> = None;
        let mut cursors_seen: Vec<String> = Vec::new();
        for _ in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => format!("{{\"cursor\":{}}}", quoted(c)),
                None => "{}".to_string(),
            };
            let (_, message) = self.request("tools/list", &params)?;
            let doc =
                json::parse(message.as_bytes()).map_err(|e| format!("tools/list answer: {e}"))?;
            if let Some(err) = doc.root.get("error") {
                return Err(format!(
                    "tools/list: the server answered with an error: {}",
                    err.raw(doc.source)
                ));
            }
            cursor = doc
                .root
                .get("result")
                .and_then(|r| r.get("nextCursor"))
                .and_then(Node::as_str)
                .map(str::to_string);
            pages.push(message.into_bytes());
            match &cursor {
                None => return Ok(pages),
                Some(c) if cursors_seen.contains(c) => {
                    eprintln!("tools/list: the server repeated cursor {c:?}; stopped there");
                    return Ok(pages);
                }
                Some(c) => cursors_seen.push(c.clone()),
            }
        }
        Err(format!("tools/list: more than {MAX_PAGES} pages"))
    }

    /// Sends one request; returns the HTTP answer and the JSON-RPC answer
    /// to it (from a JSON body or from the event stream).
    fn request(&mut self, method: &str, params: &str) -> Result<(Answer, String), String> {
        let id = self.next_id;
        self.next_id += 1;
        let body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#);
        let answer = self.post(&body)?;
        if !(200..300).contains(&answer.status) {
            return Err(format!(
                "{method}: HTTP {} {}",
                answer.status,
                String::from_utf8_lossy(answer.body.get(..200).unwrap_or(&answer.body))
            ));
        }
        let message = if answer.is_event_stream() {
            answer_in_stream(&answer.body, id)
        } else {
            String::from_utf8(answer.body.clone()).ok()
        };
        match message {
            Some(m) => Ok((answer, m)),
            None => Err(format!("{method}: no JSON-RPC answer with id {id}")),
        }
    }

    fn post(&self, body: &str) -> Result<Answer, String> {
        let url = &self.url;
        let addr = format!("{}:{}", url.host.trim_matches(['[', ']']), url.port);
        let mut stream =
            TcpStream::connect(&addr).map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        let timeout = Some(Duration::from_secs(30));
        let _ = stream.set_read_timeout(timeout);
        let _ = stream.set_write_timeout(timeout);
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\nConnection: close\r\n",
            url.path,
            url.host,
            url.port,
            body.len()
        );
        if let Some(s) = &self.session {
            head.push_str(&format!("Mcp-Session-Id: {s}\r\n"));
        }
        if let Some(p) = &self.protocol {
            head.push_str(&format!("MCP-Protocol-Version: {p}\r\n"));
        }
        for (name, value) in &self.extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()))
            .map_err(|e| format!("{addr}: {e}"))?;
        read_answer(&mut stream).map_err(|e| format!("{addr}: {e}"))
    }
}

/// The data of the event that answers `id`, if the stream has it.
fn answer_in_stream(body: &[u8], id: u64) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    split_events(text)
        .into_iter()
        .filter_map(|e| event_data(e).0)
        .find(|data| {
            json::parse(data.as_bytes()).is_ok_and(|doc| {
                matches!(doc.root.get("id").map(|n| &n.value), Some(Value::Number(n)) if *n == id.to_string())
            })
        })
}

/// Reads an HTTP/1.1 answer: status, headers, then the body by
/// Content-Length, chunked framing, or until the server closes. An event
/// stream that stays open is read until the server closes it or the read
/// times out with events in hand.
fn read_answer(stream: &mut TcpStream) -> Result<Answer, String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut answer: Option<(Answer, usize)> = None;
    loop {
        let n = match stream.read(&mut buf) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && answer.is_some() =>
            {
                0
            }
            Err(e) => return Err(e.to_string()),
        };
        raw.extend_from_slice(buf.get(..n).unwrap_or(&[]));
        if raw.len() > MAX_ANSWER {
            return Err(format!("answer larger than {MAX_ANSWER} bytes"));
        }
        if answer.is_none() {
            answer = parse_head(&raw)?;
        }
        if let Some((a, body_start)) = &answer {
            let body = raw.get(*body_start..).unwrap_or(&[]);
            let chunked = a
                .header("transfer-encoding")
                .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
            let length = a
                .header("content-length")
                .and_then(|l| l.trim().parse::<usize>().ok());
            let (decoded, complete) = if chunked {
                dechunk(body)
            } else if let Some(len) = length {
                (body.get(..len).unwrap_or(body).to_vec(), body.len() >= len)
            } else {
                (body.to_vec(), false)
            };
            // A JSON-RPC answer on an event stream ends the wait even when
            // the server keeps the stream open.
            let answered = a.is_event_stream() && has_response_event(&decoded);
            if complete || n == 0 || answered {
                let (mut a, _) = answer.take().unwrap_or_default();
                a.body = decoded;
                return Ok(a);
            }
        } else if n == 0 {
            return Err("the connection closed before an HTTP answer".to_string());
        }
    }
}

fn has_response_event(body: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(body) else {
        return false;
    };
    split_events(text)
        .into_iter()
        // Only complete events (ending in a blank line).
        .filter(|e| e.ends_with("\n\n") || e.ends_with("\r\n\r\n") || e.ends_with("\r\r"))
        .filter_map(|e| event_data(e).0)
        .any(|d| {
            json::parse(d.as_bytes()).is_ok_and(|doc| {
                doc.root.get("id").is_some()
                    && (doc.root.get("result").is_some() || doc.root.get("error").is_some())
            })
        })
}

/// Status line and headers, once they are complete.
fn parse_head(raw: &[u8]) -> Result<Option<(Answer, usize)>, String> {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = String::from_utf8_lossy(raw.get(..end).unwrap_or(&[])).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| format!("not an HTTP answer: {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    Ok(Some((
        Answer {
            status,
            headers,
            body: Vec::new(),
        },
        end + 4,
    )))
}

/// Decodes as much chunked framing as has arrived; true once the last
/// (empty) chunk was seen.
fn dechunk(mut body: &[u8]) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return (out, false);
        };
        let size_text = String::from_utf8_lossy(body.get(..eol).unwrap_or(&[])).to_string();
        let size_hex = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_hex, 16) else {
            return (out, false);
        };
        if size == 0 {
            return (out, true);
        }
        let start = eol + 2;
        let Some(chunk) = body.get(start..start + size) else {
            return (out, false);
        };
        out.extend_from_slice(chunk);
        body = body.get(start + size + 2..).unwrap_or(&[]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    const ECHO: &str = r#"{"name":"echo","description":"Echo the text","inputSchema":{"type":"object","properties":{"text":{"type":"string","maxLength":10}},"required":["text"]},"annotations":{"readOnlyHint":true}}"#;
    const ECHO_PIN: &str = "dd4013e4a9678377333e00580b8e62942dff04bc3dcd1ca4980226259db2b8aa";

    #[test]
    fn pins_are_read_from_json_batches_results_and_event_streams() {
        let msg =
            format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[{ECHO},{{"name":"b"}}]}}}}"#);
        let expected = vec![
            ("echo".to_string(), format!("sha256:{ECHO_PIN}")),
            (
                "b".to_string(),
                "sha256:4990ff99be213c83fdc8397bfca008af54807ffa699ce10bb132bada6347fbf3"
                    .to_string(),
            ),
        ];
        assert_eq!(pins_in_answer(msg.as_bytes()).unwrap(), expected);
        assert_eq!(
            pins_in_answer(format!("[{msg}]").as_bytes()).unwrap(),
            expected
        );
        let result = format!(r#"{{"tools":[{ECHO},{{"name":"b"}}]}}"#);
        assert_eq!(pins_in_answer(result.as_bytes()).unwrap(), expected);
        let sse = format!("event: message\r\nid: 7\r\ndata: {msg}\r\n\r\n");
        assert_eq!(pins_in_answer(sse.as_bytes()).unwrap(), expected);
        let err = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#;
        assert!(pins_in_answer(err.as_bytes())
            .unwrap_err()
            .contains("error"));
        assert!(pins_in_answer(b"hello").is_err());
    }

    #[test]
    fn urls_parse() {
        let u = Url::parse("http://127.0.0.1:8080/mcp").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/mcp")
        );
        let u = Url::parse("http://example").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert!(Url::parse("https://example/mcp")
            .unwrap_err()
            .contains("save the tools/list"));
    }

    #[test]
    fn chunks_decode_partially_and_fully() {
        assert_eq!(
            dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"),
            (b"abcde".to_vec(), true)
        );
        assert_eq!(dechunk(b"3\r\nabc\r\n2\r\nd"), (b"abc".to_vec(), false));
    }

    #[test]
    fn merge_adds_a_section_and_updates_pins() {
        let mut pins = BTreeMap::new();
        pins.insert("a".to_string(), format!("sha256:{}", "1".repeat(64)));
        let (text, counts) = merge_into_policy("{\n  \"version\": \"1\"\n}\n", &pins).unwrap();
        assert_eq!(counts.added, 1);
        let doc = json::parse(text.as_bytes()).unwrap();
        assert_eq!(doc.root.get("version").unwrap().as_str(), Some("1"));
        assert!(doc.root.get("pins").unwrap().get("a").is_some());
        pins.insert("a".to_string(), format!("sha256:{}", "2".repeat(64)));
        pins.insert("b".to_string(), format!("sha256:{}", "3".repeat(64)));
        let (again, counts) = merge_into_policy(&text, &pins).unwrap();
        assert_eq!((counts.added, counts.changed), (1, 1));
        assert!(again.contains(&"2".repeat(64)) && !again.contains(&"1".repeat(64)));
        let (_, empty) = merge_into_policy("{}", &pins).unwrap();
        assert_eq!(empty.added, 2);
    }
}
