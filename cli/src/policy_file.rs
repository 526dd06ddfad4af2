//! Reading a policy file (JSON or YAML) and checking it with the filter's
//! own loader, so every message is the one Envoy's log would show.

use std::io::Read;
use std::path::Path;

use mcp_policy_engine::config::{self, ConfigError};
use mcp_policy_engine::Policy;

use crate::yaml;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Json => "JSON",
            Format::Yaml => "YAML",
        }
    }
}

/// A policy file as the filter would receive it.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    /// As given on the command line (`-` is standard input).
    pub name: String,
    pub format: Format,
    /// The bytes handed to the loader: the file itself for JSON (verbatim,
    /// so a policy embedded in Envoy config is exactly what was written),
    /// the converted text for YAML.
    pub json: Vec<u8>,
    /// Problems found before the loader could run (YAML syntax).
    pub early: Vec<ConfigError>,
}

/// The file could not be read at all (not a policy problem).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadError(pub String);

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Chooses the format: by extension (`.json`, `.yaml`, `.yml`), else by
/// content (a document starting with `{` or `[` is JSON).
pub fn detect(name: &str, bytes: &[u8]) -> Format {
    let ext = Path::new(name)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("json") => Format::Json,
        Some("yaml") | Some("yml") => Format::Yaml,
        _ => {
            let body = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
            match body.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'{') | Some(b'[') => Format::Json,
                _ => Format::Yaml,
            }
        }
    }
}

/// Reads `name` (`-` for standard input) and prepares it for the loader.
pub fn read(name: &str) -> Result<PolicyFile, ReadError> {
    let bytes = if name == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .map_err(|e| ReadError(format!("cannot read standard input: {e}")))?;
        buf
    } else {
        std::fs::read(name).map_err(|e| ReadError(format!("cannot read {name}: {e}")))?
    };
    Ok(from_bytes(name, bytes))
}

/// Prepares policy text already in memory; `name` decides the format as in
/// [`detect`].
pub fn from_bytes(name: &str, bytes: Vec<u8>) -> PolicyFile {
    let format = detect(name, &bytes);
    match format {
        Format::Json => PolicyFile {
            name: name.to_string(),
            format,
            json: bytes,
            early: Vec::new(),
        },
        Format::Yaml => {
            let converted = match std::str::from_utf8(&bytes) {
                Ok(text) => yaml::to_json(text).map_err(|e| e.to_string()),
                Err(e) => Err(format!("invalid UTF-8 at byte {}", e.valid_up_to())),
            };
            match converted {
                Ok(json) => PolicyFile {
                    name: name.to_string(),
                    format,
                    json: json.into_bytes(),
                    early: Vec::new(),
                },
                Err(message) => {
                    // `*_admin:` unquoted is a YAML alias, not a pattern.
                    let hint = if message.contains("unknown anchor") {
                        " (a YAML key or value starting with '*' is an alias: quote tool-name patterns, e.g. \"*_admin\")"
                    } else {
                        ""
                    };
                    PolicyFile {
                        name: name.to_string(),
                        format,
                        json: Vec::new(),
                        early: vec![ConfigError {
                            path: "policy".to_string(),
                            message: format!("not valid YAML: {message}{hint}"),
                        }],
                    }
                }
            }
        }
    }
}

impl PolicyFile {
    /// Loads the policy exactly as the filter's `on_configure` does.
    pub fn load(&self) -> Result<Policy, Vec<ConfigError>> {
        if !self.early.is_empty() {
            return Err(self.early.clone());
        }
        config::load(&self.json)
    }

    /// The policy text as the filter receives it (valid UTF-8 once `load`
    /// succeeded).
    pub fn text(&self) -> Option<&str> {
        std::str::from_utf8(&self.json).ok()
    }
}

/// One line describing a loaded policy, for `validate`.
pub fn summary(policy: &Policy) -> String {
    let plural = |n: usize, one: &str, many: &str| {
        if n == 1 {
            format!("1 {one}")
        } else {
            format!("{n} {many}")
        }
    };
    let rules: usize = policy
        .tools
        .values()
        .chain(policy.patterns.iter().map(|p| &p.rule))
        .chain([&policy.wildcard])
        .map(|t| t.rules.len())
        .sum();
    let mut parts = vec![
        format!("default {}", policy.default.name()),
        plural(policy.tools.len(), "tool", "tools"),
    ];
    if !policy.patterns.is_empty() {
        parts.push(plural(policy.patterns.len(), "pattern", "patterns"));
    }
    parts.extend([
        plural(rules, "argument rule", "argument rules"),
        plural(policy.counters.len(), "counter", "counters"),
    ]);
    if policy.hide_all {
        parts.push("every tool hidden".to_string());
    } else {
        parts.push(format!(
            "{} hidden",
            policy.hide.len() + policy.hide_patterns.len()
        ));
    }
    if !policy.wildcard.limits.is_empty()
        || !policy.wildcard.rules.is_empty()
        || policy.wildcard.action != mcp_policy_engine::policy::Action::Allow
    {
        parts.push("\"*\" rule".to_string());
    }
    if !policy.risk_actions.is_empty() {
        parts.push("risk actions".to_string());
    }
    if let Some(p) = &policy.pins {
        parts.push(plural(p.tools.len(), "pinned tool", "pinned tools"));
    }
    if let Some(a) = &policy.approval {
        parts.push(format!("approval via cluster {}", a.cluster));
    }
    parts.join(", ")
}

/// The order in which pattern entries are tried (after exact names), for
/// `validate`; None when the policy has no patterns.
pub fn pattern_order(policy: &Policy) -> Option<String> {
    if policy.patterns.is_empty() {
        return None;
    }
    let list: Vec<String> = policy
        .patterns
        .iter()
        .map(|p| {
            format!(
                "{} ({})",
                config::child("tools", &p.glob.text),
                p.glob.specificity()
            )
        })
        .collect();
    Some(format!(
        "patterns, tried after exact names, most specific first (literal characters): {}",
        list.join(", ")
    ))
}
