//! Strings written so that JSON and YAML read them back identically.

/// `s` as a JSON string literal that is also a valid YAML double-quoted
/// scalar decoding to the same text.
///
/// JSON needs `"`, `\` and the C0 controls escaped. YAML additionally
/// refuses some characters in a stream (DEL, the C1 controls, U+FEFF inside
/// the text, U+FFFE/U+FFFF) and YAML 1.1 readers treat U+2028/U+2029 as line
/// breaks; those are written as `\uXXXX`, an escape both languages decode.
/// Everything else, including non-ASCII text, stays raw UTF-8 (escapes of
/// astral characters as surrogate pairs are where YAML readers differ).
pub fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if needs_escape(c) => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn needs_escape(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00..=0x1f | 0x7f..=0x9f | 0x2028 | 0x2029 | 0xfeff | 0xfffe | 0xffff
    )
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn escapes_what_json_and_yaml_need() {
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(json_string("l1\nl2\t"), r#""l1\nl2\t""#);
        assert_eq!(json_string("\u{1}\u{7f}\u{85}"), r#""\u0001\u007f\u0085""#);
        assert_eq!(json_string("\u{2028}\u{feff}"), r#""\u2028\ufeff""#);
        assert_eq!(json_string("héllo ✓ 🦀"), "\"héllo ✓ 🦀\"");
    }
}
