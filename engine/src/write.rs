//! Minimal JSON writing: the engine only ever builds small, fixed-shape
//! answers, so a string escaper is all it needs (no serializer dependency).

/// Appends `s` to `out` with JSON string escaping (no surrounding quotes).
pub fn escape_into(out: &mut String, s: &str) {
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
        Self {
            buf: String::from("{"),
        }
    }

    /// Adds `"key": <raw JSON>`.
    pub fn raw(mut self, key: &str, json: &str) -> Self {
        if self.buf.len() > 1 {
            self.buf.push(',');
        }
        self.buf.push_str(&quoted(key));
        self.buf.push(':');
        self.buf.push_str(json);
        self
    }

    /// Adds `"key": "<escaped value>"`.
    pub fn str(self, key: &str, value: &str) -> Self {
        let q = quoted(value);
        self.raw(key, &q)
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
