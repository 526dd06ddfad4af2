//! Pinned tool definitions: protection from a server that changes a tool
//! after it was approved (a "rug pull").
//!
//! A pin is the SHA-256 of a tool's canonical definition (see
//! [`canonical_definition`]). The filter hashes every pinned tool it sees in
//! a `tools/list` answer: a mismatch hides the tool from that answer at
//! once, and is remembered in shared data so that later calls of the tool
//! are refused on every worker. Only tools named in the policy's `pins` are
//! remembered, so memory is bounded by the policy, not by the server.
//!
//! Canonical form (what `mcp-policy pin` hashes too): a JSON object with the
//! tool entry's members `name`, `description`, `inputSchema`, `annotations`
//! (each only when present; others such as `title` are not pinned), written
//! without whitespace, object keys sorted by Unicode code point at every
//! depth, arrays in order, strings unescaped and re-escaped with only `"`,
//! `\` and control characters escaped (`\b \f \n \r \t`, else `\u00xx`),
//! `true`/`false`/`null` as such, and numbers by value: an integral value up
//! to 2^53 in magnitude as an integer (`1.0`, `1e0` → `1`, `-0` → `0`), any
//! other as its shortest round-trip decimal without exponent, and a number
//! too large for a double as written. The pin is
//! `sha256:` + the lowercase hex digest of the form's UTF-8 bytes.

use sha2::{Digest, Sha256};

use crate::json::{Node, Value};
use crate::store::{SetError, SharedStore};

/// The members of a tool entry that a pin covers, in canonical order.
pub const FIELDS: [&str; 4] = ["annotations", "description", "inputSchema", "name"];

/// The shared-data key holding what the filter saw of pinned tools.
pub const SEEN_KEY: &str = "mcp_policy/v1/pins";
/// Upper bound of the value; tools past it are not remembered (their calls
/// then pass as "never listed", while lists still hide mismatches).
pub const SEEN_MAX_BYTES: usize = 128 * 1024;
const MAX_ATTEMPTS: usize = 16;

/// What a listed definition that differs from its pin does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMismatch {
    /// Hidden from `tools/list`, its calls refused (default).
    Refuse,
    /// Listed and forwarded, but counted and audited.
    Flag,
}

/// What a listed tool without a pin does while the policy has pins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpinned {
    /// Listed and callable as the rest of the policy says (default).
    Allow,
    /// Hidden from `tools/list`, its calls refused.
    Deny,
}

/// The policy's `pins` section and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pins {
    /// Tool name → lowercase hex SHA-256 of its canonical definition.
    pub tools: std::collections::HashMap<String, String>,
    pub on_mismatch: OnMismatch,
    pub unpinned: Unpinned,
}

/// Reads a pin as written in a policy: `sha256:<64 hex>` or the bare hex,
/// any case. Returns the lowercase hex.
pub fn parse_pin(text: &str) -> Option<String> {
    let hex = text.strip_prefix("sha256:").unwrap_or(text);
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// The canonical JSON text of a tool entry's pinned members.
pub fn canonical_definition(tool: &Node<'_>) -> String {
    let mut out = String::from("{");
    let mut first = true;
    for field in FIELDS {
        if let Some(value) = tool.get(field) {
            if !first {
                out.push(',');
            }
            first = false;
            write_string(field, &mut out);
            out.push(':');
            write_canonical(value, &mut out);
        }
    }
    out.push('}');
    out
}

/// The canonical JSON text of any value.
pub fn canonical(node: &Node<'_>) -> String {
    let mut out = String::new();
    write_canonical(node, &mut out);
    out
}

fn write_canonical(node: &Node<'_>, out: &mut String) {
    match &node.value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(text) => write_number(text, out),
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(members) => {
            // Keys are unique (the parser refuses duplicates); byte order
            // of UTF-8 is code point order.
            let mut sorted: Vec<&(std::borrow::Cow<'_, str>, Node<'_>)> = members.iter().collect();
            sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (i, (key, value)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(key, out);
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
    }
}

/// 2^53: integers up to it are exact in a double.
const EXACT_INTEGERS: f64 = 9_007_199_254_740_992.0;

fn write_number(text: &str, out: &mut String) {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v.trunc() == v && v.abs() <= EXACT_INTEGERS => {
            // `as` is exact here (integral, within 2^53); -0 becomes 0.
            out.push_str(&(v as i64).to_string());
        }
        Ok(v) if v.is_finite() => out.push_str(&v.to_string()),
        _ => out.push_str(text),
    }
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(text: &str) -> String {
    hex(&Sha256::digest(text.as_bytes()))
}

/// The lowercase hex SHA-256 of a tool entry's canonical definition.
pub fn definition_hash(tool: &Node<'_>) -> String {
    sha256_hex(&canonical_definition(tool))
}

/// A short digest of each pinned member (`-` when absent), in [`FIELDS`]
/// order: enough to say which member changed, not to pin it.
pub fn field_digests(tool: &Node<'_>) -> [String; 4] {
    FIELDS.map(|f| match tool.get(f) {
        Some(v) => sha256_hex(&canonical(v)).get(..8).unwrap_or("").to_string(),
        None => "-".to_string(),
    })
}

/// What the filter saw of one pinned tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Hash of the definition listed last.
    pub listed: String,
    pub listed_fields: [String; 4],
    /// The last listed definition that matched the pin of its time (its
    /// hash and member digests), to name what changed since.
    pub good: Option<(String, [String; 4])>,
}

impl Seen {
    /// Members that differ between the last good and the listed
    /// definition, if a good one whose hash is `pin` is known.
    pub fn changed_fields(&self, pin: &str) -> Option<Vec<&'static str>> {
        let (hash, fields) = self.good.as_ref()?;
        if hash != pin {
            return None;
        }
        Some(
            FIELDS
                .iter()
                .zip(fields.iter().zip(&self.listed_fields))
                .filter(|(_, (a, b))| a != b)
                .map(|(f, _)| *f)
                .collect(),
        )
    }

    /// Why calls of `tool` are refused (or flagged): the listed definition
    /// is not the pinned one. None when it matches.
    pub fn mismatch(&self, tool: &str, pin: &str) -> Option<String> {
        if self.listed == pin {
            return None;
        }
        let shown = crate::text::shown_name(tool);
        let listed = self.listed.get(..12).unwrap_or("");
        let pinned = pin.get(..12).unwrap_or("");
        let what = match self.changed_fields(pin) {
            Some(f) if !f.is_empty() => f.join(", "),
            _ => "changed members unknown: no matching definition was listed since the filter started".to_string(),
        };
        Some(format!(
            "definition of tool \"{shown}\" changed since it was pinned ({what}); listed sha256:{listed}..., pinned sha256:{pinned}..."
        ))
    }
}

fn encode_fields(fields: &[String; 4]) -> String {
    fields.join(",")
}

fn decode_fields(text: &str) -> Option<[String; 4]> {
    let mut parts = text.split(',').map(str::to_string);
    let out = [parts.next()?, parts.next()?, parts.next()?, parts.next()?];
    parts.next().is_none().then_some(out)
}

/// Lines `name \t listed \t listed_fields \t good|- \t good_fields|-`.
fn parse_seen(bytes: &[u8]) -> Vec<(String, Seen)> {
    std::str::from_utf8(bytes)
        .unwrap_or("")
        .lines()
        .filter_map(|line| {
            let mut cols = line.split('\t');
            let name = cols.next()?.to_string();
            let listed = cols.next()?.to_string();
            let listed_fields = decode_fields(cols.next()?)?;
            let good = match (cols.next()?, cols.next()?) {
                ("-", _) => None,
                (hash, fields) => Some((hash.to_string(), decode_fields(fields)?)),
            };
            Some((
                name,
                Seen {
                    listed,
                    listed_fields,
                    good,
                },
            ))
        })
        .collect()
}

fn render_seen(entries: &[(String, Seen)]) -> String {
    let mut text = String::new();
    for (name, seen) in entries {
        let (good, good_fields) = match &seen.good {
            Some((h, f)) => (h.clone(), encode_fields(f)),
            None => ("-".to_string(), "-".to_string()),
        };
        let line = format!(
            "{name}\t{}\t{}\t{good}\t{good_fields}\n",
            seen.listed,
            encode_fields(&seen.listed_fields)
        );
        if text.len() + line.len() > SEEN_MAX_BYTES {
            break;
        }
        text.push_str(&line);
    }
    text
}

/// What the filter saw of `tool`, if it was listed since the filter started.
pub fn lookup(store: &dyn SharedStore, tool: &str) -> Option<Seen> {
    let (bytes, _) = store.get(SEEN_KEY)?;
    parse_seen(&bytes)
        .into_iter()
        .find(|(name, _)| name == tool)
        .map(|(_, s)| s)
}

/// One pinned tool as a `tools/list` answer showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub hash: String,
    pub fields: [String; 4],
}

impl Listed {
    pub fn of(name: &str, tool: &Node<'_>) -> Self {
        Self {
            name: name.to_string(),
            hash: definition_hash(tool),
            fields: field_digests(tool),
        }
    }
}

/// A listed definition that differs from its pin, for metrics and audit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub tool: String,
    pub reason: String,
}

/// Records listed definitions in shared data (CAS; writes only on change)
/// and returns the ones that differ from their pins, with the reason.
pub fn learn(store: &dyn SharedStore, pins: &Pins, listed: &[Listed]) -> Vec<Mismatch> {
    if listed.is_empty() {
        return Vec::new();
    }
    let mut mismatches = Vec::new();
    for _ in 0..MAX_ATTEMPTS {
        let current = store.get(SEEN_KEY);
        let (bytes, cas) = match &current {
            Some((b, cas)) => (b.as_slice(), *cas),
            None => (&[][..], u32::MAX),
        };
        let mut entries = parse_seen(bytes);
        let mut changed = false;
        mismatches.clear();
        for item in listed {
            let Some(pin) = pins.tools.get(&item.name) else {
                continue;
            };
            if item.name.contains(['\n', '\t']) {
                continue;
            }
            let good = (item.hash == *pin).then(|| (item.hash.clone(), item.fields.clone()));
            let seen = match entries.iter_mut().find(|(n, _)| *n == item.name) {
                Some((_, seen)) => {
                    let next = Seen {
                        listed: item.hash.clone(),
                        listed_fields: item.fields.clone(),
                        good: good.or_else(|| seen.good.clone()),
                    };
                    if *seen != next {
                        *seen = next;
                        changed = true;
                    }
                    seen.clone()
                }
                None => {
                    let seen = Seen {
                        listed: item.hash.clone(),
                        listed_fields: item.fields.clone(),
                        good,
                    };
                    entries.push((item.name.clone(), seen.clone()));
                    changed = true;
                    seen
                }
            };
            if let Some(reason) = seen.mismatch(&item.name, pin) {
                mismatches.push(Mismatch {
                    tool: crate::text::shown_name(&item.name).into_owned(),
                    reason,
                });
            }
        }
        if !changed || (current.is_some() && cas == 0) {
            return mismatches;
        }
        // A missing key is created with an impossible CAS, so a concurrent
        // creation is never overwritten; on conflict, re-read and merge.
        match store.set(SEEN_KEY, render_seen(&entries).as_bytes(), cas) {
            Ok(()) => return mismatches,
            Err(SetError::CasMismatch) => continue,
            Err(_) => return mismatches,
        }
    }
    mismatches
}

/// What a call of one tool meets under the pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallCheck {
    /// Pinned and matching, never listed yet, or unpinned and allowed.
    Pass,
    /// Refused: the rule and the reason.
    Refuse { rule: String, reason: String },
    /// Forwarded, but recorded: the rule and the reason.
    Flag { rule: String, reason: String },
}

impl Pins {
    /// The rule name a pin decision is recorded under.
    pub fn rule(tool: &str) -> String {
        let shown = crate::text::shown_name(tool);
        let plain = !shown.is_empty()
            && shown
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if plain {
            format!("pins.{shown}")
        } else {
            format!("pins[{}]", crate::write::quoted(&shown))
        }
    }

    /// What a call of `tool` meets, from what the filter last saw listed.
    /// A pinned tool not listed since the filter started passes: its
    /// server's definition is unknown (the list hides it when it is seen).
    pub fn check_call(&self, store: &dyn SharedStore, tool: &str) -> CallCheck {
        let Some(pin) = self.tools.get(tool) else {
            return match self.unpinned {
                Unpinned::Allow => CallCheck::Pass,
                Unpinned::Deny => CallCheck::Refuse {
                    rule: "settings.unpinned".to_string(),
                    reason: format!(
                        "tool \"{}\" has no pin in the policy's pins, and settings.unpinned is \"deny\"",
                        crate::text::shown_name(tool)
                    ),
                },
            };
        };
        let Some(reason) = lookup(store, tool).and_then(|seen| seen.mismatch(tool, pin)) else {
            return CallCheck::Pass;
        };
        let rule = Self::rule(tool);
        match self.on_mismatch {
            OnMismatch::Refuse => CallCheck::Refuse { rule, reason },
            OnMismatch::Flag => CallCheck::Flag { rule, reason },
        }
    }

    /// Whether a `tools/list` answer keeps a listed tool, judged on the
    /// listed entry itself (`listed` is its hash when the tool is pinned).
    pub fn lists(&self, name: &str, listed: Option<&Listed>) -> bool {
        match (self.tools.get(name), listed) {
            (None, _) => self.unpinned == Unpinned::Allow,
            (Some(pin), Some(l)) => l.hash == *pin || self.on_mismatch == OnMismatch::Flag,
            (Some(_), None) => true,
        }
    }
}

#[cfg(test)]
mod tests;
