//! A strict, borrowing JSON parser.
//!
//! Why not `serde_json::Value`: a policy filter must see exactly what the MCP
//! server will see, and refuse what it cannot be sure about. serde_json keeps
//! the last of duplicate keys silently; servers do too, so `{"name":"ok",
//! "name":"evil"}` would be judged on one value and executed on another. This
//! parser refuses duplicate keys at any depth, trailing bytes, a byte-order
//! mark, invalid UTF-8, lone surrogate escapes and nesting past a bound, and
//! never panics. Every node keeps its byte span, so ids can be echoed verbatim
//! and responses rewritten by copying untouched bytes.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;

/// Default nesting bound: deep enough for any real MCP message, shallow
/// enough that recursion cannot exhaust a Wasm stack.
pub const DEFAULT_MAX_DEPTH: usize = 64;

/// One parsed value with the byte range it occupies in the input.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'a> {
    pub value: Value<'a>,
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// The number's source text, already checked against the JSON grammar.
    Number(&'a str),
    String(JsonStr<'a>),
    Array(Vec<Node<'a>>),
    /// Members in source order; keys are unique (duplicates are refused).
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

/// A string value. Its escapes were checked while parsing, but the text
/// is unescaped only when something reads it (once, then kept): most
/// strings of a request (a file's content, a long prompt) are never read
/// by any rule, and copying them was most of the parse at large sizes.
#[derive(Clone)]
pub struct JsonStr<'a> {
    /// The source text between the quotes.
    raw: &'a str,
    /// Whether `raw` holds an escape (else it is the value itself).
    escaped: bool,
    decoded: OnceCell<Box<str>>,
}

impl<'a> JsonStr<'a> {
    /// A value that needs no unescaping (the source text is the value).
    pub fn plain(text: &'a str) -> Self {
        Self {
            raw: text,
            escaped: false,
            decoded: OnceCell::new(),
        }
    }

    /// A value built by the program rather than parsed.
    pub fn owned(text: String) -> Self {
        Self {
            raw: "",
            escaped: true,
            decoded: OnceCell::from(text.into_boxed_str()),
        }
    }

    /// The unescaped value.
    pub fn as_str(&self) -> &str {
        if !self.escaped {
            return self.raw;
        }
        self.decoded
            .get_or_init(|| unescape(self.raw).into_boxed_str())
    }

    /// The value, borrowed from the source when it has no escapes.
    pub fn to_cow(&self) -> Cow<'a, str> {
        if self.escaped {
            Cow::Owned(self.as_str().to_string())
        } else {
            Cow::Borrowed(self.raw)
        }
    }
}

impl std::ops::Deref for JsonStr<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for JsonStr<'_> {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for JsonStr<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq for JsonStr<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<str> for JsonStr<'_> {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for JsonStr<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for JsonStr<'_> {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<JsonStr<'_>> for String {
    fn eq(&self, other: &JsonStr<'_>) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<JsonStr<'_>> for str {
    fn eq(&self, other: &JsonStr<'_>) -> bool {
        self == other.as_str()
    }
}

/// The value of string content already checked by the parser. Cannot fail
/// on such text; should it ever, the result is empty rather than a panic.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    match scan_string(raw.as_bytes(), raw, 0, Some(&mut out)) {
        Ok(_) => out,
        Err(_) => String::new(),
    }
}

impl<'a> Node<'a> {
    /// The member `key` of an object (exact, case-sensitive match).
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match &self.value {
            Value::Object(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            Value::String(s) => Some(s.as_str()),
            _ => None,
        }
    }

    pub fn as_array(&self) -> Option<&[Node<'a>]> {
        match &self.value {
            Value::Array(items) => Some(items),
            _ => None,
        }
    }

    pub fn as_object(&self) -> Option<&[(Cow<'a, str>, Node<'a>)]> {
        match &self.value {
            Value::Object(members) => Some(members),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.value, Value::Null)
    }

    /// Numeric value as f64 (None for non-numbers).
    pub fn as_f64(&self) -> Option<f64> {
        match self.value {
            Value::Number(text) => text.parse::<f64>().ok(),
            _ => None,
        }
    }

    /// The node's JSON text exactly as it appeared in `source`.
    pub fn raw<'s>(&self, source: &'s str) -> &'s str {
        source.get(self.start..self.end).unwrap_or("null")
    }

    /// Short name of the JSON type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        }
    }
}

/// Why the input is not acceptable JSON, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub offset: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

impl ParseError {
    /// Line and column (both from 1; the column counts characters) of the
    /// error in `input`, the text it was parsed from: what people editing a
    /// file look for, where the offset is what a program needs.
    pub fn line_column(&self, input: &[u8]) -> (usize, usize) {
        let before = input.get(..self.offset).unwrap_or(input);
        let line_start = before
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let on_line = before.get(line_start..).unwrap_or_default();
        // Characters, not bytes: UTF-8 continuation bytes do not start one.
        let column = on_line.iter().filter(|&&b| b & 0xC0 != 0x80).count() + 1;
        (line, column)
    }

    /// The message with the line and column in `input` (see [`Self::line_column`]).
    pub fn located(&self, input: &[u8]) -> String {
        let (line, column) = self.line_column(input);
        format!(
            "{} at line {line}, column {column} (byte {})",
            self.reason, self.offset
        )
    }
}

/// A parsed document: the validated source text and its root node.
#[derive(Debug)]
pub struct Document<'a> {
    pub source: &'a str,
    pub root: Node<'a>,
}

/// Parses one complete JSON document with the default depth bound.
pub fn parse(input: &[u8]) -> Result<Document<'_>, ParseError> {
    parse_with_depth(input, DEFAULT_MAX_DEPTH)
}

/// Parses one complete JSON document; `max_depth` bounds array/object nesting.
pub fn parse_with_depth(input: &[u8], max_depth: usize) -> Result<Document<'_>, ParseError> {
    if input.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(err(0, "byte order mark is not allowed"));
    }
    let source = std::str::from_utf8(input).map_err(|e| ParseError {
        offset: e.valid_up_to(),
        reason: "invalid UTF-8".to_string(),
    })?;
    let mut parser = Parser {
        text: source,
        bytes: input,
        pos: 0,
        max_depth,
    };
    parser.skip_ws();
    let root = parser.value(0)?;
    parser.skip_ws();
    if parser.pos != input.len() {
        return Err(err(parser.pos, "trailing data after the JSON value"));
    }
    Ok(Document { source, root })
}

fn err(offset: usize, reason: &str) -> ParseError {
    ParseError {
        offset,
        reason: reason.to_string(),
    }
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    max_depth: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, word: &str, value: Value<'a>) -> Result<Node<'a>, ParseError> {
        let start = self.pos;
        let end = start + word.len();
        if self.bytes.get(start..end) == Some(word.as_bytes()) {
            self.pos = end;
            Ok(Node { value, start, end })
        } else {
            Err(err(start, "invalid literal"))
        }
    }

    fn value(&mut self, depth: usize) -> Result<Node<'a>, ParseError> {
        match self.peek() {
            None => Err(err(self.pos, "unexpected end of input")),
            Some(b'{') => self.object(depth + 1),
            Some(b'[') => self.array(depth + 1),
            Some(b'"') => {
                let start = self.pos;
                let s = self.string_value()?;
                Ok(Node {
                    value: Value::String(s),
                    start,
                    end: self.pos,
                })
            }
            Some(b't') => self.expect_literal("true", Value::Bool(true)),
            Some(b'f') => self.expect_literal("false", Value::Bool(false)),
            Some(b'n') => self.expect_literal("null", Value::Null),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(err(self.pos, "unexpected character")),
        }
    }

    fn check_depth(&self, depth: usize) -> Result<(), ParseError> {
        if depth > self.max_depth {
            Err(ParseError {
                offset: self.pos,
                reason: format!("nesting deeper than {}", self.max_depth),
            })
        } else {
            Ok(())
        }
    }

    fn array(&mut self, depth: usize) -> Result<Node<'a>, ParseError> {
        self.check_depth(depth)?;
        let start = self.pos;
        self.pos += 1;
        let mut items = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Node {
                value: Value::Array(items),
                start,
                end: self.pos,
            });
        }
        loop {
            self.skip_ws();
            items.push(self.value(depth)?);
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Node {
                        value: Value::Array(items),
                        start,
                        end: self.pos,
                    });
                }
                _ => return Err(err(self.pos, "expected ',' or ']' in array")),
            }
        }
    }

    fn object(&mut self, depth: usize) -> Result<Node<'a>, ParseError> {
        self.check_depth(depth)?;
        let start = self.pos;
        self.pos += 1;
        let mut members: Vec<(Cow<'a, str>, Node<'a>)> = Vec::new();
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Node {
                value: Value::Object(members),
                start,
                end: self.pos,
            });
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(err(self.pos, "expected a string key in object"));
            }
            let key_at = self.pos;
            let key = self.string()?;
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(err(self.pos, "expected ':' after object key"));
            }
            self.pos += 1;
            self.skip_ws();
            let value = self.value(depth)?;
            if members.len() < 16 && members.iter().any(|(k, _)| *k == key) {
                return Err(duplicate(key_at, &key));
            }
            members.push((key, value));
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    break;
                }
                _ => return Err(err(self.pos, "expected ',' or '}' in object")),
            }
        }
        if members.len() > 16 {
            // Large objects: sort-based check keeps hostile inputs O(n log n).
            let mut keys: Vec<(&str, usize)> =
                members.iter().map(|(k, v)| (k.as_ref(), v.start)).collect();
            keys.sort_unstable();
            for pair in keys.windows(2) {
                if let [(a, _), (b, at)] = pair {
                    if a == b {
                        return Err(duplicate(*at, a));
                    }
                }
            }
        }
        Ok(Node {
            value: Value::Object(members),
            start,
            end: self.pos,
        })
    }

    fn number(&mut self) -> Result<Node<'a>, ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(err(self.pos, "invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(err(self.pos, "invalid number: digit expected after '.'"));
            }
            self.digits();
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if !matches!(self.peek(), Some(b'0'..=b'9')) {
                return Err(err(self.pos, "invalid number: digit expected in exponent"));
            }
            self.digits();
        }
        let text = self.text.get(start..self.pos).unwrap_or("0");
        Ok(Node {
            value: Value::Number(text),
            start,
            end: self.pos,
        })
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    /// Parses a string value starting at the opening quote: checked in
    /// full, unescaped only when read (see [`JsonStr`]).
    fn string_value(&mut self) -> Result<JsonStr<'a>, ParseError> {
        self.pos += 1;
        let content_start = self.pos;
        let (end, escaped) = self.string_end(content_start)?;
        self.pos = end + 1;
        let raw = self.text.get(content_start..end).unwrap_or("");
        Ok(JsonStr {
            raw,
            escaped,
            decoded: OnceCell::new(),
        })
    }

    /// Parses a string (an object key) starting at the opening quote;
    /// borrows when it holds no escapes.
    fn string(&mut self) -> Result<Cow<'a, str>, ParseError> {
        self.pos += 1;
        let content_start = self.pos;
        let (end, escaped) = self.string_end(content_start)?;
        self.pos = end + 1;
        if !escaped {
            return Ok(Cow::Borrowed(
                self.text.get(content_start..end).unwrap_or(""),
            ));
        }
        let mut out = String::with_capacity(end - content_start);
        scan_string(self.bytes, self.text, content_start, Some(&mut out))?;
        Ok(Cow::Owned(out))
    }

    /// The index of the closing quote of the string whose content starts
    /// at `from`, and whether the content holds an escape.
    fn string_end(&self, from: usize) -> Result<(usize, bool), ParseError> {
        let end = plain_run_end(self.bytes, from);
        let (end, escaped) = match self.bytes.get(end) {
            Some(b'\\') => (scan_string(self.bytes, self.text, end, None)?, true),
            _ => (end, false),
        };
        match self.bytes.get(end) {
            Some(b'"') => Ok((end, escaped)),
            None => Err(err(end, "unterminated string")),
            Some(_) => Err(err(end, "control character in string")),
        }
    }
}

/// Index of the first byte at or after `from` that ends a plain run in
/// a string: `"`, `\\` or a control character (or the input's end).
/// Scans eight bytes at a time (SWAR): strings dominate parse time.
fn plain_run_end(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut i = from;
    while let Some(chunk) = bytes.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let v = u64::from_le_bytes(word);
        let special = has_zero(v ^ (ONES * u64::from(b'"')))
            | has_zero(v ^ (ONES * u64::from(b'\\')))
            | (v.wrapping_sub(ONES * 0x20) & !v & HIGHS);
        if special != 0 {
            // The lowest flagged byte is exact (a false flag needs a borrow
            // from a lower, truly special byte): it is the run's end.
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&b) = bytes.get(i) {
        if b == b'"' || b == b'\\' || b < 0x20 {
            break;
        }
        i += 1;
    }
    i
}

/// Walks string content from `pos` (`text` is `bytes` as text) to the
/// first byte that is neither part of a plain run nor an escape: the
/// closing quote, a control character or the input's end; returns its
/// index. Every escape is checked; with `out`, the unescaped text is
/// appended to it. Runs end only at ASCII bytes, so every slice taken is
/// on a char boundary.
fn scan_string(
    bytes: &[u8],
    text: &str,
    mut pos: usize,
    mut out: Option<&mut String>,
) -> Result<usize, ParseError> {
    loop {
        let run_end = plain_run_end(bytes, pos);
        if let Some(out) = out.as_deref_mut() {
            out.push_str(text.get(pos..run_end).unwrap_or(""));
        }
        pos = run_end;
        if bytes.get(pos) != Some(&b'\\') {
            return Ok(pos);
        }
        pos += 1;
        let (escaped, next) = match bytes.get(pos) {
            Some(b'"') => ('"', pos + 1),
            Some(b'\\') => ('\\', pos + 1),
            Some(b'/') => ('/', pos + 1),
            Some(b'b') => ('\u{8}', pos + 1),
            Some(b'f') => ('\u{c}', pos + 1),
            Some(b'n') => ('\n', pos + 1),
            Some(b'r') => ('\r', pos + 1),
            Some(b't') => ('\t', pos + 1),
            Some(b'u') => unicode_escape(bytes, text, pos + 1)?,
            _ => return Err(err(pos, "invalid escape in string")),
        };
        pos = next;
        if let Some(out) = out.as_deref_mut() {
            out.push(escaped);
        }
    }
}

fn hex4(text: &str, pos: usize) -> Result<u32, ParseError> {
    let digits = text
        .get(pos..pos + 4)
        .ok_or_else(|| err(pos, "truncated \\u escape"))?;
    if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err(pos, "invalid \\u escape"));
    }
    u32::from_str_radix(digits, 16).map_err(|_| err(pos, "invalid \\u escape"))
}

/// Decodes the `XXXX` at `at` (after `\u`), joining surrogate pairs; a
/// lone surrogate is refused (servers would decode it differently).
/// Returns the character and the index after the escape.
fn unicode_escape(bytes: &[u8], text: &str, at: usize) -> Result<(char, usize), ParseError> {
    let first = hex4(text, at)?;
    let mut pos = at + 4;
    let code = match first {
        0xD800..=0xDBFF => {
            if bytes.get(pos..pos + 2) != Some(b"\\u") {
                return Err(err(at, "lone surrogate in \\u escape"));
            }
            let second = hex4(text, pos + 2)?;
            pos += 6;
            if !(0xDC00..=0xDFFF).contains(&second) {
                return Err(err(at, "lone surrogate in \\u escape"));
            }
            0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        }
        0xDC00..=0xDFFF => return Err(err(at, "lone surrogate in \\u escape")),
        other => other,
    };
    let c = char::from_u32(code).ok_or_else(|| err(at, "invalid \\u escape"))?;
    Ok((c, pos))
}

fn duplicate(offset: usize, key: &str) -> ParseError {
    let mut shown = String::new();
    crate::write::escape_into(&mut shown, key);
    ParseError {
        offset,
        reason: format!("duplicate key \"{shown}\""),
    }
}

#[cfg(test)]
mod tests;
