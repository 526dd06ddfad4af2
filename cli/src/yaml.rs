//! YAML policy files, turned into JSON text for the filter's own loader.
//!
//! The converter works on the parser's event stream rather than on a loaded
//! tree, so it keeps key order (errors come out in the order a JSON file
//! would give them) and sees duplicate keys, which it refuses with their
//! line and column: the filter refuses duplicate keys in JSON too, and a
//! loaded tree would have silently kept one of them.
//!
//! Scalars follow the YAML 1.2 core schema: plain `null`/`~`/empty, `true`,
//! `false`, integers (decimal, `0o` octal, `0x` hex) and floats become JSON
//! literals, everything else (and every quoted or block scalar) a string.
//! `.inf` and `.nan` have no JSON form and are refused. The output uses the
//! spacing of hand-written inline JSON (`{"a": 1, "b": [1, 2]}`), so the
//! values quoted in error messages look like a JSON author's.

use std::collections::{HashMap, HashSet};
use std::fmt;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A YAML document that has no JSON equivalent, with its position (line
/// and column both counted from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YamlError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for YamlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at line {}, column {}",
            self.message, self.line, self.column
        )
    }
}

/// Converts one YAML document to JSON text.
pub fn to_json(text: &str) -> Result<String, YamlError> {
    let mut conv = Converter::default();
    let mut parser = Parser::new_from_str(text);
    if let Err(e) = parser.load(&mut conv, true) {
        let m = e.marker();
        return Err(YamlError {
            line: m.line(),
            column: m.col() + 1,
            message: e.info().to_string(),
        });
    }
    if let Some(e) = conv.error {
        return Err(e);
    }
    if conv.documents == 0 {
        return Err(YamlError {
            line: 1,
            column: 1,
            message: "no YAML document".to_string(),
        });
    }
    Ok(conv.out)
}

enum Frame {
    Seq {
        first: bool,
        anchor: usize,
        start: usize,
    },
    Map {
        first: bool,
        /// The next scalar is a key.
        want_key: bool,
        keys: HashSet<String>,
        anchor: usize,
        start: usize,
    },
}

#[derive(Default)]
struct Converter {
    out: String,
    stack: Vec<Frame>,
    /// JSON text of each anchored node, for aliases.
    anchors: HashMap<usize, String>,
    documents: usize,
    error: Option<YamlError>,
}

fn at(mark: Marker, message: String) -> YamlError {
    YamlError {
        line: mark.line(),
        column: mark.col() + 1,
        message,
    }
}

impl MarkedEventReceiver for Converter {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.event(ev, mark) {
            self.error = Some(e);
        }
    }
}

impl Converter {
    fn event(&mut self, ev: Event, mark: Marker) -> Result<(), YamlError> {
        match ev {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(at(
                        mark,
                        "a policy file holds one YAML document, found a second".to_string(),
                    ));
                }
                self.anchors.clear();
                Ok(())
            }
            Event::Scalar(value, style, anchor, tag) => {
                if self.take_key_slot() {
                    return self.key(&value, style, tag.as_ref(), mark);
                }
                self.before_value();
                let start = self.out.len();
                let json = scalar(&value, style, tag.as_ref()).map_err(|m| at(mark, m))?;
                self.out.push_str(&json);
                self.remember(anchor, start);
                Ok(())
            }
            Event::Alias(id) => {
                if self.take_key_slot() {
                    return Err(at(
                        mark,
                        "an alias as a mapping key has no JSON equivalent".to_string(),
                    ));
                }
                let Some(text) = self.anchors.get(&id).cloned() else {
                    return Err(at(mark, "alias to an unknown anchor".to_string()));
                };
                self.before_value();
                self.out.push_str(&text);
                Ok(())
            }
            Event::SequenceStart(anchor, tag) => {
                if self.take_key_slot() {
                    return Err(at(
                        mark,
                        "a sequence as a mapping key has no JSON equivalent".to_string(),
                    ));
                }
                check_collection_tag(tag.as_ref(), "seq").map_err(|m| at(mark, m))?;
                self.before_value();
                let start = self.out.len();
                self.out.push('[');
                self.stack.push(Frame::Seq {
                    first: true,
                    anchor,
                    start,
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                if self.take_key_slot() {
                    return Err(at(
                        mark,
                        "a mapping as a mapping key has no JSON equivalent".to_string(),
                    ));
                }
                check_collection_tag(tag.as_ref(), "map").map_err(|m| at(mark, m))?;
                self.before_value();
                let start = self.out.len();
                self.out.push('{');
                self.stack.push(Frame::Map {
                    first: true,
                    want_key: true,
                    keys: HashSet::new(),
                    anchor,
                    start,
                });
                Ok(())
            }
            Event::SequenceEnd => {
                self.out.push(']');
                if let Some(Frame::Seq { anchor, start, .. }) = self.stack.pop() {
                    self.remember(anchor, start);
                }
                Ok(())
            }
            Event::MappingEnd => {
                self.out.push('}');
                if let Some(Frame::Map { anchor, start, .. }) = self.stack.pop() {
                    self.remember(anchor, start);
                }
                Ok(())
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
        }
    }

    /// True when the next node is a mapping key; flips the mapping to
    /// expect a value either way.
    fn take_key_slot(&mut self) -> bool {
        match self.stack.last_mut() {
            Some(Frame::Map { want_key, .. }) => {
                let key = *want_key;
                *want_key = !key;
                key
            }
            _ => false,
        }
    }

    /// Writes the separator a value needs (sequence items only: a mapping
    /// value follows the `": "` written with its key).
    fn before_value(&mut self) {
        if let Some(Frame::Seq { first, .. }) = self.stack.last_mut() {
            if !*first {
                self.out.push_str(", ");
            }
            *first = false;
        }
    }

    fn key(
        &mut self,
        value: &str,
        style: TScalarStyle,
        tag: Option<&Tag>,
        mark: Marker,
    ) -> Result<(), YamlError> {
        // A key is text in JSON: a plain `1:` or `true:` is the key "1" or
        // "true". Only the tag is checked (`!!binary` keys make no sense).
        scalar(value, style, tag).map_err(|m| at(mark, m))?;
        if let Some(Frame::Map { first, keys, .. }) = self.stack.last_mut() {
            if !keys.insert(value.to_string()) {
                return Err(at(
                    mark,
                    format!("duplicate key {}", crate::quote::json_string(value)),
                ));
            }
            if !*first {
                self.out.push_str(", ");
            }
            *first = false;
        }
        self.out.push_str(&crate::quote::json_string(value));
        self.out.push_str(": ");
        Ok(())
    }

    fn remember(&mut self, anchor: usize, start: usize) {
        if anchor > 0 {
            if let Some(text) = self.out.get(start..) {
                self.anchors.insert(anchor, text.to_string());
            }
        }
    }
}

/// The YAML 1.2 core tag a node carries, if it is one (`!!str` and its long
/// form); other tags are refused.
fn core_tag(tag: Option<&Tag>) -> Result<Option<&str>, String> {
    let Some(tag) = tag else { return Ok(None) };
    let name = match (tag.handle.as_str(), tag.suffix.as_str()) {
        ("!!", s) => s,
        ("tag:yaml.org,2002:", s) => s,
        ("", s) if s.starts_with("tag:yaml.org,2002:") => {
            s.get("tag:yaml.org,2002:".len()..).unwrap_or("")
        }
        _ => "",
    };
    match name {
        "str" | "int" | "float" | "bool" | "null" | "seq" | "map" => Ok(Some(name)),
        _ => Err(format!(
            "tag {}{} has no JSON equivalent",
            tag.handle, tag.suffix
        )),
    }
}

fn check_collection_tag(tag: Option<&Tag>, expected: &str) -> Result<(), String> {
    match core_tag(tag)? {
        None => Ok(()),
        Some(t) if t == expected => Ok(()),
        Some(t) => Err(format!(
            "tag !!{t} on a {}",
            if expected == "seq" {
                "sequence"
            } else {
                "mapping"
            }
        )),
    }
}

/// One scalar as JSON text.
fn scalar(value: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<String, String> {
    let tag = core_tag(tag)?;
    let plain = style == TScalarStyle::Plain;
    match tag {
        Some("str") => return Ok(crate::quote::json_string(value)),
        Some("seq") | Some("map") => {
            return Err(format!("tag !!{} on a scalar", tag.unwrap_or("")))
        }
        _ => {}
    }
    // Quoted and block scalars are strings unless a tag says otherwise.
    if !plain && tag.is_none() {
        return Ok(crate::quote::json_string(value));
    }
    if let Some(literal) = resolve(value)? {
        let kind_ok = match tag {
            None => true,
            Some("null") => literal == "null",
            Some("bool") => literal == "true" || literal == "false",
            Some("int") => is_integer(&literal),
            Some("float") => literal
                .chars()
                .next()
                .is_some_and(|c| c == '-' || c.is_ascii_digit()),
            _ => true,
        };
        if !kind_ok {
            return Err(format!("{value:?} is not a valid !!{}", tag.unwrap_or("")));
        }
        return Ok(literal);
    }
    match tag {
        None => Ok(crate::quote::json_string(value)),
        Some(t) => Err(format!("{value:?} is not a valid !!{t}")),
    }
}

fn is_integer(literal: &str) -> bool {
    let digits = literal.strip_prefix('-').unwrap_or(literal);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A plain scalar's JSON literal under the core schema, or None for text.
fn resolve(v: &str) -> Result<Option<String>, String> {
    match v {
        "" | "~" | "null" | "Null" | "NULL" => return Ok(Some("null".to_string())),
        "true" | "True" | "TRUE" => return Ok(Some("true".to_string())),
        "false" | "False" | "FALSE" => return Ok(Some("false".to_string())),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => {
            return Err(format!("{v} has no JSON equivalent"));
        }
        _ => {}
    }
    if let Some(hex) = v.strip_prefix("0x") {
        return Ok(radix(hex, 16));
    }
    if let Some(oct) = v.strip_prefix("0o") {
        return Ok(radix(oct, 8));
    }
    Ok(decimal(v))
}

fn radix(digits: &str, base: u32) -> Option<String> {
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(base)) {
        return None;
    }
    u128::from_str_radix(digits, base)
        .ok()
        .map(|n| n.to_string())
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?` as a JSON number
/// (sign `+` dropped, leading zeros removed, `.5` → `0.5`, `1.` → `1.0`).
fn decimal(v: &str) -> Option<String> {
    let (neg, rest) = match v.as_bytes().first() {
        Some(b'-') => (true, v.get(1..)?),
        Some(b'+') => (false, v.get(1..)?),
        _ => (false, v),
    };
    let (mantissa, exponent) = match rest.find(['e', 'E']) {
        Some(i) => (rest.get(..i)?, Some(rest.get(i + 1..)?)),
        None => (rest, None),
    };
    let (int_part, frac_part) = match mantissa.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (mantissa, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(int_part) || !frac_part.is_none_or(all_digits) {
        return None;
    }
    if int_part.is_empty() && frac_part.is_none_or(str::is_empty) {
        return None;
    }
    let exp = match exponent {
        None => None,
        Some(e) => {
            let digits = e.strip_prefix(['+', '-']).unwrap_or(e);
            if digits.is_empty() || !all_digits(digits) {
                return None;
            }
            Some(e)
        }
    };
    let trimmed = int_part.trim_start_matches('0');
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    out.push_str(if trimmed.is_empty() { "0" } else { trimmed });
    if let Some(f) = frac_part {
        out.push('.');
        out.push_str(if f.is_empty() { "0" } else { f });
    }
    if let Some(e) = exp {
        out.push('e');
        out.push_str(e);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    fn json(y: &str) -> String {
        to_json(y).unwrap_or_else(|e| panic!("{y}: {e}"))
    }

    #[test]
    fn block_yaml_becomes_inline_json() {
        let y = "version: \"1\"\ndefault: deny\ntools:\n  a:\n    limits:\n      - {counter: c, max: 10}\n";
        assert_eq!(
            json(y),
            r#"{"version": "1", "default": "deny", "tools": {"a": {"limits": [{"counter": "c", "max": 10}]}}}"#
        );
    }

    #[test]
    fn core_schema_scalars() {
        assert_eq!(
            json("[~, null, '', true, False, 010, +5, 0x1F, 0o17, 1.5, .5, 1., -0.25e+3, 1e3, 007.50, yes, '1', \"x\"]"),
            r#"[null, null, "", true, false, 10, 5, 31, 15, 1.5, 0.5, 1.0, -0.25e+3, 1e3, 7.50, "yes", "1", "x"]"#
        );
        assert_eq!(json("a:"), r#"{"a": null}"#);
        assert_eq!(json("!!str 10"), r#""10""#);
        assert_eq!(json("!!int \"10\""), "10");
    }

    #[test]
    fn anchors_and_aliases_are_expanded() {
        let y = "l: &L {counter: c, max: 1}\nm: *L\nn: &S x\no: *S\n";
        assert_eq!(
            json(y),
            r#"{"l": {"counter": "c", "max": 1}, "m": {"counter": "c", "max": 1}, "n": "x", "o": "x"}"#
        );
    }

    #[test]
    fn refusals_name_line_and_column() {
        let e = to_json("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 1));
        assert_eq!(e.message, r#"duplicate key "a""#);
        let e = to_json("a: .inf\n").unwrap_err();
        assert_eq!(e.message, ".inf has no JSON equivalent");
        let e = to_json("a: 1\n---\nb: 2\n").unwrap_err();
        assert_eq!(e.line, 2);
        let e = to_json("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(e.line >= 1 && e.column >= 1, "{e}");
        let e = to_json("a: !custom 1\n").unwrap_err();
        assert_eq!(e.message, "tag !custom has no JSON equivalent");
        assert!(to_json("").is_err());
    }
}
