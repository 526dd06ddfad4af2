#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::*;

// ---------------------------------------------------------------- helpers

fn accepted(text: &str) -> Document<'_> {
    parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text:?} was refused: {e}"))
}

fn refused(text: &str) -> ParseError {
    refused_bytes(text.as_bytes())
}

fn refused_bytes(bytes: &[u8]) -> ParseError {
    match parse(bytes) {
        Ok(doc) => panic!("{bytes:?} was accepted as {:?}", doc.root.value),
        Err(e) => e,
    }
}

/// The decoded value of a JSON string document.
fn string_of(text: &str) -> String {
    accepted(text)
        .root
        .as_str()
        .unwrap_or_else(|| panic!("{text:?} is not a string"))
        .to_string()
}

fn number_text(text: &str) -> String {
    match accepted(text).root.value {
        Value::Number(n) => n.to_string(),
        other => panic!("{text:?} parsed as {other:?}, not a number"),
    }
}

/// Structural equality that ignores byte spans.
fn same_value(a: &Node<'_>, b: &Node<'_>) -> bool {
    match (&a.value, &b.value) {
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((kp, p), (kq, q))| kp == kq && same_value(p, q))
        }
        (x, y) => x == y,
    }
}

fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

fn nested_objects(depth: usize) -> String {
    let mut s = String::new();
    for _ in 0..depth.saturating_sub(1) {
        s.push_str("{\"a\":");
    }
    if depth > 0 {
        s.push_str("{}");
    }
    for _ in 0..depth.saturating_sub(1) {
        s.push('}');
    }
    s
}

/// An object with `n` distinct members `"k0".."k{n-1}"`, then `extra`
/// appended verbatim as further members.
fn wide_object(n: usize, extra: &str) -> String {
    let mut members: Vec<String> = (0..n).map(|i| format!("\"k{i}\":{i}")).collect();
    if !extra.is_empty() {
        members.push(extra.to_string());
    }
    format!("{{{}}}", members.join(","))
}

/// Deterministic pseudo-random numbers (Knuth's MMIX LCG), no rand crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Documents whose every proper prefix is incomplete (they end with a
/// closing bracket and have no trailing whitespace).
const COMPLETE_DOCS: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#,
    r#"[{"a":[1,-2.5e+3,true,false,null]},{"b":"\u00e9\ud83d\ude00\n\"\\\/"},[]]"#,
    r#"{ "unicode" : "héllo wörld 😀" , "n" : -0.0E-0 , "e" : {} }"#,
    "[\r\n\t1 ,\n\t\"x\"\r\n]",
    r#"{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":12,"k13":13,"k14":14,"k15":15,"k16":16,"k17":17}"#,
];

// ---------------------------------------------------------------- numbers

#[test]
fn numbers_in_the_grammar_are_accepted_with_their_exact_text() {
    for text in [
        "0",
        "-0",
        "1",
        "-1",
        "123",
        "0.5",
        "-0.0",
        "1e5",
        "1E5",
        "1e+5",
        "1e-5",
        "1.5e10",
        "-1.25E-3",
        "0e0",
        "10",
        "9007199254740993",
    ] {
        assert_eq!(number_text(text), text);
    }
}

#[test]
fn minus_zero_is_a_number() {
    let doc = accepted("-0");
    assert_eq!(doc.root.type_name(), "number");
    assert_eq!(doc.root.as_f64(), Some(0.0));
    assert!(doc.root.as_f64().unwrap().is_sign_negative());
}

#[test]
fn exponent_form_is_a_number() {
    assert_eq!(accepted("1e5").root.as_f64(), Some(100_000.0));
}

#[test]
fn leading_zero_is_refused() {
    for text in ["01", "-01", "00", "007", "[01]", "{\"a\":01}"] {
        refused(text);
    }
}

#[test]
fn fraction_without_digits_is_refused() {
    for text in ["1.", "-1.", "1.e5", "[1.]", "0.", "1.x"] {
        refused(text);
    }
}

#[test]
fn exponent_without_digits_is_refused() {
    for text in ["1e", "1E", "1e+", "1e-", "1e+-1", "[1e]"] {
        refused(text);
    }
}

#[test]
fn numbers_outside_the_grammar_are_refused() {
    for text in [
        "-",
        "+1",
        ".5",
        "--1",
        "0x10",
        "NaN",
        "Infinity",
        "-Infinity",
        "1_000",
        "- 1",
    ] {
        refused(text);
    }
}

#[test]
fn huge_exponents_are_accepted_without_panic() {
    assert_eq!(number_text("1e999999999999"), "1e999999999999");
    assert!(accepted("1e999").root.as_f64().unwrap().is_infinite());
    assert_eq!(accepted("1e-999999").root.as_f64(), Some(0.0));
    assert!(accepted("-1E+400").root.as_f64().unwrap().is_infinite());
}

#[test]
fn big_integers_keep_their_exact_text() {
    let text = "12345678901234567890123456789";
    let doc = accepted(text);
    assert_eq!(doc.root.raw(doc.source), text);
    assert_eq!(number_text(text), text);
}

// ---------------------------------------------------------------- strings

#[test]
fn every_simple_escape_is_decoded() {
    assert_eq!(
        string_of(r#""\" \\ \/ \b \f \n \r \t""#),
        "\" \\ / \u{8} \u{c} \n \r \t"
    );
}

#[test]
fn unicode_escapes_are_decoded_in_either_case() {
    assert_eq!(string_of(r#""\u0041""#), "A");
    assert_eq!(string_of(r#""\u00e9\u00E9""#), "éé");
    assert_eq!(string_of(r#""\u20AC""#), "€");
    assert_eq!(string_of(r#""\u0000""#), "\0");
    assert_eq!(string_of(r#""\uFFFF""#), "\u{FFFF}");
}

#[test]
fn surrogate_pairs_are_joined() {
    assert_eq!(string_of(r#""\ud83d\ude00""#), "😀");
    assert_eq!(string_of(r#""\uD83D\uDE00""#), "😀");
    assert_eq!(string_of(r#""\uD800\uDC00""#), "\u{10000}");
    assert_eq!(string_of(r#""\uDBFF\uDFFF""#), "\u{10FFFF}");
    assert_eq!(string_of(r#""a\ud83d\ude00b""#), "a😀b");
}

#[test]
fn lone_high_surrogate_is_refused() {
    for text in [
        r#""\ud800""#,
        r#""\ud800x""#,
        r#""\ud83d\u0041""#,
        r#""\ud83d\ud83d""#,
        r#""\ud83d\n""#,
        r#""\ud83d\u""#,
    ] {
        let e = refused(text);
        assert!(
            e.reason.contains("surrogate") || e.reason.contains("escape"),
            "{text}: {e}"
        );
    }
}

#[test]
fn lone_high_surrogate_reports_lone_surrogate() {
    assert!(refused(r#""\ud800""#).reason.contains("lone surrogate"));
    assert!(refused(r#""\ud800\u0041""#)
        .reason
        .contains("lone surrogate"));
}

#[test]
fn lone_low_surrogate_is_refused() {
    for text in [
        r#""\udc00""#,
        r#""\uDFFF""#,
        r#""\ude00\ud83d""#,
        r#""x\udc00y""#,
    ] {
        assert!(refused(text).reason.contains("lone surrogate"), "{text}");
    }
}

#[test]
fn invalid_escapes_are_refused() {
    for text in [
        r#""\x41""#,
        r#""\'""#,
        r#""\U0041""#,
        r#""\u12""#,
        r#""\u12G4""#,
        r#""\u""#,
        r#""\""#,
        r#""\a""#,
        r#""\0""#,
        r#""\u00é9""#,
        r#""\u+123""#,
    ] {
        refused(text);
    }
}

#[test]
fn raw_control_characters_are_refused_in_both_string_paths() {
    for c in 0u8..0x20 {
        let fast = [b'"', b'a', c, b'"'];
        let slow = [b'"', b'\\', b'n', c, b'"'];
        assert!(
            refused_bytes(&fast).reason.contains("control character"),
            "fast path, byte {c:#x}"
        );
        assert!(
            refused_bytes(&slow).reason.contains("control character"),
            "after an escape, byte {c:#x}"
        );
    }
}

#[test]
fn delete_character_is_allowed_in_strings() {
    assert_eq!(string_of("\"a\u{7f}b\""), "a\u{7f}b");
}

#[test]
fn non_ascii_passes_through_unchanged() {
    let text = "héllo wörld € 😀 \u{2028} 日本";
    assert_eq!(string_of(&format!("\"{text}\"")), text);
    // Same characters after an escape (the copying path).
    assert_eq!(string_of(&format!("\"\\t{text}\"")), format!("\t{text}"));
}

#[test]
fn strings_without_escapes_are_borrowed() {
    let doc = accepted(r#""plain é""#);
    let Value::String(s) = &doc.root.value else {
        panic!("not a string");
    };
    assert!(matches!(s.to_cow(), Cow::Borrowed("plain é")));
}

#[test]
fn strings_with_escapes_are_unescaped_when_read() {
    let doc = accepted(r#""a\u0062\n\ud83d\ude00""#);
    let Value::String(s) = &doc.root.value else {
        panic!("not a string");
    };
    assert!(matches!(s.to_cow(), Cow::Owned(o) if o == "ab\n\u{1F600}"));
    // Read twice: the same (kept) value.
    assert_eq!(s.as_str(), "ab\n\u{1F600}");
    assert_eq!(doc.root.as_str(), Some("ab\n\u{1F600}"));
}

#[test]
fn unterminated_strings_are_refused() {
    for text in ["\"", "\"abc", "\"abc\\\"", "\"a\\n", "[\"a]", "{\"a"] {
        refused(text);
    }
}

// ---------------------------------------------------------------- literals and whitespace

#[test]
fn literals_are_accepted() {
    assert_eq!(accepted("true").root.value, Value::Bool(true));
    assert_eq!(accepted("false").root.value, Value::Bool(false));
    assert!(accepted("null").root.is_null());
}

#[test]
fn misspelt_or_extended_literals_are_refused() {
    for text in [
        "tru",
        "True",
        "TRUE",
        "nul",
        "NULL",
        "None",
        "fals",
        "falsey",
        "truex",
        "nulll",
        "t",
        "undefined",
    ] {
        refused(text);
    }
}

#[test]
fn json_whitespace_is_allowed_everywhere() {
    let doc = accepted(
        " \t\r\n{ \t\r\n\"a\" \t\r\n: \t\r\n[ \t\r\n1 \t\r\n, \t\r\n2 \t\r\n] \t\r\n} \t\r\n",
    );
    assert_eq!(doc.root.get("a").unwrap().as_array().unwrap().len(), 2);
}

#[test]
fn non_json_whitespace_is_refused() {
    for ws in [
        "\u{c}", "\u{b}", "\u{a0}", "\u{feff}", "\u{2028}", "\u{3000}",
    ] {
        refused(&format!("{ws}1"));
        refused(&format!("[1,{ws}2]"));
        refused(&format!("1{ws}"));
    }
}

#[test]
fn empty_and_blank_inputs_are_refused() {
    assert!(refused("").reason.contains("end of input"));
    assert!(refused(" \n\t ").reason.contains("end of input"));
}

// ---------------------------------------------------------------- structure

#[test]
fn structural_errors_are_refused() {
    for text in [
        "[1,]",
        "[,1]",
        "[1 2]",
        "{\"a\":1,}",
        "{,}",
        "{\"a\" 1}",
        "{\"a\":}",
        "{a:1}",
        "{'a':1}",
        "{1:1}",
        "{\"a\":1 \"b\":2}",
        "]",
        "}",
        "[}",
        "{]",
        ":",
        ",",
    ] {
        refused(text);
    }
}

#[test]
fn containers_keep_members_in_source_order() {
    let doc = accepted(r#"{"z":1,"a":2,"m":[3,"x",null]}"#);
    let keys: Vec<&str> = doc
        .root
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_ref())
        .collect();
    assert_eq!(keys, ["z", "a", "m"]);
    let items = doc.root.get("m").unwrap().as_array().unwrap();
    assert_eq!(items[1].as_str(), Some("x"));
    assert!(items[2].is_null());
}

#[test]
fn get_matches_keys_exactly_after_unescaping() {
    let doc = accepted(r#"{"Name":1,"n\u0061me":2}"#);
    assert_eq!(doc.root.get("name").unwrap().raw(doc.source), "2");
    assert_eq!(doc.root.get("Name").unwrap().raw(doc.source), "1");
    assert!(doc.root.get("NAME").is_none());
    assert!(doc.root.get("name ").is_none());
}

#[test]
fn accessors_return_none_for_other_types() {
    let doc = accepted(r#"[1,"s",{},[],true,null]"#);
    let items = doc.root.as_array().unwrap();
    assert!(items[0].as_str().is_none());
    assert!(items[1].as_f64().is_none());
    assert!(items[1].as_array().is_none());
    assert!(items[3].as_object().is_none());
    assert!(items[3].get("x").is_none());
    assert!(!items[4].is_null());
    let names: Vec<&str> = items.iter().map(Node::type_name).collect();
    assert_eq!(
        names,
        ["number", "string", "object", "array", "boolean", "null"]
    );
}

// ---------------------------------------------------------------- duplicate keys

#[test]
fn duplicate_keys_are_refused_at_top_level() {
    let e = refused(r#"{"name":"ok","name":"evil"}"#);
    assert!(e.reason.contains("duplicate key \"name\""), "{e}");
}

#[test]
fn duplicate_keys_are_refused_at_any_depth() {
    for text in [
        r#"{"params":{"name":"ok","name":"evil"}}"#,
        r#"[{"a":1},{"b":1,"b":2}]"#,
        r#"{"a":{"b":{"c":{"d":[{"e":1,"e":1}]}}}}"#,
        r#"[[[[{"x":null,"x":null}]]]]"#,
    ] {
        assert!(refused(text).reason.contains("duplicate key"), "{text}");
    }
}

#[test]
fn duplicate_keys_are_refused_after_unescaping() {
    for text in [
        r#"{"a":1,"\u0061":2}"#,
        r#"{"\u0061":1,"a":2}"#,
        r#"{"\u0061":1,"\u0061":2}"#,
        r#"{"na\u006de":"ok","name":"evil"}"#,
        r#"{"\/":1,"/":2}"#,
        r#"{"😀":1,"\ud83d\ude00":2}"#,
    ] {
        assert!(refused(text).reason.contains("duplicate key"), "{text}");
    }
}

#[test]
fn duplicate_key_message_escapes_the_key() {
    let e = refused(r#"{"a\"\n":1,"a\"\n":2}"#);
    assert!(e.reason.contains(r#"duplicate key "a\"\n""#), "{e}");
}

#[test]
fn keys_differing_only_in_case_are_distinct() {
    let doc = accepted(r#"{"name":1,"Name":2,"NAME":3}"#);
    assert_eq!(doc.root.as_object().unwrap().len(), 3);
}

#[test]
fn same_key_in_different_objects_is_fine() {
    accepted(r#"[{"a":1},{"a":2}]"#);
    accepted(r#"{"a":{"a":{"a":1}}}"#);
}

#[test]
fn sixteen_members_with_last_duplicating_first_are_refused() {
    let text = wide_object(15, "\"k0\":99");
    assert!(refused(&text).reason.contains("duplicate key \"k0\""));
}

#[test]
fn wide_objects_without_duplicates_are_accepted() {
    for n in [15, 16, 17, 18, 100, 1000] {
        let text = wide_object(n, "");
        assert_eq!(accepted(&text).root.as_object().unwrap().len(), n);
    }
}

#[test]
fn duplicate_keys_in_objects_with_more_than_sixteen_members_are_refused() {
    // The 17th, 18th and 101st member repeating an earlier one.
    for (n, dup) in [
        (16, "k0"),
        (16, "k15"),
        (17, "k3"),
        (100, "k57"),
        (100, "k99"),
    ] {
        let text = wide_object(n, &format!("\"{dup}\":true"));
        let e = refused(&text);
        assert!(
            e.reason.contains(&format!("duplicate key \"{dup}\"")),
            "{n} {dup}: {e}"
        );
    }
}

#[test]
fn duplicate_pair_within_the_first_sixteen_of_a_wide_object_is_refused() {
    let mut text = String::from("{\"x\":1,\"x\":2");
    for i in 0..30 {
        text.push_str(&format!(",\"k{i}\":{i}"));
    }
    text.push('}');
    assert!(refused(&text).reason.contains("duplicate key \"x\""));
}

#[test]
fn escaped_duplicate_keys_in_wide_objects_are_refused() {
    let text = wide_object(40, r#""\u006b7":"evil""#);
    assert!(refused(&text).reason.contains("duplicate key \"k7\""));
}

#[test]
fn duplicate_keys_inside_wide_nested_objects_are_refused() {
    let inner = wide_object(20, "\"k19\":0");
    let text = format!("{{\"outer\":[1,{inner}]}}");
    assert!(refused(&text).reason.contains("duplicate key"));
}

// ---------------------------------------------------------------- trailing data, BOM, UTF-8

#[test]
fn trailing_data_is_refused() {
    for text in [
        "{} {}",
        "1 2",
        "{}x",
        "\"a\"\"b\"",
        "[]]",
        "{}}",
        "null,",
        "true false",
        "{}\u{0}",
        "0 0",
        "[] //comment",
    ] {
        let e = refused(text);
        assert!(e.reason.contains("trailing data"), "{text:?}: {e}");
    }
}

#[test]
fn trailing_whitespace_is_allowed() {
    let doc = accepted("{} \r\n\t");
    assert_eq!(doc.root.raw(doc.source), "{}");
}

#[test]
fn byte_order_mark_is_refused() {
    let mut bytes = vec![0xEF, 0xBB, 0xBF];
    bytes.extend_from_slice(br#"{"jsonrpc":"2.0"}"#);
    let e = refused_bytes(&bytes);
    assert_eq!(e.offset, 0);
    assert!(e.reason.contains("byte order mark"));
}

#[test]
fn byte_order_mark_after_whitespace_is_refused() {
    refused_bytes(b" \xEF\xBB\xBF{}");
}

#[test]
fn byte_order_mark_inside_a_string_is_just_a_character() {
    assert_eq!(string_of("\"\u{feff}\""), "\u{feff}");
}

#[test]
fn invalid_utf8_is_refused_with_its_offset() {
    let cases: &[(&[u8], usize)] = &[
        (b"\"\x80\"", 1),
        (b"\"ab\xC0\xAF\"", 3),
        (b"\"\xED\xA0\x80\"", 1),
        (b"\"\xF0\x9F\x98\"", 1),
        (b"\"\xF5\x80\x80\x80\"", 1),
        (b"{\"a\":\"\xFF\"}", 6),
        (b"[1]\xFF", 3),
        (b"\xC3", 0),
    ];
    for (bytes, offset) in cases {
        let e = refused_bytes(bytes);
        assert_eq!(e.reason, "invalid UTF-8", "{bytes:?}");
        assert_eq!(e.offset, *offset, "{bytes:?}");
    }
}

// ---------------------------------------------------------------- depth

#[test]
fn nesting_exactly_at_the_default_limit_is_accepted() {
    accepted(&nested_arrays(DEFAULT_MAX_DEPTH));
    accepted(&nested_objects(DEFAULT_MAX_DEPTH));
}

#[test]
fn nesting_one_past_the_default_limit_is_refused() {
    let e = refused(&nested_arrays(DEFAULT_MAX_DEPTH + 1));
    assert!(e.reason.contains("nesting deeper than 64"), "{e}");
    refused(&nested_objects(DEFAULT_MAX_DEPTH + 1));
}

#[test]
fn custom_depth_bound_is_exact() {
    for limit in [1, 2, 5, 32, 100] {
        assert!(parse_with_depth(nested_arrays(limit).as_bytes(), limit).is_ok());
        assert!(parse_with_depth(nested_objects(limit).as_bytes(), limit).is_ok());
        assert!(parse_with_depth(nested_arrays(limit + 1).as_bytes(), limit).is_err());
        assert!(parse_with_depth(nested_objects(limit + 1).as_bytes(), limit).is_err());
    }
}

#[test]
fn mixed_nesting_counts_arrays_and_objects_alike() {
    // [{"a":[{"a":[]}]}] is five levels deep.
    let text = r#"[{"a":[{"a":[]}]}]"#;
    assert!(parse_with_depth(text.as_bytes(), 5).is_ok());
    assert!(parse_with_depth(text.as_bytes(), 4).is_err());
}

#[test]
fn depth_zero_allows_only_scalars() {
    assert!(parse_with_depth(b"1", 0).is_ok());
    assert!(parse_with_depth(b"\"s\"", 0).is_ok());
    assert!(parse_with_depth(b"[]", 0).is_err());
    assert!(parse_with_depth(b"{}", 0).is_err());
}

#[test]
fn sibling_containers_do_not_add_depth() {
    let text = format!("[{}]", vec![nested_arrays(3); 50].join(","));
    assert!(parse_with_depth(text.as_bytes(), 4).is_ok());
}

#[test]
fn very_deep_input_is_refused_without_exhausting_the_stack() {
    let open = "[".repeat(200_000);
    assert!(refused(&open).reason.contains("nesting deeper"));
    let objects = "{\"a\":".repeat(200_000);
    assert!(refused(&objects).reason.contains("nesting deeper"));
}

// ---------------------------------------------------------------- spans

#[test]
fn raw_returns_the_exact_source_text_of_every_node() {
    let text = r#" { "id" : 1.50 , "s" : "a\u0062\n" , "arr" : [ -0 , true , null , { } ] , "big" : 12345678901234567890 } "#;
    let doc = accepted(text);
    let root = &doc.root;
    assert_eq!(root.raw(doc.source), text.trim());
    assert_eq!(root.get("id").unwrap().raw(doc.source), "1.50");
    assert_eq!(root.get("s").unwrap().raw(doc.source), r#""a\u0062\n""#);
    assert_eq!(
        root.get("arr").unwrap().raw(doc.source),
        "[ -0 , true , null , { } ]"
    );
    let raws: Vec<&str> = root
        .get("arr")
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.raw(doc.source))
        .collect();
    assert_eq!(raws, ["-0", "true", "null", "{ }"]);
    assert_eq!(
        root.get("big").unwrap().raw(doc.source),
        "12345678901234567890"
    );
}

#[test]
fn spans_are_byte_offsets_that_survive_multibyte_characters() {
    let text = r#"{"é😀":"日本","n":1e3}"#;
    let doc = accepted(text);
    let n = doc.root.get("n").unwrap();
    assert_eq!(&text[n.start..n.end], "1e3");
    let s = doc.root.get("é😀").unwrap();
    assert_eq!(s.raw(doc.source), "\"日本\"");
    assert_eq!(s.end - s.start, "\"日本\"".len());
}

#[test]
fn raw_of_every_node_reparses_to_the_same_value() {
    for text in COMPLETE_DOCS {
        let doc = accepted(text);
        let mut stack = vec![&doc.root];
        while let Some(node) = stack.pop() {
            let raw = node.raw(doc.source);
            let again = accepted(raw);
            assert!(same_value(&again.root, node), "{raw}");
            match &node.value {
                Value::Array(items) => stack.extend(items.iter()),
                Value::Object(members) => stack.extend(members.iter().map(|(_, v)| v)),
                _ => {}
            }
        }
    }
}

#[test]
fn parse_error_displays_reason_and_offset() {
    let e = refused("[1,]");
    assert_eq!(e.offset, 3);
    assert_eq!(e.to_string(), format!("{} at byte 3", e.reason));
}

// ---------------------------------------------------------------- robustness

#[test]
fn every_truncated_prefix_is_refused_without_panic() {
    for text in COMPLETE_DOCS {
        accepted(text);
        let bytes = text.as_bytes();
        for cut in 0..bytes.len() {
            assert!(
                parse(&bytes[..cut]).is_err(),
                "prefix of {cut} bytes of {text:?} was accepted"
            );
        }
    }
}

#[test]
fn every_single_byte_mutation_is_handled_without_panic() {
    const BYTES: &[u8] = b"{}[]\",:\\u0aeE+-.1 tfn\x00\x1f\x7f\x80\xc3\xed\xff";
    for text in COMPLETE_DOCS {
        for at in 0..text.len() {
            for b in BYTES {
                let mut bytes = text.as_bytes().to_vec();
                bytes[at] = *b;
                if let Ok(doc) = parse(&bytes) {
                    assert_eq!(
                        doc.root.raw(doc.source),
                        doc.source.trim_matches(|c| " \t\r\n".contains(c))
                    );
                }
            }
        }
    }
}

#[test]
fn pseudo_random_bytes_never_panic() {
    let mut rng = Lcg(0x5eed);
    for _ in 0..3000 {
        let len = rng.below(48);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = parse(&bytes);
    }
}

#[test]
fn pseudo_random_json_like_text_never_panics() {
    const ALPHABET: &[&str] = &[
        "{", "}", "[", "]", ",", ":", "\"", "\\", "\\u", "d83d", "\\ude00", "dc00", "0", "1", "-",
        ".", "e", "+", "true", "null", "false", " ", "\n", "\"a\"", "\"a\":", "é", "😀", "\u{1}",
        "\\n", "\\\"",
    ];
    let mut rng = Lcg(42);
    let mut accepted_count = 0;
    for _ in 0..5000 {
        let pieces = 1 + rng.below(24);
        let text: String = (0..pieces)
            .map(|_| ALPHABET[rng.below(ALPHABET.len())])
            .collect();
        for depth in [0, 3, DEFAULT_MAX_DEPTH] {
            if let Ok(doc) = parse_with_depth(text.as_bytes(), depth) {
                accepted_count += 1;
                assert_eq!(
                    doc.root.raw(doc.source),
                    text.trim_matches(|c| " \n".contains(c))
                );
            }
        }
    }
    // Some inputs happen to be valid JSON, so both outcomes were exercised.
    assert!(accepted_count > 0);
}

// ---------------------------------------------------------------- the 8-byte string scanner

#[test]
fn string_scanner_finds_specials_at_every_offset() {
    for len in 0..40 {
        let plain: String = "é".repeat(len % 3) + &"a".repeat(len);
        // A plain string of every length borrows and round-trips.
        let quoted = format!("\"{plain}\"");
        let doc = parse(quoted.as_bytes()).unwrap();
        assert_eq!(doc.root.as_str(), Some(plain.as_str()));
        // An escape at every offset decodes exactly.
        let escaped = format!("\"{plain}\\n{plain}\"");
        let doc = parse(escaped.as_bytes()).unwrap();
        assert_eq!(doc.root.as_str().unwrap(), format!("{plain}\n{plain}"));
        // A raw control character at every offset is refused.
        let control = format!("\"{plain}\u{1}{plain}\"");
        assert!(parse(control.as_bytes()).is_err(), "len {len}");
        // An unterminated string at every length is refused.
        assert!(parse(format!("\"{plain}").as_bytes()).is_err());
    }
}

#[test]
fn string_scanner_stops_at_the_first_special_byte_exactly() {
    // The scanner takes the lowest flagged byte of a word as the run's end;
    // bytes after a special one (which a borrow could flag falsely) must
    // never move it. Every position in two words, every special byte, and
    // the bytes right above each threshold after it.
    let specials = [b'"', b'\\', 0x00, 0x1f, b'\n'];
    let after = [0x00, 0x1f, 0x20, 0x21, b'"', b'#', b'\\', b']', 0x7f, b'a'];
    for at in 0..17 {
        for &special in &specials {
            for &next in &after {
                let mut body = vec![b'"'];
                body.extend(std::iter::repeat_n(b'a', at));
                let special_at = body.len();
                body.push(special);
                body.extend(std::iter::repeat_n(next, 9));
                body.push(b'"');
                match special {
                    b'"' => {
                        // Ends the string: what follows is trailing data.
                        let e = parse(&body).unwrap_err();
                        assert_eq!(e.reason, "trailing data after the JSON value");
                        assert!(e.offset > special_at, "at {at} next {next}: {e}");
                    }
                    b'\\' => {
                        // An escape: `\a` and `\#` are invalid, the others are
                        // checked at the byte after the backslash.
                        if let Err(e) = parse(&body) {
                            assert!(e.offset > special_at, "at {at} next {next}: {e}");
                        }
                    }
                    _ => {
                        let e = parse(&body).unwrap_err();
                        assert_eq!(e.offset, special_at, "at {at} byte {special}: {e}");
                        assert_eq!(e.reason, "control character in string");
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- error positions for people

#[test]
fn errors_locate_line_and_column() {
    let text = "{\n  \"a\": 1,\n  \"é\": tru\n}";
    let e = refused(text);
    let (line, column) = e.line_column(text.as_bytes());
    assert_eq!(line, 3);
    // Characters, not bytes: "é" is two bytes, one column.
    let bad_line = text.lines().nth(2).unwrap();
    let bytes_before = e.offset - text.find(bad_line).unwrap();
    let chars_before = bad_line[..bytes_before].chars().count();
    assert_eq!(column, chars_before + 1);
    assert!(e
        .located(text.as_bytes())
        .contains(&format!("at line 3, column {column} (byte {})", e.offset)));
    // An error on the first line, and an offset past the end.
    let e = refused("[1,");
    assert_eq!(e.line_column(b"[1,").0, 1);
    let far = ParseError {
        offset: 99,
        reason: String::new(),
    };
    assert_eq!(far.line_column(b"a\nbc"), (2, 3));
}
