//! Our parser against serde_json on the same bytes: where both accept, the
//! same values; duplicate keys refused exactly when serde_json's reading of
//! the document has two equal keys (after unescaping) in one object; the
//! depth bound applied exactly; nothing else refused that serde_json reads.
#![no_main]

use std::collections::HashSet;
use std::fmt;

use libfuzzer_sys::fuzz_target;
use mcp_policy_engine::json::{self, Node, Value, DEFAULT_MAX_DEPTH};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value as SValue;

/// serde_json's reading, refusing an object with two equal keys: an
/// independent duplicate check (serde_json::Value itself keeps the last).
struct NoDuplicates;

impl<'de> de::Deserialize<'de> for NoDuplicates {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NoDuplicates)
    }
}

impl<'de> Visitor<'de> for NoDuplicates {
    type Value = NoDuplicates;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self, E> {
        Ok(NoDuplicates)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self, E> {
        Ok(NoDuplicates)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self, E> {
        Ok(NoDuplicates)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self, E> {
        Ok(NoDuplicates)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self, E> {
        Ok(NoDuplicates)
    }
    fn visit_unit<E>(self) -> Result<Self, E> {
        Ok(NoDuplicates)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self, A::Error> {
        while seq.next_element::<NoDuplicates>()?.is_some() {}
        Ok(NoDuplicates)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<NoDuplicates>()?;
            if !seen.insert(key) {
                return Err(de::Error::custom("duplicate key"));
            }
        }
        Ok(NoDuplicates)
    }
}

fn serde_depth(v: &SValue) -> usize {
    match v {
        SValue::Array(a) => 1 + a.iter().map(serde_depth).max().unwrap_or(0),
        SValue::Object(o) => 1 + o.values().map(serde_depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Same value: numbers compared exactly as integers when serde_json holds
/// an integer, else as correctly rounded f64; strings after unescaping;
/// members in order (our tree has no duplicates here, so serde_json's
/// order-preserving map has one entry per member).
fn same(ours: &Node<'_>, theirs: &SValue) -> bool {
    match (&ours.value, theirs) {
        (Value::Null, SValue::Null) => true,
        (Value::Bool(a), SValue::Bool(b)) => a == b,
        (Value::Number(text), SValue::Number(n)) => {
            if let Some(i) = n.as_i64() {
                text.parse::<i64>().ok() == Some(i) || (*text == "-0" && i == 0)
            } else if let Some(u) = n.as_u64() {
                text.parse::<u64>().ok() == Some(u)
            } else {
                let ours = text.parse::<f64>().ok();
                ours.is_some() && ours == n.as_f64()
            }
        }
        (Value::String(a), SValue::String(b)) => a == b,
        (Value::Array(a), SValue::Array(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
        }
        (Value::Object(a), SValue::Object(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|((k, x), (l, y))| k == l && same(x, y))
        }
        _ => false,
    }
}

fuzz_target!(|data: &[u8]| {
    let ours = json::parse_with_depth(data, DEFAULT_MAX_DEPTH);
    let theirs = serde_json::from_slice::<SValue>(data);
    match (&ours, &theirs) {
        (Ok(doc), Ok(v)) => {
            assert!(
                same(&doc.root, v),
                "different values: ours {:?} serde {v:?}",
                doc.root
            );
            assert!(
                serde_json::from_slice::<NoDuplicates>(data).is_ok(),
                "we accepted what has duplicate keys for serde_json"
            );
        }
        (Ok(doc), Err(e)) => {
            // serde_json refuses numbers beyond f64 (1e400); we pass their
            // text through untouched. Anything else is a disagreement.
            assert!(
                e.to_string().starts_with("number out of range"),
                "we accepted what serde_json refuses ({e}): {:?}",
                doc.root
            );
        }
        (Err(e), Ok(v)) => {
            let reason = e.reason.as_str();
            if reason.starts_with("duplicate key") {
                assert!(
                    serde_json::from_slice::<NoDuplicates>(data).is_err(),
                    "we refused a duplicate serde_json does not see: {reason}"
                );
            } else if reason.starts_with("nesting deeper than") {
                assert!(
                    serde_depth(v) > DEFAULT_MAX_DEPTH,
                    "depth refused wrongly: {reason}"
                );
            } else {
                panic!("we refused ({e}) what serde_json reads as {v:?}");
            }
        }
        (Err(_), Err(_)) => {}
    }
    // Our bound of 127 and serde_json's recursion limit of 128 refuse the same.
    if let Ok(v) = &theirs {
        if serde_json::from_slice::<NoDuplicates>(data).is_ok() {
            let deep = json::parse_with_depth(data, 127);
            assert!(
                deep.is_ok(),
                "serde_json reads depth {}, we refused at 127: {deep:?}",
                serde_depth(v)
            );
        }
    } else if let Ok(doc) = json::parse_with_depth(data, 127) {
        let e = theirs
            .as_ref()
            .err()
            .map(ToString::to_string)
            .unwrap_or_default();
        assert!(
            e.starts_with("number out of range")
                || (e.starts_with("recursion limit") && mcp_policy_fuzz::depth(&doc.root) > 127),
            "serde_json refused ({e}) what we read at depth 127"
        );
    }
});
