//! Risk categories, and the hints learned from the server's `tools/list`.
//!
//! The policy's own classification always wins; when it says nothing about
//! a tool, the server's annotations decide (`readOnlyHint` → read,
//! `destructiveHint` → destructive, otherwise write). MCP's defaults make an
//! unannotated tool destructive, and a tool the filter has never seen listed
//! is treated the same way: without information, assume the worst.
//!
//! Hints are kept in one shared-data key so every worker sees what any
//! worker learned, bounded in size so a server with endless tools cannot
//! grow memory.

use crate::json::{self, Node, Value};
use crate::store::SharedStore;

/// Read < Write < Execute < Destructive: the most severe applicable wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Risk {
    Read,
    Write,
    Execute,
    Destructive,
}

impl Risk {
    pub const ALL: [(&'static str, Risk); 4] = [
        ("read", Risk::Read),
        ("write", Risk::Write),
        ("execute", Risk::Execute),
        ("destructive", Risk::Destructive),
    ];

    pub fn name(self) -> &'static str {
        match self {
            Risk::Read => "read",
            Risk::Write => "write",
            Risk::Execute => "execute",
            Risk::Destructive => "destructive",
        }
    }

    fn code(self) -> char {
        match self {
            Risk::Read => 'r',
            Risk::Write => 'w',
            Risk::Execute => 'x',
            Risk::Destructive => 'd',
        }
    }

    fn from_code(c: char) -> Option<Risk> {
        match c {
            'r' => Some(Risk::Read),
            'w' => Some(Risk::Write),
            'x' => Some(Risk::Execute),
            'd' => Some(Risk::Destructive),
            _ => None,
        }
    }
}

/// The shared-data key holding learned hints.
pub const HINTS_KEY: &str = "mcp_policy/v1/hints";
/// Upper bound of the hints value; names beyond it are not learned (and
/// stay "never seen": destructive).
pub const HINTS_MAX_BYTES: usize = 64 * 1024;
const MAX_ATTEMPTS: usize = 16;

/// The category a tool's MCP annotations give (spec defaults applied).
pub fn from_annotations(tool: &Node<'_>) -> Risk {
    let ann = tool.get("annotations");
    let flag = |name: &str| {
        ann.and_then(|a| a.get(name)).and_then(|v| match v.value {
            Value::Bool(b) => Some(b),
            _ => None,
        })
    };
    if flag("readOnlyHint") == Some(true) {
        Risk::Read
    } else if flag("destructiveHint").unwrap_or(true) {
        Risk::Destructive
    } else {
        Risk::Write
    }
}

/// The (name, category) pairs of every tool in a `tools/list` answer
/// (JSON message or batch, or the data of SSE events).
pub fn hints_in_answer(json_text: &[u8]) -> Vec<(String, Risk)> {
    let Ok(doc) = json::parse(json_text) else {
        return Vec::new();
    };
    let messages: Vec<&Node<'_>> = match &doc.root.value {
        Value::Array(items) => items.iter().collect(),
        _ => vec![&doc.root],
    };
    let mut out = Vec::new();
    for msg in messages {
        let tools = msg
            .get("result")
            .and_then(|r| r.get("tools"))
            .and_then(Node::as_array)
            .unwrap_or(&[]);
        for tool in tools {
            if let Some(name) = tool.get("name").and_then(Node::as_str) {
                // Names with line breaks or tabs cannot be stored; skip them
                // (they stay "never seen", which is the strictest reading).
                if !name.contains(['\n', '\t']) {
                    out.push((name.to_string(), from_annotations(tool)));
                }
            }
        }
    }
    out
}

fn parse_hints(bytes: &[u8]) -> Vec<(&str, Risk)> {
    std::str::from_utf8(bytes)
        .unwrap_or("")
        .lines()
        .filter_map(|line| {
            let (name, code) = line.split_once('\t')?;
            Some((name, Risk::from_code(code.chars().next()?)?))
        })
        .collect()
}

/// The learned category of `tool`, if any worker has seen it listed.
pub fn lookup(store: &dyn SharedStore, tool: &str) -> Option<Risk> {
    let (bytes, _) = store.get(HINTS_KEY)?;
    parse_hints(&bytes)
        .into_iter()
        .find(|(name, _)| *name == tool)
        .map(|(_, r)| r)
}

/// Merges learned hints into shared data (CAS; only writes on change).
pub fn learn(store: &dyn SharedStore, learned: &[(String, Risk)]) {
    if learned.is_empty() {
        return;
    }
    for _ in 0..MAX_ATTEMPTS {
        let current = store.get(HINTS_KEY);
        let (bytes, cas) = match &current {
            Some((b, cas)) => (b.as_slice(), *cas),
            None => (&[][..], u32::MAX),
        };
        if current.is_some() && cas == 0 {
            return;
        }
        let mut entries: Vec<(String, Risk)> = parse_hints(bytes)
            .into_iter()
            .map(|(n, r)| (n.to_string(), r))
            .collect();
        let mut changed = false;
        for (name, risk) in learned {
            match entries.iter_mut().find(|(n, _)| n == name) {
                Some(entry) if entry.1 != *risk => {
                    entry.1 = *risk;
                    changed = true;
                }
                Some(_) => {}
                None => {
                    entries.push((name.clone(), *risk));
                    changed = true;
                }
            }
        }
        if !changed {
            return;
        }
        let mut text = String::new();
        for (name, risk) in &entries {
            let line_len = name.len() + 3;
            if text.len() + line_len > HINTS_MAX_BYTES {
                break;
            }
            text.push_str(name);
            text.push('\t');
            text.push(risk.code());
            text.push('\n');
        }
        // A missing key is created with an impossible CAS, so a concurrent
        // creation is never overwritten; on conflict, re-read and merge.
        match store.set(HINTS_KEY, text.as_bytes(), cas) {
            Ok(()) => return,
            Err(crate::store::SetError::CasMismatch) => continue,
            Err(_) => return,
        }
    }
}
