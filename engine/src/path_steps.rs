//! The steps of a JSON path below its root (`.a`, `.b[0]`, `["odd key"]`),
//! shared by argument paths (`args...`) and caller paths (`caller.claims...`,
//! grant sources). A leaf module: it knows JSON, nothing of the policy.

use crate::json::Node;

/// One step of a path: an object key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(usize),
}

/// Parses the steps of a path after its root: `.a`, `.b[0]`, `["odd key"]`.
pub fn parse_steps(rest: &str) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    let mut chars = rest.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '.' => {
                let mut key = String::new();
                while let Some(&n) = chars.peek() {
                    if n == '.' || n == '[' {
                        break;
                    }
                    key.push(n);
                    chars.next();
                }
                if key.is_empty() {
                    return Err("empty key after '.'".to_string());
                }
                steps.push(Step::Key(key));
            }
            '[' => {
                let mut inner = String::new();
                let mut closed = false;
                let quoted = chars.peek() == Some(&'"');
                if quoted {
                    chars.next();
                    while let Some(n) = chars.next() {
                        if n == '"' {
                            closed = chars.next() == Some(']');
                            break;
                        }
                        inner.push(n);
                    }
                    if !closed {
                        return Err("unterminated [\"key\"]".to_string());
                    }
                    steps.push(Step::Key(inner));
                } else {
                    for n in chars.by_ref() {
                        if n == ']' {
                            closed = true;
                            break;
                        }
                        inner.push(n);
                    }
                    let index = inner.parse::<usize>().ok().filter(|_| closed);
                    match index {
                        Some(i) => steps.push(Step::Index(i)),
                        None => return Err(format!("invalid index [{inner}]")),
                    }
                }
            }
            other => return Err(format!("unexpected '{other}'")),
        }
    }
    Ok(steps)
}

/// The node at `steps` below `root`, if present.
pub fn resolve_steps<'d, 'a>(root: Option<&'d Node<'a>>, steps: &[Step]) -> Option<&'d Node<'a>> {
    let mut node = root?;
    for step in steps {
        node = match step {
            Step::Key(k) => node.get(k)?,
            Step::Index(i) => node.as_array()?.get(*i)?,
        };
    }
    Some(node)
}
