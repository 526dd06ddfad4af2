//! Keys that a case-insensitive server reads as one.
//!
//! Go's `encoding/json` matches object keys to struct fields case-
//! insensitively (folding each character to `upper(lower(c))`, so `ſ` is
//! `s` and the Kelvin sign `K` is `k`), and when two keys fold together the
//! last one wins. `{"action":"list","Action":"cancel"}` is then judged as
//! `list` by us and run as `cancel` by such a server. Any object holding two
//! keys that fold together is therefore refused as ambiguous.
//!
//! The fold is a deliberate over-approximation (refusing ambiguous input is
//! fail-closed): each character is lowered (simple mapping), then upper-cased
//! with the full Unicode mapping, then lowered again. That equates everything
//! Go's `upper(lower(c))` equates (ASCII case, `ſ`/`s`, `K`/`k`, `ı`/`i`,
//! `İ`/`i`, `ς`/`σ`/`Σ`, ...) and in addition what full case mapping
//! equates (`ß`/`ss`, `ﬁ`/`fi`), as Java or .NET case-insensitive readers may.

use crate::json::{Node, Value};

/// Objects with at most this many keys are compared pairwise (no
/// allocation); larger ones by sorting their folded forms (`n log n`).
const PAIRWISE_MAX: usize = 8;

/// The folded form of one character (1 to 3 characters).
fn fold_char(c: char) -> impl Iterator<Item = char> {
    // Full lowercase differs from the simple mapping only for U+0130 (İ ->
    // "i\u{307}"); its first character is the simple mapping.
    let lower = c.to_lowercase().next().unwrap_or(c);
    lower
        .to_uppercase()
        .map(|u| u.to_lowercase().next().unwrap_or(u))
}

fn folded(key: &str) -> impl Iterator<Item = char> + '_ {
    key.chars().flat_map(fold_char)
}

/// Do `a` and `b` fold to the same name?
pub fn fold_eq(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        return a.eq_ignore_ascii_case(b);
    }
    folded(a).eq(folded(b))
}

/// Appends the folded form of `key` to `out`.
fn fold_into(out: &mut String, key: &str) {
    if key.is_ascii() {
        let start = out.len();
        out.push_str(key);
        if let Some(added) = out.get_mut(start..) {
            added.make_ascii_lowercase();
        }
    } else {
        out.extend(folded(key));
    }
}

/// Scratch space reused across one walk: every folded key of an object in
/// one string, and each key's range in it with its member index.
#[derive(Default)]
struct Scratch {
    text: String,
    spans: Vec<(usize, usize, usize)>,
}

/// Two distinct keys of one object that fold together, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoldedKeys {
    /// Where the object is (`params.arguments.list[2]`; empty at the top).
    pub path: String,
    pub first: String,
    pub second: String,
}

/// Longest key or path echoed in a refusal: an answer is never an amplifier.
const MAX_SHOWN: usize = 64;

/// `text` cut to `MAX_SHOWN` characters, with a marker if longer.
pub fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    crate::text::cut(text, MAX_SHOWN)
}

impl FoldedKeys {
    /// The reason given to the client: what and where, bounded in size.
    pub fn reason(&self) -> String {
        let at = if self.path.is_empty() {
            String::new()
        } else {
            format!("{}: ", shown(&self.path))
        };
        format!(
            "{at}keys \"{}\" and \"{}\" are the same name to a case-insensitive server; refused as ambiguous",
            shown(&self.first),
            shown(&self.second)
        )
    }
}

/// One step from an object or array to a child, for the path in a refusal.
#[derive(Clone, Copy)]
enum Step<'n> {
    Key(&'n str),
    Index(usize),
}

fn path_text(steps: &[Step<'_>]) -> String {
    let mut out = String::new();
    for step in steps {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// Finds the first object anywhere in `node` (itself included) with two keys
/// that fold together. Linear in the size of the tree plus `n log n` per
/// object with more than a few keys (no hashing, so no crafted collisions);
/// one scratch buffer for the whole walk.
pub fn find(node: &Node<'_>) -> Option<FoldedKeys> {
    let mut steps = Vec::new();
    let mut scratch = Scratch::default();
    walk(node, &mut steps, &mut scratch)
}

fn walk<'n>(
    node: &'n Node<'_>,
    steps: &mut Vec<Step<'n>>,
    scratch: &mut Scratch,
) -> Option<FoldedKeys> {
    match &node.value {
        Value::Object(members) => {
            if let Some((a, b)) = clash(members, scratch) {
                return Some(FoldedKeys {
                    path: path_text(steps),
                    first: a.to_string(),
                    second: b.to_string(),
                });
            }
            for (key, child) in members {
                if matches!(child.value, Value::Object(_) | Value::Array(_)) {
                    steps.push(Step::Key(key));
                    let found = walk(child, steps, scratch);
                    steps.pop();
                    if found.is_some() {
                        return found;
                    }
                }
            }
            None
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                if matches!(child.value, Value::Object(_) | Value::Array(_)) {
                    steps.push(Step::Index(i));
                    let found = walk(child, steps, scratch);
                    steps.pop();
                    if found.is_some() {
                        return found;
                    }
                }
            }
            None
        }
        _ => None,
    }
}

/// Two keys of one object's members that fold together (keys are already
/// unique: the parser refuses exact duplicates).
fn clash<'m, V>(
    members: &'m [(std::borrow::Cow<'_, str>, V)],
    scratch: &mut Scratch,
) -> Option<(&'m str, &'m str)> {
    let key = |i: usize| members.get(i).map(|(k, _)| k.as_ref()).unwrap_or("");
    // Keys of lower-case ASCII are their own folded form, and exact keys are
    // unique: only a key with an upper-case or non-ASCII byte can clash.
    let folds = |k: &str| k.bytes().any(|b| b.is_ascii_uppercase() || !b.is_ascii());
    if !members.iter().any(|(k, _)| folds(k)) {
        return None;
    }
    if members.len() <= PAIRWISE_MAX {
        for (i, (a, _)) in members.iter().enumerate() {
            for (b, _) in members.iter().skip(i + 1) {
                if fold_eq(a, b) {
                    return Some((a, b));
                }
            }
        }
        return None;
    }
    scratch.text.clear();
    scratch.spans.clear();
    for (i, (k, _)) in members.iter().enumerate() {
        let start = scratch.text.len();
        fold_into(&mut scratch.text, k);
        scratch.spans.push((start, scratch.text.len(), i));
    }
    let text = scratch.text.as_str();
    let form = |&(start, end, _): &(usize, usize, usize)| text.get(start..end).unwrap_or("");
    // Sorted by folded form, then by position: equal forms are adjacent,
    // the earlier key first.
    scratch
        .spans
        .sort_unstable_by(|x, y| form(x).cmp(form(y)).then(x.2.cmp(&y.2)));
    scratch.spans.windows(2).find_map(|pair| match pair {
        [x, y] if form(x) == form(y) => Some((key(x.2), key(y.2))),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
