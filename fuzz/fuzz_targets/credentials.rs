//! The grant header read as one canonical key (engine/src/credentials.rs):
//! never panics; a value it accepts keeps its key under every respelling a
//! server treats as the same credential (scheme case, surrounding spaces and
//! tabs), and two values of one header are always refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy_engine::credentials::{from_header, Grant};

const HEADERS: [&str; 3] = ["authorization", "proxy-authorization", "x-agent-id"];

fuzz_target!(|data: &[u8]| {
    let [selector, value @ ..] = data else {
        return;
    };
    let header = HEADERS[usize::from(selector % 3)];
    let grant = from_header(header, &[value]);
    assert!(matches!(
        from_header(header, &[value, value]),
        Grant::Malformed(_)
    ));
    let Grant::Key(key) = grant else {
        return;
    };
    assert!(!key.is_empty());
    let padded = [b" \t".as_slice(), value, b"\t "].concat();
    assert_eq!(
        from_header(header, &[&padded]),
        Grant::Key(key.clone()),
        "surrounding whitespace changed the key"
    );
    if header != "x-agent-id" {
        for respell in [u8::to_ascii_uppercase, u8::to_ascii_lowercase] {
            // The scheme is everything before the first space.
            let start = value
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t'))
                .unwrap_or(0);
            let space = value[start..]
                .iter()
                .position(|b| *b == b' ')
                .map_or(value.len(), |i| start + i);
            let mut other = value.to_vec();
            other[start..space].iter_mut().for_each(|b| *b = respell(b));
            assert_eq!(
                from_header(header, &[&other]),
                Grant::Key(key.clone()),
                "scheme case changed the key"
            );
        }
    }
});
