#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use super::Prefilter;

/// The needles of `pattern`'s prefilter, sorted, and whether case folds;
/// also checks the pattern compiles (the analysis only ever sees those).
fn needles(pattern: &str) -> Option<(Vec<String>, bool)> {
    regex_lite::Regex::new(pattern).unwrap_or_else(|e| panic!("{pattern}: {e}"));
    Prefilter::from_pattern(pattern).map(|p| {
        let mut n: Vec<String> = p.needles().map(str::to_string).collect();
        n.sort();
        (n, p.fold_case())
    })
}

fn some(list: &[&str], fold: bool) -> Option<(Vec<String>, bool)> {
    let mut n: Vec<String> = list.iter().map(|s| s.to_string()).collect();
    n.sort();
    Some((n, fold))
}

/// The regex and the prefilter agree that `h` may match (the regex does).
fn assert_passes(pattern: &str, h: &str) {
    let re = regex_lite::Regex::new(pattern).unwrap();
    assert!(re.is_match(h), "{pattern} should match {h:?}");
    if let Some(p) = Prefilter::from_pattern(pattern) {
        assert!(p.may_match(h), "{pattern}: prefilter refused {h:?}");
    }
}

#[test]
fn benchmark_rule_needs_table_in_any_case() {
    let pattern = r"(?i)\b(drop|truncate)\s+table\b";
    assert_eq!(needles(pattern), some(&["table"], true));
    let p = Prefilter::from_pattern(pattern).unwrap();
    assert!(!p.may_match("quarterly report owners"));
    assert!(!p.may_match(""));
    assert!(p.may_match("a tablespoon"));
    for h in ["DROP TABLE users", "x; Truncate\tTaBlE t", "drop  table"] {
        assert_passes(pattern, h);
    }
}

#[test]
fn case_sensitive_without_the_i_flag() {
    assert_eq!(needles("drop table"), some(&["drop table"], false));
    let p = Prefilter::from_pattern("drop table").unwrap();
    assert!(!p.may_match("DROP TABLE"));
    assert!(p.may_match("xdrop tabley"));
}

#[test]
fn the_i_flag_anywhere_folds_every_literal() {
    // Scope is ignored on purpose: folding everything only weakens the filter.
    assert_eq!(needles("ab(?i)cd"), some(&["abcd"], true));
    assert_eq!(needles("(?i:ab)cd"), some(&["abcd"], true));
    assert_eq!(needles("(ab(?i))cd"), some(&["abcd"], true));
    assert_eq!(needles("x(?i)|yz"), some(&["x", "yz"], true));
    assert_passes("(?i:ab)cd", "ABcd");
    assert_passes("ab(?i)cd", "abCD");
    assert_passes("x(?i)|yz", "YZ");
    assert_passes("(?i)SELECT", "select");
}

#[test]
fn optional_and_empty_branches_require_nothing() {
    assert_eq!(needles("a|"), None);
    assert_eq!(needles("|a"), None);
    assert_eq!(needles("x*"), None);
    assert_eq!(needles("x?"), None);
    assert_eq!(needles("(abc){0,3}"), None);
    assert_eq!(needles("a|."), None);
    assert_eq!(needles(r"a|\d"), None);
    assert_eq!(needles("(?i)"), None);
    assert_eq!(needles("^$"), None);
    assert_eq!(needles(r"\b"), None);
    assert_eq!(needles("()"), None);
}

#[test]
fn concatenations_build_runs_and_keep_the_best() {
    assert_eq!(needles("(ab)?c"), some(&["c"], false));
    assert_eq!(needles("colou?r"), some(&["color", "colour"], false));
    assert_eq!(needles("((a|b)c)d"), some(&["acd", "bcd"], false));
    assert_eq!(needles("(a|)b"), some(&["b"], false));
    assert_eq!(needles(r"ab\d+cde"), some(&["cde"], false));
    assert_eq!(needles("^abc$"), some(&["abc"], false));
    assert_eq!(needles(r"\bword\b"), some(&["word"], false));
    assert_eq!(needles("a{0}b"), some(&["b"], false));
    assert_eq!(needles("(ab){1}c"), some(&["abc"], false));
    assert_eq!(needles("(ab){0,1}c"), some(&["c"], false));
    assert_eq!(needles("x(ab){2,5}"), some(&["ab"], false));
    assert_eq!(needles("(ab)+"), some(&["ab"], false));
    assert_eq!(needles("(ab)+?c"), some(&["ab"], false));
    assert_eq!(needles("a|bc"), some(&["a", "bc"], false));
    assert_eq!(
        needles("(foo|bar)(baz|qux)"),
        some(&["barbaz", "barqux", "foobaz", "fooqux"], false)
    );
    assert_passes("(ab){0,1}c", "c");
    assert_passes("x(ab){2,5}", "xabab");
}

#[test]
fn nested_groups_and_alternations() {
    assert_eq!(needles("(?:a(?:b|c))+d"), some(&["ab", "ac"], false));
    assert_eq!(needles("((((x))))y"), some(&["xy"], false));
    assert_eq!(needles("(a|(b|(c|)))z"), some(&["z"], false));
    assert_eq!(needles("(a|(b|(c|d)))"), some(&["a", "b", "c", "d"], false));
    assert_passes("(a|(b|(c|)))z", "z");
}

#[test]
fn escapes() {
    assert_eq!(needles(r"a\.b"), some(&["a.b"], false));
    assert_eq!(needles(r"a\\b"), some(&["a\\b"], false));
    assert_eq!(needles(r"\(x\)"), some(&["(x)"], false));
    assert_eq!(
        needles(r"\*\+\?\|\[\]\{\}\^\$"),
        some(&["*+?|[]{}^$"], false)
    );
    assert_eq!(needles(r"a\tb\n"), some(&["a\tb\n"], false));
    assert_eq!(needles(r"x\%y"), some(&["x%y"], false));
    assert_passes(r"a\.b", "xa.by");
    assert_passes(r"a\\b", "a\\b");
    // Not understood: no prefilter, the regex always runs.
    assert_eq!(needles(r"\x61bc"), None);
    assert_eq!(needles(r"\u{61}bc"), None);
    assert_eq!(needles(r"\U00000061bc"), None);
    assert_eq!(needles(r"abc\ d"), None);
    assert_eq!(needles(r"\b{start}abc"), None);
    assert_eq!(needles(r"\b{2}abc"), None);
    // `\<` and `\>` are word boundaries, not literals.
    assert_eq!(needles(r"\<ab\>"), some(&["ab"], false));
    assert_passes(r"\<ab\>", "x ab y");
    // Unknown to regex-lite itself (so never reaches the analysis).
    assert!(Prefilter::from_pattern(r"\Qab\E").is_none());
    assert!(Prefilter::from_pattern(r"\1").is_none());
}

#[test]
fn flags_other_than_i_and_other_groups_give_no_prefilter() {
    for pattern in [
        "(?x)a b",
        "(?m)^ab",
        "(?s)a.b",
        "(?U)ab",
        "(?-i)ab",
        "(?i-m)ab",
        "(?im)ab",
        "(?u)ab",
        "(?R)ab",
        "(?x:a b)",
        "(?P<n>ab)",
        "(?<n>ab)",
    ] {
        assert_eq!(needles(pattern), None, "{pattern}");
    }
}

#[test]
fn unicode_and_control_characters_give_no_prefilter() {
    assert_eq!(needles("café"), None);
    assert_eq!(needles("(?i)straße"), None);
    assert_eq!(needles("a[é]b"), None);
    assert_eq!(needles("a\tb"), None);
    assert_eq!(needles("a\nb"), None);
}

#[test]
fn classes_are_atoms_without_literals() {
    assert_eq!(needles("[Dd]rop"), some(&["rop"], false));
    assert_eq!(needles("(?i)[a-z]+table"), some(&["table"], true));
    assert_eq!(needles("[^a]bc"), some(&["bc"], false));
    assert_eq!(needles(r"x[\]a]yz"), some(&["yz"], false));
    assert_eq!(needles("[-a]bc"), some(&["bc"], false));
    assert_eq!(needles("[a-]bc"), some(&["bc"], false));
    assert_eq!(needles("[|(]bc"), some(&["bc"], false));
    assert_eq!(needles(r"[\d\s.]bc"), some(&["bc"], false));
    assert_eq!(needles(r"[(?i)]ABC"), some(&["ABC"], false));
    assert_passes("[Dd]rop", "Drop");
    assert_passes("(?i)[a-z]+table", "XTABLE");
    assert_passes(r"[(?i)]ABC", "iABC");
    // Unsure of where the class ends: no prefilter.
    assert_eq!(needles("[]a]bc"), None);
    assert_eq!(needles("[^]a]bc"), None);
    assert_eq!(needles("[[:alpha:]]bc"), None);
    assert_eq!(needles(r"[\x41]bc"), None);
}

#[test]
fn stray_closers_and_repeated_repetitions() {
    assert_passes("a]b", "a]b");
    assert_passes("a}b", "a}b");
    // regex-lite applies a repetition to the last piece; `(?i)` is none.
    assert_eq!(needles("a(?i)*b"), some(&["b"], true));
    assert_passes("a(?i)*b", "b");
    assert_eq!(needles("ab**"), some(&["a"], false));
    assert_passes("ab**", "a");
    assert_eq!(needles("ab??c"), some(&["abc", "ac"], false));
    assert_eq!(needles("(ab){1}{0,1}c"), some(&["c"], false));
    assert_eq!(needles("a{2}+"), some(&["a"], false));
}

#[test]
fn long_literals_and_large_alternations() {
    let long = "a".repeat(100);
    let (n, _) = needles(&long).unwrap();
    assert_eq!(n, vec!["a".repeat(64)]);
    assert_passes(&long, &long);
    let words: Vec<String> = (0..40).map(|i| format!("w{i}x")).collect();
    assert_eq!(needles(&words.join("|")), None);
    let few: Vec<String> = (0..20).map(|i| format!("w{i}x")).collect();
    assert!(needles(&few.join("|")).is_some());
    // Deep nesting: given up.
    let deep = format!("{}a{}", "(".repeat(40), ")".repeat(40));
    assert_eq!(needles(&deep), None);
}

/// The analysis relies on regex-lite folding ASCII letters only.
#[test]
fn regex_lite_folds_ascii_only() {
    for (pattern, hay) in [
        ("(?i)k", "\u{212A}"),
        ("(?i)s", "\u{17F}"),
        ("(?i)i", "\u{130}"),
    ] {
        let re = regex_lite::Regex::new(pattern).unwrap();
        assert!(
            !re.is_match(hay),
            "{pattern} matches {hay}: the prefilter's case folding is wrong"
        );
    }
}

/// A tiny xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn word(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len())]
    }
}

/// A random pattern as a tree that can both print itself and produce
/// strings it probably matches.
enum Re {
    /// Printed text, and the strings it may stand for.
    Atom(String, Vec<String>),
    /// `(?i)`.
    FlagI,
    Group(&'static str, Box<Re>),
    Alt(Vec<Re>),
    Cat(Vec<Re>),
    Rep(Box<Re>, String, u32, u32),
}

const LITERALS: &[&str] = &[
    "a", "b", "c", "A", "B", "k", "K", "s", "S", "x", " ", "-", "#", "&", "~", "_", "0",
];
const ESCAPES: &[(&str, &str)] = &[
    (r"\.", "."),
    (r"\\", "\\"),
    (r"\(", "("),
    (r"\*", "*"),
    (r"\|", "|"),
    (r"\-", "-"),
    (r"\t", "\t"),
    (r"\n", "\n"),
    (r"\]", "]"),
];

const PERL: &[(&str, &[&str])] = &[
    (r"\d", &["0", "7"]),
    (r"\s", &[" ", "\t", "\n"]),
    (r"\w", &["a", "Z", "_", "3"]),
    (r"\W", &[" ", "-", "é"]),
    (r"\S", &["a", "é"]),
    (".", &["a", "K", "\u{212A}", "é", " "]),
];
const ASSERTIONS: &[&str] = &[r"\b", r"\B", "^", "$", r"\A", r"\z", r"\<", r"\>"];
const CLASSES: &[(&str, &[&str])] = &[
    ("[ab]", &["a", "b"]),
    ("[^a]", &["b", "A", "é"]),
    ("[a-c]", &["a", "c"]),
    ("[A-Z]", &["A", "K"]),
    ("[-k]", &["-", "k"]),
    (r"[\]s]", &["]", "s"]),
    ("[.|]", &[".", "|"]),
    (r"[\dk]", &["1", "k"]),
];
/// Outside the subset: the analysis must give up (or stay sound).
const UNSUPPORTED: &[(&str, &str)] = &[
    (r"\x61", "a"),
    ("é", "é"),
    ("(?x) ", ""),
    ("(?m)", ""),
    ("(?-i)", ""),
    (r"\b{start}", ""),
    ("[[:alpha:]]", "q"),
    ("(?P<n>k)", "k"),
    (r"\u{212A}", "\u{212A}"),
];
const WORDS: &[&str] = &["ab", "kA", "sss", "Tab"];

fn atom(rng: &mut Rng) -> Re {
    let s = |t: &str| t.to_string();
    let v = |ts: &[&str]| ts.iter().map(|t| t.to_string()).collect::<Vec<_>>();
    match rng.below(20) {
        0..=8 => {
            let l = rng.word(LITERALS);
            Re::Atom(s(l), vec![s(l)])
        }
        9 => {
            let (p, m) = rng.pick(ESCAPES);
            Re::Atom(s(p), vec![s(m)])
        }
        10 | 11 => {
            let (p, m) = rng.pick(PERL);
            Re::Atom(s(p), v(m))
        }
        12 => Re::Atom(s(rng.word(ASSERTIONS)), vec![String::new()]),
        13 => {
            let (p, m) = rng.pick(CLASSES);
            Re::Atom(s(p), v(m))
        }
        14 => Re::FlagI,
        15 => Re::Atom(s("]"), vec![s("]")]),
        16 => {
            let (p, m) = rng.pick(UNSUPPORTED);
            Re::Atom(s(p), vec![s(m)])
        }
        _ => {
            let l = rng.word(WORDS);
            Re::Atom(s(l), vec![s(l)])
        }
    }
}

/// Operators with the counts the sampler uses (`*`, `+`, `{1,}` capped).
const REPETITIONS: &[(&str, u32, u32)] = &[
    ("?", 0, 1),
    ("*", 0, 2),
    ("+", 1, 3),
    ("{0}", 0, 0),
    ("{1}", 1, 1),
    ("{2}", 2, 2),
    ("{0,2}", 0, 2),
    ("{1,}", 1, 3),
    ("{2,3}", 2, 3),
];
const GROUPS: &[&str] = &["(", "(?:", "(?i:"];

fn cat(rng: &mut Rng, depth: u32) -> Re {
    let n = rng.below(5);
    let mut items = Vec::new();
    for _ in 0..n {
        let piece = if depth < 3 && rng.chance(20) {
            let kind = rng.word(GROUPS);
            Re::Group(kind, Box::new(alt(rng, depth + 1)))
        } else {
            atom(rng)
        };
        let piece = if !matches!(piece, Re::FlagI) && rng.chance(30) {
            let (op, min, max) = rng.pick(REPETITIONS);
            let lazy = if rng.chance(30) { "?" } else { "" };
            Re::Rep(Box::new(piece), format!("{op}{lazy}"), *min, *max)
        } else {
            piece
        };
        items.push(piece);
    }
    Re::Cat(items)
}

fn alt(rng: &mut Rng, depth: u32) -> Re {
    let most = if rng.chance(50) { 1 } else { 3 };
    let n = 1 + rng.below(most);
    Re::Alt((0..n).map(|_| cat(rng, depth)).collect())
}

impl Re {
    fn print(&self, out: &mut String) {
        match self {
            Re::Atom(p, _) => out.push_str(p),
            Re::FlagI => out.push_str("(?i)"),
            Re::Group(open, inner) => {
                out.push_str(open);
                inner.print(out);
                out.push(')');
            }
            Re::Alt(branches) => {
                for (i, b) in branches.iter().enumerate() {
                    if i > 0 {
                        out.push('|');
                    }
                    b.print(out);
                }
            }
            Re::Cat(items) => items.iter().for_each(|i| i.print(out)),
            Re::Rep(sub, op, _, _) => {
                // A repetition of a concatenation needs a group to print.
                sub.print(out);
                out.push_str(op);
            }
        }
    }

    /// A string this pattern probably matches, letters in random case.
    fn sample(&self, rng: &mut Rng, out: &mut String) {
        match self {
            Re::Atom(_, choices) => {
                let c = rng.pick(choices);
                for ch in c.chars() {
                    if rng.chance(30) {
                        out.push(ch.to_ascii_uppercase());
                    } else if rng.chance(30) {
                        out.push(ch.to_ascii_lowercase());
                    } else {
                        out.push(ch);
                    }
                }
            }
            Re::FlagI => {}
            Re::Group(_, inner) => inner.sample(rng, out),
            Re::Alt(branches) => rng.pick(branches).sample(rng, out),
            Re::Cat(items) => items.iter().for_each(|i| i.sample(rng, out)),
            Re::Rep(sub, _, min, max) => {
                let n = min + rng.below((max - min + 1) as usize) as u32;
                for _ in 0..n {
                    sub.sample(rng, out);
                }
            }
        }
    }
}

const NOISE: &[&str] = &[
    "a", "B", "k", "\u{212A}", "\u{17F}", "é", " ", "\n", "_", "-", "x", "9", "ab", "KS",
];

/// Noise around (and sometimes inside) a sampled match.
fn noise(rng: &mut Rng, out: &mut String) {
    for _ in 0..rng.below(6) {
        let piece = rng.word(NOISE);
        out.push_str(piece);
    }
}

/// Differential check over `cases` random patterns: whenever regex-lite
/// matches a haystack, the prefilter lets it through. Returns counts
/// (patterns with a prefilter, haystacks matched under one, refused).
fn differential(seed: u64, cases: usize) -> (usize, usize, usize) {
    let mut rng = Rng(seed);
    let (mut filtered, mut matched, mut refused) = (0, 0, 0);
    for _ in 0..cases {
        let tree = alt(&mut rng, 0);
        let mut pattern = String::new();
        tree.print(&mut pattern);
        let Ok(re) = regex_lite::Regex::new(&pattern) else {
            continue;
        };
        let Some(pf) = Prefilter::from_pattern(&pattern) else {
            continue;
        };
        filtered += 1;
        for _ in 0..24 {
            let mut h = String::new();
            noise(&mut rng, &mut h);
            tree.sample(&mut rng, &mut h);
            if rng.chance(30) {
                noise(&mut rng, &mut h);
                tree.sample(&mut rng, &mut h);
            }
            noise(&mut rng, &mut h);
            let is_match = re.is_match(&h);
            let passes = pf.may_match(&h);
            assert!(
                !is_match || passes,
                "unsound prefilter: pattern {pattern:?} matches {h:?} but the prefilter ({pf:?}) refused it"
            );
            matched += usize::from(is_match);
            refused += usize::from(!passes);
        }
    }
    (filtered, matched, refused)
}

#[test]
fn differential_against_regex_lite() {
    let mut totals = (0, 0, 0);
    for seed in 1..=8u64 {
        let (f, m, r) = differential(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15), 1500);
        totals = (totals.0 + f, totals.1 + m, totals.2 + r);
    }
    // The check means something: many patterns had a prefilter, many
    // haystacks matched under one, and the prefilter did refuse some.
    let (filtered, matched, refused) = totals;
    println!("patterns with a prefilter, haystacks matched, refused: {totals:?}");
    assert!(filtered > 3000, "{totals:?}");
    assert!(matched > 20000, "{totals:?}");
    assert!(refused > 5000, "{totals:?}");
}
