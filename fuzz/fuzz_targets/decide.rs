//! The whole decision path on arbitrary request bodies: parse, classify
//! (jsonrpc.rs), routing headers, rules, counters, risk, approval and the
//! rate limit service's answers, refunds. Never panics, and every answer we
//! build locally is JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy_engine::routing_headers::RoutingHeaders;
use mcp_policy_engine::testing::{FixedClock, MemoryStore};
use mcp_policy_engine::{Engine, Scopes, Verdict};
use mcp_policy_fuzz::{assert_json, engines};

thread_local! {
    static ENGINES: Vec<Engine> = engines();
}

const ROUTING: [RoutingHeaders<'static>; 5] = [
    RoutingHeaders {
        method: None,
        name: None,
    },
    RoutingHeaders {
        method: Some("tools/call"),
        name: Some("claude_code_session"),
    },
    RoutingHeaders {
        method: Some("tools/list"),
        name: None,
    },
    RoutingHeaders {
        method: Some("tools/call"),
        name: Some("=?base64?c2VhcmNo?="),
    },
    RoutingHeaders {
        method: Some("initialize"),
        name: Some("x, y"),
    },
];

/// Answers from the approval service and the rate limit service.
const APPROVALS: [Option<(u32, &[u8])>; 4] = [
    None,
    Some((200, br#"{"decision":"allow"}"#)),
    Some((200, br#"{"decision":"deny","reason":"no \u0000"}"#)),
    Some((503, b"busy")),
];
// RateLimitResponse: overall_code OK (1), OVER_LIMIT (2), garbage.
const RLS: [&[u8]; 3] = [&[0x08, 0x01], &[0x08, 0x02], &[0xff, 0xff, 0xff]];

fn settle(engine: &Engine, verdict: Verdict, pick: u8, store: &MemoryStore) {
    match verdict {
        Verdict::Reply { reply, .. } => assert_json("local reply", &reply.body),
        Verdict::Forward(f) => {
            engine.refund(store, &f.charges);
            if !f.list_ids.is_empty() {
                let _ = engine.filter_tools_list(SAMPLE_LIST, &f.list_ids);
            }
        }
        Verdict::Approve(p) => {
            assert_json("approval request", &p.body);
            let answer = APPROVALS[usize::from(pick) % APPROVALS.len()];
            let settled = engine.resolve_approval(*p, answer, store);
            settle(engine, settled, pick / 4, store);
        }
        Verdict::AskRateLimit(p) => {
            let answer = match pick % 4 {
                3 => Err("timeout".to_string()),
                i => Ok(RLS[usize::from(i)]),
            };
            let settled = engine.resolve_global(*p, answer, store);
            settle(engine, settled, pick / 4, store);
        }
    }
}

const SAMPLE_LIST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"claude_code"},{"name":"delete_repository"},{"name":"search","annotations":{"readOnlyHint":true}}]}}"#;

fuzz_target!(|data: &[u8]| {
    let [selector, pick, body @ ..] = data else {
        return;
    };
    ENGINES.with(|engines| {
        let engine = &engines[usize::from(selector % 3)];
        let routing = &ROUTING[usize::from(selector / 3) % ROUTING.len()];
        let scopes = Scopes {
            grant: (selector & 0x40 != 0).then_some(&b"bearer s3cret"[..]),
            grant_error: (selector & 0x20 != 0).then_some("two Authorization headers"),
            session: (selector & 0x80 != 0).then_some(&b"session-1"[..]),
            source: Some(&b"10.0.0.1"[..]),
            request_id: Some("req-1"),
            // Fields added later default to absent.
            ..Scopes::default()
        };
        let store = MemoryStore::new();
        let clock = FixedClock::at_secs(1_800_000_000);
        // Twice on one store: the second pass meets the first's counters.
        for round in 0..2u8 {
            let verdict = engine.decide_with_routing(body, &scopes, routing, &store, &clock);
            settle(engine, verdict, pick.wrapping_add(round), &store);
            clock.advance_secs(1);
        }
        let _ = engine.answer_is_error(body, selector & 1 == 1);
        engine.learn_hints(body, &store);
    });
});
