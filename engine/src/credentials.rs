//! The grant: one canonical key per credential, whatever its spelling.
//!
//! Servers normalise a credential before they check it (the scheme's case,
//! surrounding whitespace, a second word some parsers drop), so a key made of
//! the raw header bytes gives every respelling of one token its own budget.
//! This module reads the header as RFC 9110 `credentials` in its one
//! unambiguous shape, `scheme SP token68`, and keys the budget on the
//! lower-cased scheme plus the token. Every other shape is refused: no
//! conforming client sends it, and no one can say which token a given server
//! would take from it.

/// What the request's grant header holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Grant {
    /// No such header.
    #[default]
    Absent,
    /// The canonical key (hashed before it is used or logged).
    Key(Vec<u8>),
    /// A shape we refuse; the text says what is wrong.
    Malformed(String),
}

impl Grant {
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Grant::Key(k) => Some(k),
            _ => None,
        }
    }

    pub fn problem(&self) -> Option<&str> {
        match self {
            Grant::Malformed(p) => Some(p),
            _ => None,
        }
    }
}

/// Headers whose value is RFC 9110 `credentials` (`scheme token68`).
fn holds_credentials(header: &str) -> bool {
    header.eq_ignore_ascii_case("authorization")
        || header.eq_ignore_ascii_case("proxy-authorization")
}

/// The grant from every value the request carries for `header` (lower-case
/// name, as Envoy stores it). More than one value is refused: servers differ
/// on which one they read (first, last, or all joined by commas).
pub fn from_header(header: &str, values: &[&[u8]]) -> Grant {
    let value = match values {
        [] => return Grant::Absent,
        [one] => *one,
        _ => {
            return Grant::Malformed(format!(
                "the request carries {} {header} headers; send exactly one",
                values.len()
            ))
        }
    };
    let parsed = if holds_credentials(header) {
        credentials(value)
    } else {
        single_word(value)
    };
    match parsed {
        Ok(key) => Grant::Key(key),
        Err(why) => Grant::Malformed(format!("the {header} header {why}")),
    }
}

/// A grant taken from an Envoy property (e.g. a verified JWT claim): the
/// value is the identity as Envoy established it, used as it is.
pub fn from_property(value: Option<Vec<u8>>) -> Grant {
    match value {
        Some(v) if !v.is_empty() => Grant::Key(v),
        _ => Grant::Absent,
    }
}

/// SP and HTAB: the optional whitespace HTTP allows around a field value.
fn trim_ows(value: &[u8]) -> &[u8] {
    let start = value
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t'))
        .unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t'))
        .map_or(start, |i| i + 1);
    value.get(start..end).unwrap_or_default()
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9110 `token68`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(token: &[u8]) -> bool {
    let body_len = token.iter().rposition(|b| *b != b'=').map_or(0, |i| i + 1);
    let (body, _padding) = token.split_at(body_len);
    !body.is_empty()
        && body
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(b))
}

/// `scheme SP token68` with optional surrounding whitespace; the key is the
/// lower-cased scheme, one space, and the token (for `Basic`, the decoded
/// `user:password` bytes: base64 has several spellings of one value).
fn credentials(value: &[u8]) -> Result<Vec<u8>, String> {
    let value = trim_ows(value);
    if value.is_empty() {
        return Err("is empty".to_string());
    }
    let Some(space) = value.iter().position(|b| !is_tchar(*b)) else {
        return Err(
            "holds a scheme without a token: expected \"<scheme> <token>\", e.g. \"Bearer abc123\""
                .to_string(),
        );
    };
    let (scheme, rest) = value.split_at(space);
    if scheme.is_empty() {
        return Err("does not start with an authentication scheme".to_string());
    }
    let token = match rest {
        [b' ', token @ ..] if !token.starts_with(b" ") && !token.starts_with(b"\t") => token,
        _ => return Err("must be \"<scheme> <token>\" separated by exactly one space".to_string()),
    };
    if token.is_empty() {
        return Err("holds a scheme without a token".to_string());
    }
    if !is_token68(token) {
        // Envoy joins repeated Authorization headers with ", ".
        let why = if token.contains(&b',') {
            "holds a comma: several credentials (or repeated headers) or parameters are not accepted"
        } else if token.iter().any(|b| matches!(b, b' ' | b'\t')) {
            "holds more than one word after the scheme (or several spaces)"
        } else {
            "holds a token with characters outside RFC 9110 token68"
        };
        return Err(format!(
            "{why}; expected exactly \"<scheme> <token>\", e.g. \"Bearer abc123\""
        ));
    }
    let scheme = scheme.to_ascii_lowercase();
    let token = if scheme == b"basic" {
        base64_any(token)
            .ok_or_else(|| "holds a Basic credential that is not valid base64".to_string())?
    } else {
        token.to_vec()
    };
    let mut key = scheme;
    key.push(b' ');
    key.extend_from_slice(&token);
    Ok(key)
}

/// A custom grant header (an API key, an identity set by a proxy in front):
/// one word of visible ASCII, surrounding whitespace removed, kept exactly
/// (case matters). Whitespace or a comma inside could be read as several
/// values, so they are refused.
fn single_word(value: &[u8]) -> Result<Vec<u8>, String> {
    let value = trim_ows(value);
    if value.is_empty() {
        return Err("is empty".to_string());
    }
    if value.contains(&b',') {
        return Err("holds a comma: several values are not accepted".to_string());
    }
    if !value.iter().all(|b| b.is_ascii_graphic()) {
        return Err(
            "must be a single word of visible ASCII (no inner spaces, tabs or other bytes)"
                .to_string(),
        );
    }
    Ok(value.to_vec())
}

/// Base64 as lenient decoders read it: either alphabet (standard or URL
/// safe), padding optional, unused low bits ignored. Different spellings of
/// one value decode to the same bytes, so they share a key. None for input
/// no decoder accepts.
fn base64_any(input: &[u8]) -> Option<Vec<u8>> {
    let body_len = input.iter().rposition(|b| *b != b'=').map_or(0, |i| i + 1);
    let (body, _padding) = input.split_at(body_len);
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &c in body {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = ((acc << 6) | u32::from(v)) & 0xFFFF;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xFF).ok()?);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn auth(value: &str) -> Grant {
        from_header("authorization", &[value.as_bytes()])
    }

    fn key(value: &str) -> Vec<u8> {
        match auth(value) {
            Grant::Key(k) => k,
            other => panic!("{value:?} not accepted: {other:?}"),
        }
    }

    fn refused(value: &str) -> String {
        match auth(value) {
            Grant::Malformed(why) => why,
            other => panic!("{value:?} accepted: {other:?}"),
        }
    }

    #[test]
    fn scheme_case_and_surrounding_whitespace_do_not_make_a_new_grant() {
        let canonical = key("Bearer s3cret");
        assert_eq!(canonical, b"bearer s3cret");
        for spelling in [
            "bearer s3cret",
            "BEARER s3cret",
            "bEaReR s3cret",
            " Bearer s3cret",
            "Bearer s3cret ",
            "Bearer s3cret\t",
            "\t Bearer s3cret \t ",
        ] {
            assert_eq!(key(spelling), canonical, "{spelling:?}");
        }
    }

    #[test]
    fn the_token_keeps_its_case() {
        assert_ne!(key("Bearer s3cret"), key("Bearer S3CRET"));
        assert_eq!(key("Bearer abc.DEF-ghi_~+/=="), b"bearer abc.DEF-ghi_~+/==");
    }

    #[test]
    fn any_other_shape_is_refused() {
        for value in [
            "Bearer s3cret anything",
            "Bearer  s3cret",
            "Bearer\ts3cret",
            "Bearer s3cret, Bearer other",
            "Bearer s3cret,",
            "Bearer a,b",
            "Bearer",
            "Bearer ",
            "s3cret",
            "",
            "   ",
            " s3cret",
            "Bearer s3c ret",
            "Bearer s3cret\u{a0}",
            "Bearer s3crét",
            "Bearer =abc",
            "Bearer ab=c",
            "Digest username=\"a\", realm=\"b\"",
            "Bearer: s3cret",
            "Be@rer s3cret",
        ] {
            refused(value);
        }
        assert!(refused("Bearer s3cret anything").contains("more than one word"));
        assert!(refused("Bearer a,b").contains("comma"));
        assert!(refused("Bearer").contains("without a token"));
        assert!(refused("").contains("empty"));
        assert!(refused("Bearer  s3cret").contains("exactly one space"));
    }

    #[test]
    fn bytes_outside_ascii_are_refused_not_guessed() {
        let g = from_header("authorization", &[b"Bearer s3cret\xff"]);
        assert!(g.problem().is_some());
        let g = from_header("authorization", &[b"Bearer s3\x00cret"]);
        assert!(g.problem().is_some());
    }

    #[test]
    fn several_headers_are_refused() {
        let g = from_header("authorization", &[b"Bearer a", b"Bearer a"]);
        assert!(g.problem().unwrap().contains("2 authorization headers"));
        assert_eq!(from_header("authorization", &[]), Grant::Absent);
    }

    #[test]
    fn basic_credentials_key_on_what_they_decode_to() {
        // "user:pass"
        let k = key("Basic dXNlcjpwYXNz");
        assert_eq!(k, b"basic user:pass");
        assert_eq!(key("basic dXNlcjpwYXNz"), k);
        // "user:pas": padding optional, unused low bits ignored.
        let short = key("Basic dXNlcjpwYXM=");
        assert_eq!(short, b"basic user:pas");
        assert_eq!(key("Basic dXNlcjpwYXM"), short);
        assert_eq!(key("Basic dXNlcjpwYXN"), short);
        // URL-safe alphabet: same bytes.
        assert_eq!(key("Basic _-8="), key("Basic /+8="));
        refused("Basic dXNlc");
        refused("Basic dXNl~jpw");
    }

    #[test]
    fn proxy_authorization_reads_as_credentials_too() {
        assert_eq!(
            from_header("proxy-authorization", &[b"BEARER x "]),
            Grant::Key(b"bearer x".to_vec())
        );
    }

    #[test]
    fn a_custom_header_is_one_trimmed_word() {
        let h = |v: &[u8]| from_header("x-api-key", &[v]);
        assert_eq!(h(b"k-123"), Grant::Key(b"k-123".to_vec()));
        assert_eq!(h(b" \tk-123 \t"), Grant::Key(b"k-123".to_vec()));
        assert_ne!(h(b"K-123"), h(b"k-123"));
        for bad in [&b""[..], b"  ", b"a b", b"a\tb", b"a,b", b"k\xc3\xa9"] {
            assert!(h(bad).problem().is_some(), "{bad:?}");
        }
        assert!(from_header("x-api-key", &[b"a", b"a"]).problem().is_some());
    }

    #[test]
    fn a_property_is_used_as_it_is() {
        assert_eq!(
            from_property(Some(b"user 1".to_vec())),
            Grant::Key(b"user 1".to_vec())
        );
        assert_eq!(from_property(Some(Vec::new())), Grant::Absent);
        assert_eq!(from_property(None), Grant::Absent);
    }
}
