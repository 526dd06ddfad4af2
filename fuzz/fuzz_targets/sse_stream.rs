//! The incremental event-stream filter fed arbitrary bytes in arbitrary
//! chunks: never panics, never holds more than its limit, and on a UTF-8
//! stream the output does not depend on how the stream was cut (one push
//! versus many), and a second pass over the output changes nothing.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy_engine::json::Node;
use mcp_policy_engine::tools_list::{EventStreamFilter, StreamOutput};
use mcp_policy_fuzz::keeps;

/// Feeds `chunks` (the last with `end`) and returns the joined output and
/// whether anything was withheld.
fn run<'c>(
    limit: usize,
    chunks: impl Iterator<Item = &'c [u8]>,
    end_separately: bool,
    seed: u8,
) -> (Vec<u8>, bool) {
    let keep = |name: &str, _: &Node<'_>| keeps(seed, name);
    let mut filter = EventStreamFilter::new(limit);
    let mut bytes = Vec::new();
    let mut withheld = false;
    let mut collect = |out: StreamOutput| {
        bytes.extend_from_slice(&out.bytes);
        withheld |= out.withheld.is_some();
    };
    let chunks: Vec<&[u8]> = chunks.collect();
    let last = chunks.len().saturating_sub(1);
    for (i, chunk) in chunks.into_iter().enumerate() {
        collect(filter.push(chunk, i == last && !end_separately, &keep));
    }
    if end_separately {
        collect(filter.push(&[], true, &keep));
    }
    (bytes, withheld)
}

fuzz_target!(|data: &[u8]| {
    // [seed][cut count n][n cut lengths][stream]
    let [seed, n, rest @ ..] = data else {
        return;
    };
    let n = usize::from(*n % 16).min(rest.len());
    let (cuts, stream) = rest.split_at(n);
    let mut chunks = Vec::new();
    let mut at = 0;
    for &c in cuts {
        let next = (at + usize::from(c)).min(stream.len());
        chunks.push(&stream[at..next]);
        at = next;
    }
    chunks.push(&stream[at..]);

    // A small limit exercises the cut-off path.
    let small = usize::from(seed % 64);
    let _ = run(small, chunks.iter().copied(), seed & 1 == 1, *seed);

    let big = stream.len() + 1;
    let (whole, whole_withheld) = run(big, std::iter::once(stream), false, *seed);
    let (pieces, _) = run(big, chunks.iter().copied(), seed & 1 == 1, *seed);
    if std::str::from_utf8(stream).is_ok() {
        assert_eq!(
            String::from_utf8_lossy(&whole),
            String::from_utf8_lossy(&pieces),
            "output depends on chunking ({} chunks)",
            chunks.len()
        );
        if !whole_withheld {
            let (again, _) = run(whole.len() + 1, std::iter::once(&whole[..]), false, *seed);
            assert_eq!(
                String::from_utf8_lossy(&again),
                String::from_utf8_lossy(&whole),
                "a second pass still filters"
            );
        }
    }
});
