//! Minimal JSON writing: the engine only ever builds small, fixed-shape
//! answers, so a string escaper is all it needs (no serializer dependency).

/// Appends `s` to `out` with JSON string escaping (no surrounding quotes).
/// Runs that need no escaping are copied whole.
pub fn escape_into(out: &mut String, s: &str) {
    let mut rest = s;
    // Bytes that may start something to escape: controls, `"`, `\`, and
    // 0xE2, the first byte of U+2028 / U+2029 (checked as a char below).
    while let Some(at) = rest
        .bytes()
        .position(|b| b < 0x20 || b == b'"' || b == b'\\' || b == 0xE2)
    {
        let (plain, tail) = rest.split_at_checked(at).unwrap_or((rest, ""));
        out.push_str(plain);
        let mut chars = tail.chars();
        let Some(c) = chars.next() else {
            return;
        };
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c => out.push(c),
        }
        rest = chars.as_str();
    }
    out.push_str(rest);
}

/// `s` as a quoted JSON string.
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    escape_into(&mut out, s);
    out.push('"');
    out
}

/// Builds a JSON object from already-encoded member values, in order.
#[derive(Default)]
pub struct ObjectWriter {
    buf: String,
}

impl ObjectWriter {
    pub fn new() -> Self {
        // Room for a typical answer or audit line up front, rather than
        // growing from one byte by doubling.
        let mut buf = String::with_capacity(256);
        buf.push('{');
        Self { buf }
    }

    /// Adds `"key": <raw JSON>`.
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        self.key(key);
        self.buf.push_str(json);
        self
    }

    /// Adds `"key": "<escaped value>"`.
    pub fn str(mut self, key: &str, value: &str) -> Self {
        self.key(key);
        self.buf.push('"');
        escape_into(&mut self.buf, value);
        self.buf.push('"');
        self
    }

    /// Starts a member: the separator and `"key":`, written in place.
    fn key(&mut self, key: &str) {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        self.buf.push('"');
        escape_into(&mut self.buf, key);
        self.buf.push_str("\":");
    }

    /// Adds the member only when `value` is present.
    pub fn opt_str(self, key: &str, value: Option<&str>) -> Self {
        match value {
            Some(v) => self.str(key, v),
            None => self,
        }
    }

    pub fn finish(mut self) -> String {
        self.buf.push('}');
        self.buf
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    /// The escaping, one character at a time: what the run copying must equal.
    fn reference(s: &str) -> String {
        let mut out = String::new();
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\u{2028}' || c == '\u{2029}' => {
                    out.push_str(&format!("\\u{:04x}", c as u32));
                }
                c => out.push(c),
            }
        }
        out
    }

    #[test]
    fn escaping_copies_runs_and_escapes_the_rest() {
        let pieces = [
            "",
            "a",
            "plain text",
            "\"",
            "\\",
            "\n",
            "\r",
            "\t",
            "\u{1}",
            "\u{1f}",
            "\u{7f}",
            "é",
            "€",
            "\u{2027}",
            "\u{2028}",
            "\u{2029}",
            "\u{202a}",
            "✓",
            "😀",
            "\u{e2}",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let s = format!("{a}{b}x{c}");
                    let mut out = String::new();
                    escape_into(&mut out, &s);
                    assert_eq!(out, reference(&s), "{s:?}");
                    assert_eq!(quoted(&s), format!("\"{}\"", reference(&s)));
                }
            }
        }
        let w = ObjectWriter::new()
            .str("k\"ey", "v\u{2028}")
            .raw("n", "1")
            .finish();
        assert_eq!(w, "{\"k\\\"ey\":\"v\\u2028\",\"n\":1}");
    }
}
