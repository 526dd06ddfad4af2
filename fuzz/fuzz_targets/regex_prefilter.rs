//! The `regex` operator's literal prefilter (engine/src/regex_prefilter.rs)
//! against regex-lite alone: the analysis never panics on any pattern, and
//! for a pattern that compiles, `conditions::Pattern::is_match` (prefilter,
//! then the regex) answers exactly as the plain regex on the haystack, its
//! ASCII upper- and lower-case forms, and with the pattern's own characters
//! (escapes dropped) spliced in. A prefilter that refused a value the regex
//! matches would turn a `deny_if` into an allow.
//!
//! Input: pattern, a NUL byte, haystack (both read as lossy UTF-8).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_policy_engine::conditions::Pattern;
use mcp_policy_engine::regex_prefilter::Prefilter;

fuzz_target!(|data: &[u8]| {
    let cut = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let pattern = String::from_utf8_lossy(&data[..cut]);
    let haystack = String::from_utf8_lossy(data.get(cut + 1..).unwrap_or_default());
    if pattern.len() > 512 {
        return;
    }
    let prefilter = Prefilter::from_pattern(&pattern);
    let Ok(regex) = regex_lite::RegexBuilder::new(&pattern)
        .size_limit(1 << 20)
        .build()
    else {
        return;
    };
    let Ok(ours) = Pattern::new(&pattern) else {
        panic!("{pattern:?} compiles in regex-lite but not as a Pattern");
    };
    assert_eq!(ours.prefilter(), prefilter.as_ref());
    // The pattern's text without backslashes: its literals, in order.
    let literals: String = pattern.chars().filter(|&c| c != '\\').collect();
    let middle = haystack.len() / 2;
    let middle = (0..=middle).rev().find(|&i| haystack.is_char_boundary(i)).unwrap_or(0);
    let spliced = format!("{}{literals}{}", &haystack[..middle], &haystack[middle..]);
    for h in [
        haystack.to_string(),
        haystack.to_ascii_uppercase(),
        haystack.to_ascii_lowercase(),
        spliced.clone(),
        spliced.to_ascii_uppercase(),
    ] {
        assert_eq!(
            ours.is_match(&h),
            regex.is_match(&h),
            "pattern {pattern:?}, haystack {h:?}, prefilter {prefilter:?}"
        );
    }
});
