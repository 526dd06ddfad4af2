//! A literal prefilter for the `regex` condition operator.
//!
//! regex-lite runs every search in its PikeVM: ~9k instructions natively for
//! the benchmark's `(?i)\b(drop|truncate)\s+table\b` on a 23-byte value, even
//! though most values a rule sees do not contain the words the pattern needs.
//! At configure time this module derives from the pattern a set of literal
//! strings such that **every** match of the regex contains at least one of
//! them; a value that contains none cannot match, so the regex need not run.
//!
//! This is a security component: a prefilter that says "cannot match" when
//! the regex would match turns a `deny_if` into an allow. So the analysis
//! reads only a small subset of regex-lite's syntax that it understands
//! exactly, and on anything else gives no prefilter (the regex always runs):
//!
//! * the pattern is ASCII;
//! * literals: letters, digits, space, punctuation that is not a
//!   metacharacter, escaped punctuation (`\.`, `\\`, `\(`; not `\<`, `\>`),
//!   and `\t \n \r \f \v \a`;
//! * atoms that match some character but give no literal: `.`, `\d \s \w`
//!   and their negations, bracket classes without nesting, POSIX classes or a
//!   leading `]`, and the stray `]` and `}` (literal in regex-lite);
//! * empty-width assertions: `^ $ \A \z \b \B \< \>` (not `\b{...}`);
//! * groups `(...)`, `(?:...)`, `(?i:...)`, the directive `(?i)`, `|`;
//! * repetitions `? * + {n} {n,} {n,m}`, greedy or lazy.
//!
//! Not understood, so no prefilter: other flags (`(?x)` changes what spaces
//! mean, `(?m)`, `(?s)`, `(?U)`, `(?-i)`, ...), named groups, `\x..`/`\u..`
//! escapes, `\b{...}`, raw control or non-ASCII characters, deep nesting.
//!
//! Case: if the pattern enables `i` anywhere, every literal is compared
//! ASCII-case-insensitively, whatever the flag's scope (a case-insensitive
//! search finds everything a case-sensitive one does, so ignoring the scope
//! only weakens the filter). regex-lite folds ASCII letters only (its
//! documentation: "Case insensitive searching is limited to ASCII case
//! insensitivity"; `(?i)k` does not match the Kelvin sign), the literals
//! are ASCII and an ASCII byte in UTF-8 is always that character, so a byte
//! search finds every occurrence the regex could match.

/// Strings in an exact set or a requirement (bounded by [`MAX_SET`]).
type Set = Vec<Vec<u8>>;

/// At most this many strings in a set; a larger one is given up (unioned
/// alternations) or cut short (concatenation runs).
const MAX_SET: usize = 32;
/// At most this many bytes in one string of an exact set.
const MAX_LEN: usize = 64;
/// Groups nested deeper than this are not analysed.
const MAX_DEPTH: usize = 32;

/// Literals at least one of which every match of a regex contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefilter {
    /// Non-empty; lower-case when `fold_case`.
    needles: Vec<Vec<u8>>,
    fold_case: bool,
}

impl Prefilter {
    /// The prefilter of a regex-lite `pattern` (one that compiles), or `None`
    /// when the pattern uses syntax outside the subset or no literal is
    /// certainly required (`a|`, `x*`, `\d+`).
    pub fn from_pattern(pattern: &str) -> Option<Prefilter> {
        if !pattern.is_ascii() {
            return None;
        }
        let mut parser = Parser {
            bytes: pattern.as_bytes(),
            pos: 0,
            fold_case: false,
        };
        let info = parser.alternation(0)?;
        // A `)` with no group open stops `alternation` early.
        if parser.pos != parser.bytes.len() {
            return None;
        }
        let mut needles = required_of(&info)?;
        if parser.fold_case {
            for n in &mut needles {
                n.make_ascii_lowercase();
            }
        }
        let needles = minimal(needles);
        // Never "contains one of nothing": that would refuse every value.
        if needles.is_empty() || needles.iter().any(Vec::is_empty) {
            return None;
        }
        Some(Prefilter {
            needles,
            fold_case: parser.fold_case,
        })
    }

    /// False only when `haystack` contains none of the literals: then the
    /// regex cannot match it.
    pub fn may_match(&self, haystack: &str) -> bool {
        let hay = haystack.as_bytes();
        self.needles
            .iter()
            .any(|n| contains(hay, n, self.fold_case))
    }

    /// The literals (lower-case when compared case-insensitively).
    pub fn needles(&self) -> impl Iterator<Item = &str> {
        self.needles
            .iter()
            .filter_map(|n| std::str::from_utf8(n).ok())
    }

    /// Whether the literals are compared ASCII-case-insensitively.
    pub fn fold_case(&self) -> bool {
        self.fold_case
    }
}

/// Whether `hay` contains `needle` (ASCII-case-insensitively with `fold`;
/// `needle` is then lower-case). The empty needle is in every haystack.
fn contains(hay: &[u8], needle: &[u8], fold: bool) -> bool {
    let Some(&first) = needle.first() else {
        return true;
    };
    // The first byte is checked alone first: most windows fail there.
    if fold {
        hay.windows(needle.len()).any(|w| {
            w.first().is_some_and(|b| b.to_ascii_lowercase() == first)
                && w.eq_ignore_ascii_case(needle)
        })
    } else {
        hay.windows(needle.len())
            .any(|w| w.first() == Some(&first) && w == needle)
    }
}

/// What the analysis knows about a piece of a pattern.
#[derive(Debug, Clone)]
struct Info {
    /// Every string the piece can match is in this set (it may hold more).
    exact: Option<Set>,
    /// Every match of the piece contains one of these non-empty strings.
    required: Option<Set>,
}

impl Info {
    /// An empty-width piece: an assertion, `()`, `x{0}`.
    fn empty() -> Info {
        Info {
            exact: Some(vec![Vec::new()]),
            required: None,
        }
    }

    /// A piece about which nothing is known (a class, `.`, `\d`).
    fn opaque() -> Info {
        Info {
            exact: None,
            required: None,
        }
    }

    fn literal(b: u8) -> Info {
        Info {
            exact: Some(vec![vec![b]]),
            required: Some(vec![vec![b]]),
        }
    }
}

/// `set` as a requirement: only if it is non-empty and has no empty string.
fn as_required(set: &Set) -> Option<Set> {
    (!set.is_empty() && set.iter().all(|s| !s.is_empty())).then(|| set.clone())
}

/// The best requirement a piece gives: its own, or its exact set.
fn required_of(info: &Info) -> Option<Set> {
    better(
        info.required.clone(),
        info.exact.as_ref().and_then(as_required),
    )
}

/// The more selective of two requirements: the longer shortest string, then
/// the fewer strings.
fn better(a: Option<Set>, b: Option<Set>) -> Option<Set> {
    fn score(s: &Set) -> (usize, std::cmp::Reverse<usize>) {
        let shortest = s.iter().map(Vec::len).min().unwrap_or(0);
        (shortest, std::cmp::Reverse(s.len()))
    }
    match (a, b) {
        (Some(a), Some(b)) => Some(if score(&b) > score(&a) { b } else { a }),
        (a, b) => a.or(b),
    }
}

/// Every string of `a` followed by every string of `b`, if within bounds.
fn product(a: &Set, b: &Set) -> Option<Set> {
    if a.len().checked_mul(b.len())? > MAX_SET {
        return None;
    }
    let mut out = Vec::new();
    for x in a {
        for y in b {
            if x.len() + y.len() > MAX_LEN {
                return None;
            }
            let mut s = x.clone();
            s.extend_from_slice(y);
            if !out.contains(&s) {
                out.push(s);
            }
        }
    }
    Some(out)
}

/// The strings of `a` and `b`, if within bounds.
fn union(mut a: Set, b: &Set) -> Option<Set> {
    for s in b {
        if !a.contains(s) {
            a.push(s.clone());
        }
    }
    (a.len() <= MAX_SET).then_some(a)
}

/// A concatenation: every match is a match of each piece in turn.
///
/// Adjacent pieces with exact sets form a run whose product is exact too
/// (`d`,`r`,`o`,`p` give `drop`); each run, and each piece's own
/// requirement, is a candidate, and the best one is the requirement.
fn concat(items: Vec<Info>) -> Info {
    let mut whole = Some(vec![Vec::new()]);
    let mut run: Set = vec![Vec::new()];
    let mut best = None;
    for item in items {
        best = better(best, required_of(&item));
        match &item.exact {
            Some(set) => {
                whole = whole.and_then(|w| product(&w, set));
                match product(&run, set) {
                    Some(p) => run = p,
                    None => {
                        // Too many or too long: keep what the run had, start anew.
                        best = better(best, as_required(&run));
                        run = set.clone();
                    }
                }
            }
            None => {
                whole = None;
                best = better(best, as_required(&run));
                run = vec![Vec::new()];
            }
        }
    }
    best = better(best, as_required(&run));
    Info {
        exact: whole,
        required: best,
    }
}

/// An alternation: every match is a match of one branch, so it contains
/// one of that branch's required strings; a branch without one (`a|`, `a|.`)
/// leaves the whole without one.
fn alternation(mut branches: Vec<Info>) -> Info {
    if branches.len() == 1 {
        if let Some(only) = branches.pop() {
            return only;
        }
    }
    let mut exact = Some(Vec::new());
    let mut required = Some(Vec::new());
    for b in &branches {
        exact = match (exact, &b.exact) {
            (Some(acc), Some(set)) => union(acc, set),
            _ => None,
        };
        required = match (required, required_of(b)) {
            (Some(acc), Some(set)) => union(acc, &set),
            _ => None,
        };
    }
    Info { exact, required }
}

/// `sub{min,max}`: with `min` 0 it may match nothing, so requires nothing;
/// otherwise each match contains a match of `sub`.
fn repeat(sub: Info, min: u32, max: Option<u32>) -> Info {
    if min == 0 {
        let exact = match max {
            Some(0) => Some(vec![Vec::new()]),
            Some(1) => sub.exact.and_then(|s| union(s, &vec![Vec::new()])),
            _ => None,
        };
        return Info {
            exact,
            required: None,
        };
    }
    Info {
        exact: if min == 1 && max == Some(1) {
            sub.exact.clone()
        } else {
            None
        },
        required: required_of(&sub),
    }
}

/// Drops duplicates and every needle that contains another one (finding
/// the shorter is implied by finding the longer).
fn minimal(needles: Set) -> Set {
    let implied = |i: usize, n: &Vec<u8>| {
        needles
            .iter()
            .enumerate()
            .any(|(j, o)| j != i && (o.len() < n.len() || j < i) && contains(n, o, false))
    };
    needles
        .iter()
        .enumerate()
        .filter(|&(i, n)| !implied(i, n))
        .map(|(_, n)| n.clone())
        .collect()
}

/// Metacharacters outside a class: never a literal when unescaped.
const META: &[u8] = b"\\.+*?()|[]{}^$";

/// A recursive-descent reader of the subset; every method returns `None`
/// for syntax it does not understand, and that gives no prefilter at all.
struct Parser<'p> {
    bytes: &'p [u8],
    pos: usize,
    /// Some `(?i)` or `(?i:` was seen.
    fold_case: bool,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    fn rest_starts_with(&self, s: &[u8]) -> bool {
        self.bytes.get(self.pos..).is_some_and(|r| r.starts_with(s))
    }

    /// Branches separated by `|`, up to a `)` (left for the caller) or the end.
    fn alternation(&mut self, depth: usize) -> Option<Info> {
        if depth > MAX_DEPTH {
            return None;
        }
        let mut branches = Vec::new();
        let mut items: Vec<Info> = Vec::new();
        while let Some(b) = self.peek() {
            match b {
                b')' => break,
                b'|' => {
                    self.pos += 1;
                    branches.push(concat(std::mem::take(&mut items)));
                }
                // As in regex-lite, a repetition applies to the last piece
                // (a `(?i)` directive is no piece); none is an error.
                b'?' | b'*' | b'+' | b'{' => {
                    let sub = items.pop()?;
                    let repeated = self.repetition(sub)?;
                    items.push(repeated);
                }
                b'(' => {
                    if let Some(group) = self.group(depth)? {
                        items.push(group);
                    }
                }
                b'[' => {
                    self.class()?;
                    items.push(Info::opaque());
                }
                b'\\' => {
                    let escaped = self.escape()?;
                    items.push(escaped);
                }
                b'.' | b']' | b'}' => {
                    self.pos += 1;
                    items.push(Info::opaque());
                }
                b'^' | b'$' => {
                    self.pos += 1;
                    items.push(Info::empty());
                }
                b if b == b' ' || b.is_ascii_alphanumeric() => {
                    self.pos += 1;
                    items.push(Info::literal(b));
                }
                b if b.is_ascii_punctuation() && !META.contains(&b) => {
                    self.pos += 1;
                    items.push(Info::literal(b));
                }
                _ => return None,
            }
        }
        branches.push(concat(items));
        Some(alternation(branches))
    }

    /// A group at `(`: `Some(None)` for the `(?i)` directive (no piece).
    fn group(&mut self, depth: usize) -> Option<Option<Info>> {
        self.pos += 1;
        if self.rest_starts_with(b"?i)") {
            self.pos += 3;
            self.fold_case = true;
            return Some(None);
        }
        if self.rest_starts_with(b"?i:") {
            self.pos += 3;
            self.fold_case = true;
        } else if self.rest_starts_with(b"?:") {
            self.pos += 2;
        } else if self.peek() == Some(b'?') {
            return None;
        }
        let inner = self.alternation(depth + 1)?;
        if self.peek() != Some(b')') {
            return None;
        }
        self.pos += 1;
        Some(Some(inner))
    }

    /// A repetition operator at `?`, `*`, `+` or `{`, with its lazy `?`.
    fn repetition(&mut self, sub: Info) -> Option<Info> {
        let (min, max) = match self.peek()? {
            b'?' => (0, Some(1)),
            b'*' => (0, None),
            b'+' => (1, None),
            b'{' => {
                self.pos += 1;
                let min = self.decimal()?;
                let max = if self.peek() == Some(b',') {
                    self.pos += 1;
                    if self.peek() == Some(b'}') {
                        None
                    } else {
                        Some(self.decimal()?)
                    }
                } else {
                    Some(min)
                };
                if self.peek() != Some(b'}') || max.is_some_and(|m| m < min) {
                    return None;
                }
                (min, max)
            }
            _ => return None,
        };
        self.pos += 1;
        if self.peek() == Some(b'?') {
            self.pos += 1;
        }
        Some(repeat(sub, min, max))
    }

    /// One or more ASCII digits (no spaces: regex-lite allows them, this
    /// reader does not need to).
    fn decimal(&mut self) -> Option<u32> {
        let start = self.pos;
        let mut n: u32 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            n = n.checked_mul(10)?.checked_add(u32::from(d - b'0'))?;
            self.pos += 1;
        }
        (self.pos > start).then_some(n)
    }

    /// An escape at `\`.
    fn escape(&mut self) -> Option<Info> {
        let c = self.peek_at(1)?;
        self.pos += 2;
        Some(match c {
            b'd' | b's' | b'w' | b'D' | b'S' | b'W' => Info::opaque(),
            // `\b{5}` repeats `\b`, `\b{start}` is another assertion.
            b'b' if self.peek() == Some(b'{') => return None,
            b'b' | b'B' | b'A' | b'z' | b'<' | b'>' => Info::empty(),
            b't' => Info::literal(b'\t'),
            b'n' => Info::literal(b'\n'),
            b'r' => Info::literal(b'\r'),
            b'f' => Info::literal(0x0C),
            b'v' => Info::literal(0x0B),
            b'a' => Info::literal(0x07),
            c if c.is_ascii_punctuation() => Info::literal(c),
            _ => return None,
        })
    }

    /// A bracket class at `[`, skipped to its closing `]`. Refused: a `]`
    /// first (a literal in regex-lite), any `[` inside (POSIX classes,
    /// nesting), escapes other than punctuation and `\d\s\w\t\n\r\f\v\a`
    /// (and their capitals where they are classes), raw control characters.
    fn class(&mut self) -> Option<()> {
        self.pos += 1;
        if self.peek() == Some(b'^') {
            self.pos += 1;
        }
        let mut first = true;
        loop {
            match self.peek()? {
                b']' if !first => {
                    self.pos += 1;
                    return Some(());
                }
                b']' | b'[' => return None,
                b'\\' => {
                    let c = self.peek_at(1)?;
                    let known = (c.is_ascii_punctuation() && c != b'<' && c != b'>')
                        || b"dswDSWtnrfva".contains(&c);
                    if !known {
                        return None;
                    }
                    self.pos += 2;
                }
                b if b == b' ' || b.is_ascii_graphic() => self.pos += 1,
                _ => return None,
            }
            first = false;
        }
    }
}

#[cfg(test)]
mod tests;
