//! Filtering `tools/list` answers so agents only see tools they may call.
//!
//! The answer is rewritten by copying the server's bytes and dropping the
//! spans of removed tool entries, so everything else (pagination cursors,
//! `_meta`, unknown fields, formatting) reaches the client unchanged.

use crate::json::{self, Node, Value};
use crate::jsonrpc::CallKind;

/// An id of a `tools/list` request, normalised the way servers echo it.
#[derive(Debug, Clone, PartialEq)]
pub enum ListId {
    Str(String),
    Num(f64),
}

impl ListId {
    /// The id as JSON, to answer with.
    pub fn to_json(&self) -> String {
        match self {
            ListId::Str(s) => crate::write::quoted(s),
            ListId::Num(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => format!("{}", *n as i64),
            ListId::Num(n) => format!("{n}"),
        }
    }

    pub fn of(node: &Node<'_>) -> Option<ListId> {
        match &node.value {
            Value::String(s) => Some(ListId::Str(s.to_string())),
            Value::Number(_) => node.as_f64().map(ListId::Num),
            _ => None,
        }
    }
}

/// Why an answer could not be filtered (it is then withheld: fail closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unfilterable(pub String);

/// Decides whether a listed tool stays: its name and its whole entry (for
/// the server's annotations).
pub type KeepTool<'k> = dyn Fn(&str, &Node<'_>) -> bool + 'k;

/// Decides whether a listed resource (by `uri`), resource template (by
/// `uriTemplate`) or prompt (by `name`) stays.
pub type KeepItem<'k> = dyn Fn(CallKind, &str) -> bool + 'k;

/// The list answers besides `result.tools`: the member, its kind, the key
/// naming each entry.
const ITEM_LISTS: [(&str, CallKind, &str); 3] = [
    ("resources", CallKind::Resource, "uri"),
    ("resourceTemplates", CallKind::Resource, "uriTemplate"),
    ("prompts", CallKind::Prompt, "name"),
];

/// Filters a JSON body (one message or a batch). Returns the new body, or
/// None if nothing needed to change.
pub fn filter_json(
    body: &[u8],
    ids: &[ListId],
    keep: &dyn Fn(&str) -> bool,
) -> Result<Option<String>, Unfilterable> {
    filter_json_with(body, ids, &|name, _| keep(name))
}

/// [`filter_json`] with a decision that may read each tool's entry.
pub fn filter_json_with(
    body: &[u8],
    ids: &[ListId],
    keep: &KeepTool<'_>,
) -> Result<Option<String>, Unfilterable> {
    let answers = |msg: &Node<'_>| {
        msg.get("id")
            .and_then(ListId::of)
            .is_some_and(|id| ids.contains(&id))
    };
    filter_messages(body, &answers, keep, None)
}

/// [`filter_json_with`] that also filters resource and prompt lists.
pub fn filter_json_items(
    body: &[u8],
    ids: &[ListId],
    keep: &KeepTool<'_>,
    items: &KeepItem<'_>,
) -> Result<Option<String>, Unfilterable> {
    let answers = |msg: &Node<'_>| {
        msg.get("id")
            .and_then(ListId::of)
            .is_some_and(|id| ids.contains(&id))
    };
    filter_messages(body, &answers, keep, Some(items))
}

/// Filters every message shaped like a `tools/list` answer (`result.tools`
/// is present), whatever its id: for streams where the request ids are not
/// known (the legacy HTTP+SSE transport answers on a separate GET stream).
pub fn filter_json_by_shape(
    body: &[u8],
    keep: &KeepTool<'_>,
) -> Result<Option<String>, Unfilterable> {
    filter_messages(body, &|_| true, keep, None)
}

fn filter_messages(
    body: &[u8],
    answers_list: &dyn Fn(&Node<'_>) -> bool,
    keep: &KeepTool<'_>,
    items: Option<&KeepItem<'_>>,
) -> Result<Option<String>, Unfilterable> {
    let doc = json::parse(body).map_err(|e| Unfilterable(format!("upstream answer: {e}")))?;
    let mut cuts: Vec<(usize, usize, String)> = Vec::new();
    let messages: Vec<&Node<'_>> = match &doc.root.value {
        Value::Array(items) => items.iter().collect(),
        _ => vec![&doc.root],
    };
    for msg in messages {
        if !answers_list(msg) {
            continue;
        }
        if let Some(items) = items {
            for (member, kind, key) in ITEM_LISTS {
                let Some(list) = msg.get("result").and_then(|r| r.get(member)) else {
                    continue;
                };
                let Some(entries) = list.as_array() else {
                    return Err(Unfilterable(format!("result.{member} is not an array")));
                };
                let kept: Vec<&str> = entries
                    .iter()
                    .filter(|e| {
                        e.get(key)
                            .and_then(Node::as_str)
                            .is_some_and(|name| items(kind, name))
                    })
                    .map(|e| e.raw(doc.source))
                    .collect();
                if kept.len() != entries.len() {
                    cuts.push((list.start, list.end, format!("[{}]", kept.join(","))));
                }
            }
        }
        let Some(tools) = msg.get("result").and_then(|r| r.get("tools")) else {
            continue;
        };
        let Some(items) = tools.as_array() else {
            return Err(Unfilterable("result.tools is not an array".to_string()));
        };
        let kept: Vec<&str> = items
            .iter()
            .filter(|t| {
                t.get("name")
                    .and_then(Node::as_str)
                    .is_some_and(|name| keep(name, t))
            })
            .map(|t| t.raw(doc.source))
            .collect();
        if kept.len() != items.len() {
            cuts.push((tools.start, tools.end, format!("[{}]", kept.join(","))));
        }
    }
    if cuts.is_empty() {
        return Ok(None);
    }
    // One message may hold several lists: splice them in text order.
    cuts.sort_by_key(|c| c.0);
    Ok(Some(splice(doc.source, &cuts)))
}

/// Replaces the given (start, end) byte ranges of `source`, in order.
fn splice(source: &str, cuts: &[(usize, usize, String)]) -> String {
    let mut out = String::with_capacity(source.len());
    let mut at = 0;
    for (start, end, text) in cuts {
        out.push_str(source.get(at..*start).unwrap_or(""));
        out.push_str(text);
        at = *end;
    }
    out.push_str(source.get(at..).unwrap_or(""));
    out
}

/// Splits an event stream into events, each keeping its terminating blank
/// line, so that concatenating them gives back the input.
pub fn split_events(text: &str) -> Vec<&str> {
    let mut events = Vec::new();
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut i = 0;
    let mut line_start = 0;
    while i < bytes.len() {
        let eol_len = match (bytes.get(i), bytes.get(i + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            (Some(b'\r' | b'\n'), _) => 1,
            _ => 0,
        };
        if eol_len == 0 {
            i += 1;
            continue;
        }
        let blank = i == line_start;
        i += eol_len;
        line_start = i;
        if blank {
            events.push(text.get(start..i).unwrap_or(""));
            start = i;
        }
    }
    if start < text.len() {
        events.push(text.get(start..).unwrap_or(""));
    }
    events
}

/// An event's joined `data` lines (None when it has none) and its other
/// non-empty lines.
pub fn event_data(event: &str) -> (Option<String>, Vec<&str>) {
    let mut data = String::new();
    let mut has_data = false;
    let mut other_lines: Vec<&str> = Vec::new();
    // SSE lines end in CRLF, LF or a lone CR.
    for line in event.split(['\r', '\n']) {
        if let Some(rest) = line.strip_prefix("data") {
            let value = rest
                .strip_prefix(':')
                .map(|v| v.strip_prefix(' ').unwrap_or(v));
            if let Some(v) = value {
                if has_data {
                    data.push('\n');
                }
                data.push_str(v);
                has_data = true;
                continue;
            }
        }
        if !line.is_empty() {
            other_lines.push(line);
        }
    }
    (has_data.then_some(data), other_lines)
}

/// Filters an event stream as it flows, one complete event at a time, so
/// long-lived streams (the legacy `GET /sse`, Streamable HTTP's `GET /mcp`)
/// are filtered without buffering them whole. An incomplete event waits in
/// `carry` for the next chunk; `limit` bounds it.
#[derive(Debug, Default)]
pub struct EventStreamFilter {
    carry: Vec<u8>,
    limit: usize,
    /// The stream was cut off (an event too large or unreadable): the rest
    /// is dropped.
    poisoned: bool,
}

/// What one chunk produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct StreamOutput {
    /// Bytes to send on now (complete, filtered events).
    pub bytes: Vec<u8>,
    /// Why part of the stream was withheld, if it was.
    pub withheld: Option<String>,
    /// Pinned tools listed with a definition that differs from their pin.
    pub pin_mismatches: Vec<crate::pins::Mismatch>,
}

impl EventStreamFilter {
    pub fn new(limit: usize) -> Self {
        Self {
            carry: Vec::new(),
            limit,
            poisoned: false,
        }
    }

    /// Feeds a chunk; `end` flushes whatever is left.
    pub fn push(&mut self, chunk: &[u8], end: bool, keep: &KeepTool<'_>) -> StreamOutput {
        self.push_items(chunk, end, keep, None)
    }

    /// [`EventStreamFilter::push`] that also filters resource and prompt
    /// lists (by shape) when `items` is given.
    pub fn push_items(
        &mut self,
        chunk: &[u8],
        end: bool,
        keep: &KeepTool<'_>,
        items: Option<&KeepItem<'_>>,
    ) -> StreamOutput {
        let mut out = StreamOutput::default();
        if self.poisoned {
            return out;
        }
        self.carry.extend_from_slice(chunk);
        let complete = if end {
            self.carry.len()
        } else {
            last_event_end(&self.carry)
        };
        let ready: Vec<u8> = self.carry.drain(..complete).collect();
        if self.carry.len() > self.limit {
            self.poison(&mut out, "an event is larger than the filter's limit");
            return out;
        }
        if ready.is_empty() {
            return out;
        }
        let Ok(text) = std::str::from_utf8(&ready) else {
            self.poison(&mut out, "the event stream is not UTF-8");
            return out;
        };
        for event in split_events(text) {
            match filter_event(event, keep, items) {
                Ok(Some(new_event)) => out.bytes.extend_from_slice(new_event.as_bytes()),
                Ok(None) => out.bytes.extend_from_slice(event.as_bytes()),
                Err(Unfilterable(why)) => {
                    // Replace just this event: the stream stays usable.
                    let msg = crate::answer::error_message(
                        "null",
                        -32603,
                        &format!("an answer was withheld by the MCP policy filter: {why}"),
                    );
                    out.bytes
                        .extend_from_slice(format!("event: message\ndata: {msg}\n\n").as_bytes());
                    out.withheld = Some(why);
                }
            }
        }
        out
    }

    fn poison(&mut self, out: &mut StreamOutput, why: &str) {
        self.poisoned = true;
        self.carry.clear();
        out.withheld = Some(why.to_string());
    }
}

/// Where the last complete event of `bytes` ends (after its blank line).
fn last_event_end(bytes: &[u8]) -> usize {
    let mut end = 0;
    let mut i = 0;
    let mut line_start = 0;
    while i < bytes.len() {
        let eol = match (bytes.get(i), bytes.get(i + 1)) {
            (Some(b'\r'), Some(b'\n')) => 2,
            // A lone CR at the very end may be half of a CRLF: wait for more.
            (Some(b'\r'), None) => return end,
            (Some(b'\r' | b'\n'), _) => 1,
            _ => 0,
        };
        if eol == 0 {
            i += 1;
            continue;
        }
        let blank = i == line_start;
        i += eol;
        line_start = i;
        if blank {
            end = i;
        }
    }
    end
}

/// An event again: its other fields, then `data` split into lines.
fn render_event(other_lines: &[&str], data: &str) -> String {
    let mut out = String::new();
    for line in other_lines {
        out.push_str(line);
        out.push('\n');
    }
    for line in data.split('\n') {
        out.push_str("data: ");
        out.push_str(line);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// Filters one event by shape; None when it is unchanged.
fn filter_event(
    event: &str,
    keep: &KeepTool<'_>,
    items: Option<&KeepItem<'_>>,
) -> Result<Option<String>, Unfilterable> {
    let (data, other_lines) = event_data(event);
    let Some(data) = data.filter(|d| !d.trim().is_empty()) else {
        return Ok(None);
    };
    let filtered = match filter_messages(data.as_bytes(), &|_| true, keep, items) {
        Ok(f) => f,
        // Not JSON we can read: harmless unless it could be a list we filter.
        Err(_)
            if !data.contains("tools")
                && (items.is_none()
                    || !(data.contains("resource") || data.contains("prompts"))) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let Some(new_data) = filtered else {
        return Ok(None);
    };
    Ok(Some(render_event(&other_lines, &new_data)))
}

#[cfg(test)]
mod tests;
