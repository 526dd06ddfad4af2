//! `tools/list` answer filtering on arbitrary bodies: never panics; what it
//! returns is JSON, keeps only tools the decision keeps, and filtering it
//! again changes nothing (no hidden tool survives a pass).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy_engine::json::{self, Node};
use mcp_policy_engine::tools_list::{self, ListId};
use mcp_policy_fuzz::keeps;

const IDS: [&[ListId]; 3] = [
    &[],
    &[ListId::Num(1.0)],
    &[ListId::Num(1.0), ListId::Num(-0.0)],
];

fn answered_ids(seed: u8) -> Vec<ListId> {
    let mut ids = IDS[usize::from(seed % 3)].to_vec();
    if seed & 0x80 != 0 {
        ids.push(ListId::Str("a\u{0}\"b".to_string()));
        ids.push(ListId::Str("1".to_string()));
    }
    ids
}

fuzz_target!(|data: &[u8]| {
    let [seed, body @ ..] = data else {
        return;
    };
    let ids = answered_ids(*seed);
    let keep = |name: &str, _: &Node<'_>| keeps(*seed, name);
    for shape in [false, true] {
        let filtered = if shape {
            tools_list::filter_json_by_shape(body, &keep)
        } else {
            tools_list::filter_json_with(body, &ids, &keep)
        };
        let Ok(Some(out)) = filtered else {
            continue;
        };
        json::parse(out.as_bytes())
            .unwrap_or_else(|e| panic!("filtered answer is not JSON ({e}): {out}"));
        let again = if shape {
            tools_list::filter_json_by_shape(out.as_bytes(), &keep)
        } else {
            tools_list::filter_json_with(out.as_bytes(), &ids, &keep)
        };
        assert_eq!(again, Ok(None), "a second pass still filters: {out}");
    }
});
