//! Envoy dynamic metadata, as the proxy-wasm `get_property(["metadata"])`
//! returns it: a serialized `envoy.config.core.v3.Metadata` protobuf.
//!
//! Why read the whole message rather than the claims' own property path:
//! Envoy serializes a property that ends inside a `google.protobuf.Struct`
//! as proxy-wasm "pairs", where a claim's type is lost (`"1"`, `1` and `true`
//! all become raw bytes) and a `null` claim fails the whole read. The
//! `Metadata` message keeps every `google.protobuf.Value` kind, so claims are
//! decoded here, exactly, into JSON text for the condition engine.
//!
//! The decoder is bounded (nesting depth, output size), skips unknown fields
//! and refuses anything malformed: it never panics on hostile bytes.

use crate::write::escape_into;

/// Deeper `Struct`/`ListValue` nesting is refused.
pub const MAX_DEPTH: usize = 32;
/// Claims JSON longer than this is refused (a JWT payload is a few KiB).
pub const MAX_JSON_BYTES: usize = 256 * 1024;

/// Why metadata could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataError(pub String);

fn err<T>(what: &str) -> Result<T, MetadataError> {
    Err(MetadataError(what.to_string()))
}

/// A protobuf wire-format reader over a byte slice.
struct Reader<'b> {
    bytes: &'b [u8],
    pos: usize,
}

/// One field: its number and payload.
enum Field<'b> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'b [u8]),
    Fixed32,
}

impl<'b> Reader<'b> {
    fn new(bytes: &'b [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn varint(&mut self) -> Result<u64, MetadataError> {
        let mut value: u64 = 0;
        for shift in (0..64).step_by(7) {
            let Some(&b) = self.bytes.get(self.pos) else {
                return err("truncated varint");
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        err("varint longer than 10 bytes")
    }

    fn take(&mut self, n: usize) -> Result<&'b [u8], MetadataError> {
        let end = self.pos.checked_add(n).filter(|e| *e <= self.bytes.len());
        match end.and_then(|e| self.bytes.get(self.pos..e).map(|s| (s, e))) {
            Some((slice, e)) => {
                self.pos = e;
                Ok(slice)
            }
            None => err("field runs past the end of the message"),
        }
    }

    /// The next field, or None at the end of the message.
    fn next(&mut self) -> Result<Option<(u64, Field<'b>)>, MetadataError> {
        if self.pos >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return err("field number 0");
        }
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                Field::Fixed64(u64::from_le_bytes(a))
            }
            2 => {
                let len = usize::try_from(self.varint()?).unwrap_or(usize::MAX);
                Field::Bytes(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Field::Fixed32
            }
            _ => return err("unsupported wire type (groups are not used by Metadata)"),
        };
        Ok(Some((number, field)))
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, MetadataError> {
    std::str::from_utf8(bytes).map_err(|_| MetadataError("string is not UTF-8".into()))
}

/// A map entry `{1: string key, 2: message value}` (last occurrence of a
/// field wins, as in protobuf).
fn map_entry(bytes: &[u8]) -> Result<(&str, &[u8]), MetadataError> {
    let mut r = Reader::new(bytes);
    let (mut key, mut value): (&str, &[u8]) = ("", &[]);
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => key = utf8(b)?,
            (2, Field::Bytes(b)) => value = b,
            (1 | 2, _) => return err("map entry field has the wrong wire type"),
            _ => {}
        }
    }
    Ok((key, value))
}

/// The `google.protobuf.Struct` stored under `namespace` in
/// `Metadata.filter_metadata` (None when the filter wrote nothing there).
pub fn filter_struct<'b>(
    metadata: &'b [u8],
    namespace: &str,
) -> Result<Option<&'b [u8]>, MetadataError> {
    let mut r = Reader::new(metadata);
    let mut found = None;
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(entry)) => {
                let (key, value) = map_entry(entry)?;
                if key == namespace {
                    found = Some(value);
                }
            }
            (1, _) => return err("filter_metadata has the wrong wire type"),
            _ => {}
        }
    }
    Ok(found)
}

/// Writes a `google.protobuf.Struct` as a JSON object.
pub fn struct_to_json(bytes: &[u8]) -> Result<String, MetadataError> {
    let mut out = String::new();
    write_struct(bytes, 0, &mut out)?;
    Ok(out)
}

fn check(out: &str, depth: usize) -> Result<(), MetadataError> {
    if depth > MAX_DEPTH {
        return err("nested deeper than the bound");
    }
    if out.len() > MAX_JSON_BYTES {
        return err("larger than the bound");
    }
    Ok(())
}

fn write_struct(bytes: &[u8], depth: usize, out: &mut String) -> Result<(), MetadataError> {
    check(out, depth)?;
    let mut r = Reader::new(bytes);
    out.push('{');
    let mut first = true;
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(entry)) => {
                let (key, value) = map_entry(entry)?;
                if !first {
                    out.push(',');
                }
                first = false;
                out.push('"');
                escape_into(out, key);
                out.push_str("\":");
                write_value(value, depth + 1, out)?;
            }
            (1, _) => return err("Struct.fields has the wrong wire type"),
            _ => {}
        }
    }
    out.push('}');
    Ok(())
}

fn write_list(bytes: &[u8], depth: usize, out: &mut String) -> Result<(), MetadataError> {
    check(out, depth)?;
    let mut r = Reader::new(bytes);
    out.push('[');
    let mut first = true;
    while let Some((n, f)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(value)) => {
                if !first {
                    out.push(',');
                }
                first = false;
                write_value(value, depth + 1, out)?;
            }
            (1, _) => return err("ListValue.values has the wrong wire type"),
            _ => {}
        }
    }
    out.push(']');
    Ok(())
}

/// A `google.protobuf.Value`: the last kind set wins (a oneof); none is null.
fn write_value(bytes: &[u8], depth: usize, out: &mut String) -> Result<(), MetadataError> {
    check(out, depth)?;
    let mut r = Reader::new(bytes);
    let mut kind: Option<(u64, Field<'_>)> = None;
    while let Some((n, f)) = r.next()? {
        if (1..=6).contains(&n) {
            kind = Some((n, f));
        }
    }
    match kind {
        None | Some((1, Field::Varint(_))) => out.push_str("null"),
        Some((2, Field::Fixed64(bits))) => {
            let v = f64::from_bits(bits);
            if v.is_finite() {
                out.push_str(&format!("{v}"));
            } else {
                // JSON has no NaN or infinity; such a claim is unreadable.
                return err("number is not finite");
            }
        }
        Some((3, Field::Bytes(b))) => {
            out.push('"');
            escape_into(out, utf8(b)?);
            out.push('"');
        }
        Some((4, Field::Varint(b))) => out.push_str(if b != 0 { "true" } else { "false" }),
        Some((5, Field::Bytes(b))) => write_struct(b, depth, out)?,
        Some((6, Field::Bytes(b))) => write_list(b, depth, out)?,
        Some(_) => return err("Value field has the wrong wire type"),
    }
    Ok(())
}

/// Encoding helpers for tests (here and in other crates' tests): build the
/// bytes Envoy would hand over for a JSON object.
#[cfg(any(test, feature = "testing"))]
pub mod encode {
    use crate::json::{Node, Value};

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(n: u64, b: &[u8], out: &mut Vec<u8>) {
        varint(n << 3 | 2, out);
        varint(b.len() as u64, out);
        out.extend_from_slice(b);
    }

    fn entry(key: &str, value: &[u8]) -> Vec<u8> {
        let mut e = Vec::new();
        bytes_field(1, key.as_bytes(), &mut e);
        bytes_field(2, value, &mut e);
        e
    }

    /// A JSON value as a `google.protobuf.Value`.
    pub fn value(node: &Node<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        match &node.value {
            Value::Null => {
                varint(1 << 3, &mut out);
                varint(0, &mut out);
            }
            Value::Number(_) => {
                varint(2 << 3 | 1, &mut out);
                out.extend_from_slice(&node.as_f64().unwrap_or(0.0).to_bits().to_le_bytes());
            }
            Value::String(s) => bytes_field(3, s.as_bytes(), &mut out),
            Value::Bool(b) => {
                varint(4 << 3, &mut out);
                varint(u64::from(*b), &mut out);
            }
            Value::Object(_) => bytes_field(5, &structure(node), &mut out),
            Value::Array(items) => {
                let mut list = Vec::new();
                for i in items {
                    bytes_field(1, &value(i), &mut list);
                }
                bytes_field(6, &list, &mut out);
            }
        }
        out
    }

    /// A JSON object as a `google.protobuf.Struct`.
    pub fn structure(node: &Node<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in node.as_object().unwrap_or_default() {
            bytes_field(1, &entry(k, &value(v)), &mut out);
        }
        out
    }

    /// `Metadata{filter_metadata: {namespace: {key: claims}}}`.
    pub fn metadata(namespace: &str, key: &str, claims_json: &str) -> Vec<u8> {
        let doc = crate::json::parse(claims_json.as_bytes()).ok();
        let claims = doc.as_ref().map(|d| value(&d.root)).unwrap_or_default();
        let mut ns = Vec::new();
        bytes_field(1, &entry(key, &claims), &mut ns);
        let mut out = Vec::new();
        // An unrelated namespace and a typed_filter_metadata entry first:
        // the decoder must skip both.
        bytes_field(1, &entry("other.filter", &[]), &mut out);
        bytes_field(2, &entry("typed", b"\x0a\x00"), &mut out);
        bytes_field(1, &entry(namespace, &ns), &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    fn claims_of(md: &[u8]) -> Result<Option<String>, MetadataError> {
        let Some(ns) = filter_struct(md, "envoy.filters.http.jwt_authn")? else {
            return Ok(None);
        };
        let json = struct_to_json(ns)?;
        Ok(Some(json))
    }

    #[test]
    fn round_trips_every_value_kind() {
        let claims = r#"{"sub":"alice","n":1.5,"exp":1700000000,"ok":true,"no":null,"roles":["admin","ci"],"realm":{"roles":["x"]},"q":"a\"b\u0001"}"#;
        let md = encode::metadata("envoy.filters.http.jwt_authn", "jwt_payload", claims);
        let json = claims_of(&md).unwrap().unwrap();
        let doc = crate::json::parse(json.as_bytes()).unwrap();
        let payload = doc.root.get("jwt_payload").unwrap();
        assert_eq!(payload.get("sub").unwrap().as_str(), Some("alice"));
        assert_eq!(payload.get("n").unwrap().as_f64(), Some(1.5));
        assert_eq!(payload.get("exp").unwrap().raw(doc.source), "1700000000");
        assert_eq!(payload.get("ok").unwrap().raw(doc.source), "true");
        assert!(payload.get("no").unwrap().is_null());
        assert_eq!(payload.get("roles").unwrap().as_array().unwrap().len(), 2);
        assert_eq!(
            payload
                .get("realm")
                .unwrap()
                .get("roles")
                .unwrap()
                .raw(doc.source),
            r#"["x"]"#
        );
        assert_eq!(payload.get("q").unwrap().as_str(), Some("a\"b\u{1}"));
    }

    #[test]
    fn absent_namespace_is_none() {
        let md = encode::metadata("other", "jwt_payload", "{}");
        assert_eq!(claims_of(&md).unwrap(), None);
        assert_eq!(claims_of(&[]).unwrap(), None);
    }

    #[test]
    fn malformed_bytes_are_errors_never_panics() {
        let md = encode::metadata(
            "envoy.filters.http.jwt_authn",
            "p",
            r#"{"a":[1,{"b":"c"}]}"#,
        );
        // Every truncation and every single-byte corruption: no panic.
        for cut in 0..md.len() {
            let _ = claims_of(&md[..cut]);
        }
        for i in 0..md.len() {
            for b in [0x00, 0x07, 0x80, 0xff] {
                let mut m = md.clone();
                m[i] = b;
                let _ = claims_of(&m);
            }
        }
        assert!(claims_of(&[0x0a, 0x05, 0x01]).is_err());
        assert!(claims_of(&[0x0b]).is_err()); // group wire type
        assert!(claims_of(&[0xff; 11]).is_err()); // endless varint
    }

    #[test]
    fn nesting_and_size_are_bounded() {
        let mut deep = String::new();
        for _ in 0..40 {
            deep.push_str("{\"a\":");
        }
        deep.push('1');
        for _ in 0..40 {
            deep.push('}');
        }
        let md = encode::metadata("envoy.filters.http.jwt_authn", "p", &deep);
        assert!(claims_of(&md).is_err());
    }

    #[test]
    fn non_finite_numbers_and_bad_utf8_are_refused() {
        let mut v = vec![0x11];
        v.extend_from_slice(&f64::NAN.to_bits().to_le_bytes());
        assert!(write_value(&v, 0, &mut String::new()).is_err());
        assert!(write_value(&[0x1a, 0x01, 0xff], 0, &mut String::new()).is_err());
    }
}
