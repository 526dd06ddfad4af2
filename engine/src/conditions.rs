//! Conditions on a tool call's arguments (`{"path", "op", "value"}`).
//!
//! Paths and regexes are compiled at configure time; evaluation walks the
//! already-parsed arguments with no allocation beyond regex matching.
//!
//! Meaning, chosen to fail closed:
//! * A **missing path** is definite: the value is absent, so `eq`, `in`,
//!   `lt`, `lte`, `gt`, `gte`, `regex`, `contains` are false; `neq` and
//!   `not_in` are true; `exists` is true only for `"value": false`.
//! * A **type mismatch** (a number compared with `lt` against a string, a
//!   regex on a number, `contains` on a number) is **unknown**: a `deny_if`
//!   rule whose other conditions hold refuses the call, and a `require` rule
//!   is not satisfied. An argument of an unexpected type never slips through.
//! * `eq`/`neq`/`in`/`not_in` compare JSON values: numbers numerically
//!   (`1` equals `1.0`), strings exactly (no case folding or normalisation),
//!   arrays and objects structurally.

use crate::caller::{CallerPath, CallerView};
use crate::json::{Node, Value};
use crate::path_steps::{parse_steps, resolve_steps, Step};
use crate::regex_prefilter::Prefilter;

/// A compiled `args.a.b[0]` path (the `args` prefix removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArgPath {
    pub text: String,
    pub steps: Vec<Step>,
}

impl ArgPath {
    /// Parses `args`, `args.a`, `args.a.b[0]`, `args["odd key"]`.
    pub fn parse(text: &str) -> Result<ArgPath, String> {
        let Some(rest) = text.strip_prefix("args") else {
            return Err("a path must start with \"args\"".to_string());
        };
        Ok(ArgPath {
            text: text.to_string(),
            steps: parse_steps(rest)?,
        })
    }

    /// The node at this path inside `args`, if present.
    pub fn resolve<'d, 'a>(&self, args: Option<&'d Node<'a>>) -> Option<&'d Node<'a>> {
        resolve_steps(args, &self.steps)
    }

    /// Would the path resolve if keys were matched case-insensitively (as
    /// Go's `encoding/json` matches struct fields)? Asked only when it does
    /// not resolve exactly: then `{"Action":"cancel"}` is what a folding
    /// server reads as `action`, and the condition cannot be judged.
    fn resolves_by_folding(&self, args: Option<&Node<'_>>) -> bool {
        let Some(mut node) = args else {
            return false;
        };
        for step in &self.steps {
            let next = match step {
                Step::Key(k) => node.get(k).or_else(|| {
                    node.as_object()?
                        .iter()
                        .find(|(key, _)| crate::key_folding::fold_eq(key, k))
                        .map(|(_, v)| v)
                }),
                Step::Index(i) => node.as_array().and_then(|items| items.get(*i)),
            };
            match next {
                Some(n) => node = n,
                None => return false,
            }
        }
        true
    }
}

/// What a condition reads: the call's arguments or who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    Args(ArgPath),
    /// `caller.claims...`, `caller.principal`, `caller.header.<name>`.
    Caller {
        text: String,
        path: CallerPath,
    },
}

impl Path {
    /// Parses an `args...` or `caller...` path.
    pub fn parse(text: &str) -> Result<Path, String> {
        match text.strip_prefix("caller") {
            Some(rest) => Ok(Path::Caller {
                text: text.to_string(),
                path: CallerPath::parse(rest)?,
            }),
            None if text.starts_with("args") => ArgPath::parse(text).map(Path::Args),
            None => Err("a path must start with \"args\" or \"caller\"".to_string()),
        }
    }

    pub fn text(&self) -> &str {
        match self {
            Path::Args(p) => &p.text,
            Path::Caller { text, .. } => text,
        }
    }

    /// The caller part this path reads, if any.
    pub fn caller(&self) -> Option<&CallerPath> {
        match self {
            Path::Args(_) => None,
            Path::Caller { path, .. } => Some(path),
        }
    }
}

/// What conditions are evaluated against: one call's arguments and its caller.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'d, 'a> {
    pub args: Option<&'d Node<'a>>,
    pub caller: &'d CallerView<'a>,
}

/// A JSON value owned by the policy (the `value` of a condition).
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Literal>),
    Object(Vec<(String, Literal)>),
}

impl Literal {
    pub fn from_node(node: &Node<'_>) -> Literal {
        match &node.value {
            Value::Null => Literal::Null,
            Value::Bool(b) => Literal::Bool(*b),
            Value::Number(_) => Literal::Number(node.as_f64().unwrap_or(f64::NAN)),
            Value::String(s) => Literal::String(s.to_string()),
            Value::Array(items) => Literal::Array(items.iter().map(Literal::from_node).collect()),
            Value::Object(members) => Literal::Object(
                members
                    .iter()
                    .map(|(k, v)| (k.to_string(), Literal::from_node(v)))
                    .collect(),
            ),
        }
    }

    /// JSON equality with a request value.
    fn equals(&self, node: &Node<'_>) -> bool {
        match (self, &node.value) {
            (Literal::Null, Value::Null) => true,
            (Literal::Bool(a), Value::Bool(b)) => a == b,
            (Literal::Number(a), Value::Number(_)) => node.as_f64() == Some(*a),
            (Literal::String(a), Value::String(b)) => a == b,
            (Literal::Array(a), Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.equals(y))
            }
            (Literal::Object(a), Value::Object(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.iter().any(|(bk, bv)| bk == k && v.equals(bv)))
            }
            _ => false,
        }
    }
}

/// A compiled `regex` value: the regex and, when the pattern is simple
/// enough to be sure of it, the literals every match contains
/// ([`Prefilter`]): a value with none of them is not searched.
#[derive(Debug, Clone)]
pub struct Pattern {
    regex: regex_lite::Regex,
    prefilter: Option<Prefilter>,
}

impl Pattern {
    /// Compiles `pattern` (size-bounded) and derives its prefilter.
    pub fn new(pattern: &str) -> Result<Pattern, regex_lite::Error> {
        // Bounded: regex-lite is a backtracking-free engine; the compiled
        // size is capped so per-call cost stays small.
        let regex = regex_lite::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .build()?;
        Ok(Pattern {
            prefilter: Prefilter::from_pattern(pattern),
            regex,
        })
    }

    /// The pattern's source text.
    pub fn as_str(&self) -> &str {
        self.regex.as_str()
    }

    /// The prefilter, if the analysis found one.
    pub fn prefilter(&self) -> Option<&Prefilter> {
        self.prefilter.as_ref()
    }

    /// Does the regex match somewhere in `s`? (The prefilter only skips
    /// searches that cannot match.)
    pub fn is_match(&self, s: &str) -> bool {
        if let Some(p) = &self.prefilter {
            if !p.may_match(s) {
                return false;
            }
        }
        self.regex.is_match(s)
    }
}

#[derive(Debug, Clone)]
pub enum Op {
    Eq(Literal),
    Neq(Literal),
    In(Vec<Literal>),
    NotIn(Vec<Literal>),
    Lt(f64),
    Lte(f64),
    Gt(f64),
    Gte(f64),
    Regex(Pattern),
    Contains(Literal),
    /// Negation of `contains` (a missing value contains nothing: true).
    NotContains(Literal),
    /// One whitespace-separated word of a string (an OAuth `scope` claim),
    /// or an element of an array of strings (`scp` as a list).
    ContainsWord(String),
    Exists(bool),
}

/// Equal meaning: regexes compare by their source text.
impl PartialEq for Op {
    fn eq(&self, other: &Op) -> bool {
        match (self, other) {
            (Op::Eq(a), Op::Eq(b))
            | (Op::Neq(a), Op::Neq(b))
            | (Op::Contains(a), Op::Contains(b)) => a == b,
            (Op::In(a), Op::In(b)) | (Op::NotIn(a), Op::NotIn(b)) => a == b,
            (Op::Lt(a), Op::Lt(b))
            | (Op::Lte(a), Op::Lte(b))
            | (Op::Gt(a), Op::Gt(b))
            | (Op::Gte(a), Op::Gte(b)) => a == b,
            (Op::Regex(a), Op::Regex(b)) => a.as_str() == b.as_str(),
            (Op::Exists(a), Op::Exists(b)) => a == b,
            _ => false,
        }
    }
}

impl Op {
    pub const NAMES: [&'static str; 13] = [
        "eq",
        "neq",
        "in",
        "not_in",
        "lt",
        "lte",
        "gt",
        "gte",
        "regex",
        "contains",
        "not_contains",
        "contains_word",
        "exists",
    ];

    /// Compiles operator `name` (one of [`Op::NAMES`]) with its `value`.
    /// `Err` says what the value should have been; the caller adds where.
    pub fn build(name: &str, value: &Node<'_>) -> Result<Op, String> {
        Ok(match name {
            "eq" => Op::Eq(Literal::from_node(value)),
            "neq" => Op::Neq(Literal::from_node(value)),
            "in" | "not_in" => {
                let items = value.as_array().ok_or("an array of values")?;
                let list = items.iter().map(Literal::from_node).collect();
                if name == "in" {
                    Op::In(list)
                } else {
                    Op::NotIn(list)
                }
            }
            "lt" | "lte" | "gt" | "gte" => {
                let x = value.as_f64().filter(|x| x.is_finite()).ok_or("a number")?;
                match name {
                    "lt" => Op::Lt(x),
                    "lte" => Op::Lte(x),
                    "gt" => Op::Gt(x),
                    _ => Op::Gte(x),
                }
            }
            "regex" => match value.as_str() {
                Some("") => return Err("a non-empty string".to_string()),
                Some(pattern) => Pattern::new(pattern)
                    .map(Op::Regex)
                    .map_err(|e| format!("a valid regular expression ({e})"))?,
                None => return Err("a string".to_string()),
            },
            "contains" => Op::Contains(Literal::from_node(value)),
            "not_contains" => Op::NotContains(Literal::from_node(value)),
            "contains_word" => {
                let word = value
                    .as_str()
                    .filter(|w| !w.is_empty() && !w.chars().any(char::is_whitespace))
                    .ok_or("one word: a non-empty string without spaces")?;
                Op::ContainsWord(word.to_string())
            }
            "exists" => match value.value {
                Value::Bool(b) => Op::Exists(b),
                _ => return Err("true or false".to_string()),
            },
            _ => return Err(format!("an operator, one of {}", Op::NAMES.join(", "))),
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub path: Path,
    pub op: Op,
}

/// The three-valued result of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    /// The argument has a type the operator cannot judge.
    Unknown,
}

fn truth(b: bool) -> Truth {
    if b {
        Truth::True
    } else {
        Truth::False
    }
}

impl Condition {
    pub fn eval(&self, facts: &Facts<'_, '_>) -> Truth {
        let found = match &self.path {
            Path::Args(p) => p.resolve(facts.args),
            Path::Caller { path, .. } => facts.caller.resolve(path),
        };
        let Some(node) = found else {
            // Arguments only: a server reads them, maybe case-insensitively.
            if let Path::Args(p) = &self.path {
                if p.resolves_by_folding(facts.args) {
                    return Truth::Unknown;
                }
            }
            return truth(matches!(
                self.op,
                Op::Neq(_) | Op::NotIn(_) | Op::NotContains(_) | Op::Exists(false)
            ));
        };
        match &self.op {
            Op::Exists(want) => truth(*want),
            Op::Eq(lit) => truth(lit.equals(node)),
            Op::Neq(lit) => truth(!lit.equals(node)),
            Op::In(list) => truth(list.iter().any(|l| l.equals(node))),
            Op::NotIn(list) => truth(!list.iter().any(|l| l.equals(node))),
            Op::Lt(x) => compare(node, |v| v < *x),
            Op::Lte(x) => compare(node, |v| v <= *x),
            Op::Gt(x) => compare(node, |v| v > *x),
            Op::Gte(x) => compare(node, |v| v >= *x),
            Op::Regex(re) => match node.as_str() {
                Some(s) => truth(re.is_match(s)),
                None => Truth::Unknown,
            },
            Op::Contains(lit) => contains(node, lit),
            Op::NotContains(lit) => match contains(node, lit) {
                Truth::True => Truth::False,
                Truth::False => Truth::True,
                Truth::Unknown => Truth::Unknown,
            },
            Op::ContainsWord(word) => match &node.value {
                Value::String(s) => truth(s.split_ascii_whitespace().any(|w| w == word)),
                Value::Array(items) => truth(items.iter().any(|i| i.as_str() == Some(word))),
                _ => Truth::Unknown,
            },
        }
    }
}

/// A substring of a string, or an element of an array.
fn contains(node: &Node<'_>, lit: &Literal) -> Truth {
    match (&node.value, lit) {
        (Value::String(s), Literal::String(needle)) => truth(s.contains(needle.as_str())),
        (Value::Array(items), _) => truth(items.iter().any(|i| lit.equals(i))),
        _ => Truth::Unknown,
    }
}

fn compare(node: &Node<'_>, f: impl Fn(f64) -> bool) -> Truth {
    match node.as_f64() {
        Some(v) if !v.is_nan() => truth(f(v)),
        _ => Truth::Unknown,
    }
}

/// Does a `deny_if` list hold? Only a definitely false condition clears it.
pub fn deny_if_holds(conds: &[Condition], facts: &Facts<'_, '_>) -> bool {
    conds.iter().all(|c| c.eval(facts) != Truth::False)
}

/// Is a `require` list satisfied? Every condition must be definitely true.
pub fn require_holds(conds: &[Condition], facts: &Facts<'_, '_>) -> bool {
    conds.iter().all(|c| c.eval(facts) == Truth::True)
}

/// Does a `when` list (classification) hold? Every condition definitely
/// true, or unknown (an odd type is classified as the rule says: fail closed
/// toward the more severe category the rule names).
pub fn when_holds(conds: &[Condition], facts: &Facts<'_, '_>) -> bool {
    deny_if_holds(conds, facts)
}

/// Whether every condition reads only `caller.*` (so its outcome is the same
/// for every call this caller makes, whatever the arguments).
pub fn only_caller(conds: &[Condition]) -> bool {
    conds.iter().all(|c| c.path.caller().is_some())
}
