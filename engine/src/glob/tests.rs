#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::Glob;

fn g(text: &str) -> Glob {
    Glob::parse(text).unwrap()
}

#[test]
fn star_matches_any_run_including_empty() {
    let p = g("delete_*");
    assert!(p.matches("delete_"));
    assert!(p.matches("delete_file"));
    assert!(!p.matches("delete"));
    assert!(!p.matches("Delete_file"), "case-sensitive");
    assert!(!p.matches("x_delete_file"));
    let p = g("*_admin");
    assert!(p.matches("_admin"));
    assert!(p.matches("user_admin"));
    assert!(!p.matches("user_admin2"));
    let p = g("db.*.drop");
    assert!(p.matches("db..drop"));
    assert!(p.matches("db.users.drop"));
    assert!(p.matches("db.a.drop.b.drop"));
    assert!(
        !p.matches("db.drop"),
        "prefix and suffix must not share characters"
    );
    let p = g("a*b*c");
    assert!(p.matches("abc"));
    assert!(p.matches("aXbYbZc"));
    assert!(!p.matches("acb"));
    assert!(!p.matches("ab"));
    let p = g("*");
    assert!(p.matches(""));
    assert!(p.matches("anything"));
    let p = g("*é*");
    assert!(p.matches("caféine"));
    assert!(!p.matches("cafe"));
}

#[test]
fn parse_refuses_no_star_and_double_star() {
    assert!(Glob::parse("plain").is_err());
    let e = Glob::parse("a**b").unwrap_err();
    assert!(e.contains("single '*'"), "{e}");
}

#[test]
fn specificity_counts_literal_characters() {
    assert_eq!(g("*").specificity(), 0);
    assert_eq!(g("delete_*").specificity(), 7);
    assert_eq!(g("db.*.drop").specificity(), 8);
    assert_eq!(g("é*").specificity(), 1, "characters, not bytes");
}

#[test]
fn adversarial_names_match_in_linear_time() {
    // A backtracking matcher takes exponential time on these.
    let p = g("*a*a*a*a*a*a*a*a*a*a*b");
    let name = "a".repeat(100_000);
    assert!(!p.matches(&name));
    let p = g("*aaaaaaaaaaaaaaaaaaaab*");
    assert!(!p.matches(&name));
}

/// Every string over `alphabet` up to `len` characters.
fn strings(alphabet: &[char], len: usize) -> Vec<String> {
    let mut all = vec![String::new()];
    let mut frontier = vec![String::new()];
    for _ in 0..len {
        let mut next = Vec::new();
        for s in &frontier {
            for c in alphabet {
                let mut t = s.clone();
                t.push(*c);
                next.push(t);
            }
        }
        all.extend(next.iter().cloned());
        frontier = next;
    }
    all
}

/// A reference matcher (exponential, fine for tiny inputs).
fn reference(pattern: &[char], name: &[char]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some(('*', rest)) => (0..=name.len()).any(|i| reference(rest, &name[i..])),
        Some((c, rest)) => name.first() == Some(c) && reference(rest, &name[1..]),
    }
}

#[test]
fn matching_and_overlap_agree_with_brute_force() {
    let patterns: Vec<String> = strings(&['a', 'b', '*'], 5)
        .into_iter()
        .filter(|p| p.contains('*') && !p.contains("**"))
        .collect();
    // Any overlap between these patterns has a witness of at most 8 chars.
    let names = strings(&['a', 'b'], 8);
    let compiled: Vec<(Glob, Vec<bool>)> = patterns
        .iter()
        .map(|p| {
            let glob = g(p);
            let chars: Vec<char> = p.chars().collect();
            let hits: Vec<bool> = names
                .iter()
                .map(|n| {
                    let want = reference(&chars, &n.chars().collect::<Vec<_>>());
                    assert_eq!(glob.matches(n), want, "{p} vs {n}");
                    want
                })
                .collect();
            (glob, hits)
        })
        .collect();
    for (a, ha) in &compiled {
        for (b, hb) in &compiled {
            let brute = ha.iter().zip(hb).any(|(x, y)| *x && *y);
            match a.overlap(b) {
                Some(w) => {
                    assert!(brute, "{} and {} reported overlapping", a.text, b.text);
                    assert!(
                        a.matches(&w) && b.matches(&w),
                        "{} {} witness {w}",
                        a.text,
                        b.text
                    );
                }
                None => assert!(!brute, "{} and {} overlap", a.text, b.text),
            }
        }
    }
}

#[test]
fn overlap_examples() {
    assert_eq!(
        g("delete_*").overlap(&g("*_admin")).as_deref(),
        Some("delete__admin")
    );
    assert!(g("read_*").overlap(&g("write_*")).is_none());
    assert!(g("*_a").overlap(&g("*_b")).is_none());
    let w = g("db.*.drop").overlap(&g("db.users.*")).unwrap();
    assert!(
        g("db.*.drop").matches(&w) && g("db.users.*").matches(&w),
        "{w}"
    );
}
