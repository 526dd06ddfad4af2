//! `mcp-policy pin`: pins from saved `tools/list` answers (JSON and event
//! stream), from a live server over Streamable HTTP, and merged into a
//! policy file with `--write`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use mcp_policy_engine::json;

const BIN: &str = env!("CARGO_BIN_EXE_mcp-policy");

/// The echo tool and its pin, computed independently with Python
/// (`json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
/// then `hashlib.sha256`).
const ECHO: &str = r#"{"name":"echo","description":"Echo the text","inputSchema":{"type":"object","properties":{"text":{"type":"string","maxLength":10}},"required":["text"]},"annotations":{"readOnlyHint":true}}"#;
const ECHO_PIN: &str = "sha256:dd4013e4a9678377333e00580b8e62942dff04bc3dcd1ca4980226259db2b8aa";

fn scratch(name: &str, content: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "mcp-policy-pin-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run mcp-policy")
}

fn answer(tools: &[&str]) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":2,"result":{{"tools":[{}],"nextCursor":null}}}}"#,
        tools.join(",")
    )
}

/// The printed pins, as (name, pin) pairs.
fn printed(out: &Output) -> Vec<(String, String)> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    let doc = json::parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
    doc.root
        .get("pins")
        .and_then(|p| p.as_object())
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn pins_from_a_saved_json_answer() {
    let file = scratch(
        "list.json",
        &answer(&[ECHO, r#"{"name":"b","description":"B"}"#]),
    );
    let pins = printed(&run(&["pin", file.to_str().unwrap()]));
    assert_eq!(pins.len(), 2);
    assert_eq!(pins[0].0, "b");
    assert_eq!(pins[1], ("echo".to_string(), ECHO_PIN.to_string()));
}

#[test]
fn pins_from_a_saved_event_stream_answer() {
    let sse = format!(
        ": comment\n\nid: p\ndata: \n\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{{}}}}\n\nevent: message\ndata: {}\n\n",
        answer(&[ECHO])
    );
    let file = scratch("list.sse", &sse);
    let pins = printed(&run(&["pin", file.to_str().unwrap()]));
    assert_eq!(pins, vec![("echo".to_string(), ECHO_PIN.to_string())]);
}

#[test]
fn key_order_and_whitespace_do_not_change_the_pin() {
    let pretty = r#"{ "annotations": {"readOnlyHint": true}, "name": "echo",
        "inputSchema": {"required": ["text"], "type": "object",
                        "properties": {"text": {"maxLength": 10.0, "type": "string"}}},
        "description": "Echo the text" }"#;
    let file = scratch("pretty.json", &answer(&[pretty]));
    assert_eq!(
        printed(&run(&["pin", file.to_str().unwrap()]))[0].1,
        ECHO_PIN
    );
}

#[test]
fn unusable_answers_are_errors() {
    let err = scratch(
        "err.json",
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}}"#,
    );
    let out = run(&["pin", err.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("answered with an error"));
    let empty = scratch("empty.json", &answer(&[]));
    assert_eq!(
        run(&["pin", empty.to_str().unwrap()]).status.code(),
        Some(1)
    );
    let twice = scratch(
        "twice.json",
        &answer(&[
            r#"{"name":"a","description":"1"}"#,
            r#"{"name":"a","description":"2"}"#,
        ]),
    );
    let out = run(&["pin", twice.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("listed twice"));
    let https = run(&["pin", "https://example.com/mcp"]);
    assert!(String::from_utf8_lossy(&https.stderr).contains("save the tools/list answer"));
}

#[test]
fn write_merges_pins_into_a_policy_that_then_validates() {
    let policy = scratch(
        "policy.json",
        &format!(
            "{{\n  \"version\": \"1\",\n  \"default\": \"allow\",\n  \"pins\": {{\"gone\": \"sha256:{}\", \"echo\": \"sha256:{}\"}}\n}}\n",
            "a".repeat(64),
            "b".repeat(64)
        ),
    );
    let list = scratch("list.json", &answer(&[ECHO, r#"{"name":"new"}"#]));
    let out = run(&[
        "pin",
        list.to_str().unwrap(),
        "--write",
        policy.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("1 new, 1 changed, 0 unchanged, 1 kept"),
        "{err}"
    );
    let text = std::fs::read_to_string(&policy).unwrap();
    let doc = json::parse(text.as_bytes()).unwrap();
    let pins = doc.root.get("pins").unwrap();
    assert_eq!(pins.get("echo").unwrap().as_str(), Some(ECHO_PIN));
    assert!(pins.get("gone").is_some() && pins.get("new").is_some());
    assert_eq!(doc.root.get("default").unwrap().as_str(), Some("allow"));
    let validated = run(&["validate", policy.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&validated.stdout).contains("3 pinned tools"));
    assert!(
        validated.status.success(),
        "{}",
        String::from_utf8_lossy(&validated.stdout)
    );
}

/// A one-shot Streamable HTTP MCP server: answers `initialize` (with a
/// session id) and `tools/list` as JSON or, with `sse`, as a chunked event
/// stream that stays open after the answer; records what it received.
fn serve(sse: bool) -> (String, std::thread::JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            seen.push(format!("{head}\n{body}"));
            let mut stream = stream;
            let doc = json::parse(body.as_bytes()).unwrap();
            let Some(id) = doc.root.get("id").map(|i| i.raw(doc.source).to_string()) else {
                stream
                    .write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n")
                    .unwrap();
                continue;
            };
            let result = match doc.root.get("method").and_then(|m| m.as_str()) {
                Some("initialize") => r#"{"protocolVersion":"2025-06-18","capabilities":{"tools":{}},"serverInfo":{"name":"t","version":"0"}}"#.to_string(),
                _ => format!(r#"{{"tools":[{ECHO}]}}"#),
            };
            let message = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
            if sse {
                let event = format!("event: message\ndata: {message}\n\n");
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nMcp-Session-Id: s-1\r\nTransfer-Encoding: chunked\r\n\r\n";
                stream.write_all(head.as_bytes()).unwrap();
                // Split mid-event: the client must wait for the whole event.
                let (a, b) = event.split_at(10);
                for part in [a, b] {
                    stream
                        .write_all(format!("{:x}\r\n{part}\r\n", part.len()).as_bytes())
                        .unwrap();
                    stream.flush().unwrap();
                }
                // The stream stays open: the client stops at the answer.
                let mut rest = Vec::new();
                let _ = stream.read_to_end(&mut rest);
            } else {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: s-1\r\nContent-Length: {}\r\n\r\n",
                    message.len()
                );
                stream.write_all(head.as_bytes()).unwrap();
                stream.write_all(message.as_bytes()).unwrap();
            }
        }
        seen
    });
    (url, handle)
}

#[test]
fn pins_from_a_live_server_answering_json() {
    let (url, server) = serve(false);
    let pins = printed(&run(&["pin", &url, "--header", "Authorization: Bearer t"]));
    assert_eq!(pins, vec![("echo".to_string(), ECHO_PIN.to_string())]);
    let seen = server.join().unwrap();
    assert!(seen[0].contains("\"initialize\""));
    assert!(
        seen[1].contains("notifications/initialized") && seen[1].contains("Mcp-Session-Id: s-1")
    );
    assert!(seen[2].contains("tools/list") && seen[2].contains("MCP-Protocol-Version: 2025-06-18"));
    assert!(seen.iter().all(|r| r.contains("Authorization: Bearer t")));
}

#[test]
fn pins_from_a_live_server_answering_with_an_event_stream() {
    let (url, server) = serve(true);
    let pins = printed(&run(&["pin", &url]));
    assert_eq!(pins, vec![("echo".to_string(), ECHO_PIN.to_string())]);
    server.join().unwrap();
}
