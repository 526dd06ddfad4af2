//! Tool-name patterns: `*` matches any run of characters, possibly empty.
//!
//! MCP tool names cannot contain `*`, so a key with a `*` is unambiguously a
//! pattern. Matching is a prefix check, a suffix check and one left-to-right
//! substring search per middle segment: greedy leftmost matching is exact
//! for `*`-only globs, so there is no backtracking and the cost is linear in
//! the name.

/// A compiled pattern such as `delete_*`, `*_admin` or `db.*.drop`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    /// The pattern as written (the `tools` key or `hide` entry).
    pub text: String,
    /// The literal runs between stars: `a*b*c` is `["a", "b", "c"]`; the
    /// first is the required prefix, the last the required suffix.
    parts: Vec<String>,
}

impl Glob {
    /// Compiles `text`, which must contain a `*` and no `**` (two stars in a
    /// row mean the same as one; refusing them keeps one spelling per
    /// pattern, so precedence and overlap reports stay readable).
    pub fn parse(text: &str) -> Result<Glob, String> {
        if !text.contains('*') {
            return Err("not a pattern: it contains no '*'".to_string());
        }
        if text.contains("**") {
            return Err("\"**\" in a pattern: one '*' already matches any run of characters, write a single '*'".to_string());
        }
        Ok(Glob {
            text: text.to_string(),
            parts: text.split('*').map(str::to_string).collect(),
        })
    }

    /// How specific the pattern is: its number of literal (non-`*`)
    /// characters. The most specific matching pattern decides.
    pub fn specificity(&self) -> usize {
        self.parts.iter().map(|p| p.chars().count()).sum()
    }

    fn prefix(&self) -> &str {
        self.parts.first().map(String::as_str).unwrap_or("")
    }

    fn suffix(&self) -> &str {
        // `parse` guarantees at least one '*', so at least two parts.
        self.parts.last().map(String::as_str).unwrap_or("")
    }

    /// The literal runs strictly between the first and the last star.
    fn middle(&self) -> &[String] {
        let n = self.parts.len();
        self.parts.get(1..n.saturating_sub(1)).unwrap_or(&[])
    }

    /// Whether `name` matches, in time linear in `name.len()` (each middle
    /// segment is searched once, left to right, from where the previous one
    /// ended).
    pub fn matches(&self, name: &str) -> bool {
        let Some(rest) = name.strip_prefix(self.prefix()) else {
            return false;
        };
        let Some(mut rest) = rest.strip_suffix(self.suffix()) else {
            return false;
        };
        for segment in self.middle() {
            match rest.find(segment.as_str()) {
                Some(at) => match rest.get(at + segment.len()..) {
                    Some(after) => rest = after,
                    None => return false,
                },
                None => return false,
            }
        }
        true
    }

    /// A name both patterns match, or None when no name does.
    ///
    /// For `*`-only globs two patterns overlap exactly when their literal
    /// prefixes agree (one is a prefix of the other) and their literal
    /// suffixes agree (one is a suffix of the other): every matching name
    /// starts with both prefixes and ends with both suffixes, and once the
    /// common prefix and suffix are set aside one of the two patterns starts
    /// with `*` and one ends with `*`, which always leaves room for the
    /// other's literals (the witness built below).
    pub fn overlap(&self, other: &Glob) -> Option<String> {
        let (pa, pb) = (self.prefix(), other.prefix());
        let (sa, sb) = (self.suffix(), other.suffix());
        if !(pa.starts_with(pb) || pb.starts_with(pa)) || !(sa.ends_with(sb) || sb.ends_with(sa)) {
            return None;
        }
        let cut_front = pa.len().min(pb.len());
        let cut_back = sa.len().min(sb.len());
        // Each pattern with the common prefix and suffix set aside.
        let strip = |g: &Glob| -> Vec<String> {
            let mut parts = g.parts.clone();
            if let Some(first) = parts.first_mut() {
                *first = first.get(cut_front..).unwrap_or("").to_string();
            }
            if let Some(last) = parts.last_mut() {
                let keep = last.len().saturating_sub(cut_back);
                *last = last.get(..keep).unwrap_or("").to_string();
            }
            parts
        };
        let (a, b) = (strip(self), strip(other));
        let starts_star = |p: &[String]| p.first().is_some_and(String::is_empty);
        let ends_star = |p: &[String]| p.last().is_some_and(String::is_empty);
        // `x` starts and ends with '*': `y` with all of `x`'s literals in its
        // first star. `x` starts with '*' and `y` ends with '*': `y`'s
        // literals, then `x`'s.
        let inside = |x: &[String], y: &[String]| -> String {
            let (head, tail) = y
                .split_first()
                .map_or(("", &[][..]), |(h, t)| (h.as_str(), t));
            format!("{head}{}{}", x.concat(), tail.concat())
        };
        let middle = if starts_star(&a) && ends_star(&a) {
            inside(&a, &b)
        } else if starts_star(&b) && ends_star(&b) {
            inside(&b, &a)
        } else if starts_star(&a) && ends_star(&b) {
            format!("{}{}", b.concat(), a.concat())
        } else {
            format!("{}{}", a.concat(), b.concat())
        };
        let common_prefix = pa.get(..cut_front).unwrap_or("");
        let common_suffix = sa.get(sa.len().saturating_sub(cut_back)..).unwrap_or("");
        Some(format!("{common_prefix}{middle}{common_suffix}"))
    }
}

#[cfg(test)]
mod tests;
