//! Who is calling: the verified JWT claims Envoy's `jwt_authn` filter left
//! in dynamic metadata, the mTLS peer's principal (URI SAN), and request
//! headers (unverified), as inputs to conditions (`caller.*` paths), to
//! per-caller `tools/list` answers and to grant budgets.
//!
//! The host reads only what the policy uses ([`CallerNeeds`]); the engine
//! gets it as a [`Caller`] and parses it once per decision ([`CallerView`]).

use crate::json::{self, JsonStr, Node, Value};
use crate::metadata;
use crate::path_steps::{parse_steps, resolve_steps, Step};

/// The default `settings.caller_claims`: `jwt_authn` with
/// `payload_in_metadata: jwt_payload`.
pub const DEFAULT_CLAIMS_PATH: [&str; 4] = [
    "metadata",
    "filter_metadata",
    "envoy.filters.http.jwt_authn",
    "jwt_payload",
];

/// The Envoy property holding the downstream peer certificate's first URI
/// SAN (a SPIFFE id in a mesh).
pub const PRINCIPAL_PROPERTY: [&str; 2] = ["connection", "uri_san_peer_certificate"];

/// What a `caller.` path reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerRoot {
    /// `caller.claims...`: the verified JWT payload.
    Claims,
    /// `caller.principal`: the mTLS peer URI SAN.
    Principal,
    /// `caller.header.<name>` (lower-cased): a request header, unverified.
    Header(String),
}

/// A compiled `caller.claims.a.b[0]`, `caller.principal` or
/// `caller.header.x` path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerPath {
    pub root: CallerRoot,
    pub steps: Vec<Step>,
}

impl CallerPath {
    /// Parses the text after `caller`.
    pub fn parse(rest: &str) -> Result<CallerPath, String> {
        let usage = "expected caller.claims.<name>, caller.principal or caller.header.<name>";
        let mut steps = parse_steps(rest)?.into_iter();
        match steps.next() {
            Some(Step::Key(k)) if k == "claims" => Ok(CallerPath {
                root: CallerRoot::Claims,
                steps: steps.collect(),
            }),
            Some(Step::Key(k)) if k == "principal" => match steps.next() {
                None => Ok(CallerPath {
                    root: CallerRoot::Principal,
                    steps: Vec::new(),
                }),
                Some(_) => Err("caller.principal is a string; it has no members".to_string()),
            },
            Some(Step::Key(k)) if k == "header" => match (steps.next(), steps.next()) {
                (Some(Step::Key(name)), None) if valid_header_name(&name) => Ok(CallerPath {
                    root: CallerRoot::Header(name.to_ascii_lowercase()),
                    steps: Vec::new(),
                }),
                _ => Err(format!(
                    "caller.header takes one header name (caller.header.x-team); {usage}"
                )),
            },
            _ => Err(usage.to_string()),
        }
    }
}

fn valid_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Where a grant budget's value comes from when it follows the verified
/// identity (`settings.grant_from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrantFrom {
    /// `"claims.sub"`: a claim (nested paths allowed).
    Claim(Vec<Step>),
    /// `"principal"`.
    Principal,
}

impl GrantFrom {
    pub fn parse(text: &str) -> Result<GrantFrom, String> {
        if text == "principal" {
            return Ok(GrantFrom::Principal);
        }
        match text.strip_prefix("claims") {
            Some(rest) if !rest.is_empty() => Ok(GrantFrom::Claim(parse_steps(rest)?)),
            _ => Err("expected \"principal\" or \"claims.<name>\" (e.g. \"claims.sub\")".into()),
        }
    }
}

/// Caller settings (`settings.caller_claims`, `require_caller`, `grant_from`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerSettings {
    /// Envoy property path of the claims: `metadata`, `filter_metadata`,
    /// the namespace, then keys inside that namespace's Struct.
    pub claims_path: Vec<String>,
    /// A `tools/call` without verified identity (no claims, no principal) is
    /// refused.
    pub require: bool,
    /// Grant budgets follow this identity instead of the grant header.
    pub grant_from: Option<GrantFrom>,
}

impl Default for CallerSettings {
    fn default() -> Self {
        Self {
            claims_path: DEFAULT_CLAIMS_PATH.iter().map(|s| s.to_string()).collect(),
            require: false,
            grant_from: None,
        }
    }
}

impl CallerSettings {
    /// Checks a `caller_claims` path: it must point inside a filter's
    /// dynamic metadata (the only place verified claims live).
    pub fn check_claims_path(path: &[String]) -> Result<(), String> {
        match path {
            [m, f, ns, ..] if m == "metadata" && f == "filter_metadata" && !ns.is_empty() => Ok(()),
            _ => Err("a path [\"metadata\", \"filter_metadata\", \"<filter namespace>\", <keys>...] (e.g. the jwt_authn payload_in_metadata location)".to_string()),
        }
    }
}

/// What the host must read for this policy; nothing when unused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerNeeds {
    pub claims: bool,
    pub principal: bool,
    /// Lower-cased header names used by `caller.header.*` paths.
    pub headers: Vec<String>,
}

impl CallerNeeds {
    pub fn add(&mut self, path: &CallerPath) {
        match &path.root {
            CallerRoot::Claims => self.claims = true,
            CallerRoot::Principal => self.principal = true,
            CallerRoot::Header(h) => {
                if !self.headers.contains(h) {
                    self.headers.push(h.clone());
                }
            }
        }
    }

    pub fn any(&self) -> bool {
        self.claims || self.principal || !self.headers.is_empty()
    }
}

/// What the host read about the caller, owned by the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Caller {
    /// The verified claims as a JSON object's text (None: no verified token).
    pub claims: Option<String>,
    /// The mTLS peer URI SAN (None without mTLS).
    pub principal: Option<String>,
    /// Request headers the policy reads, `(lower-cased name, value)`.
    pub headers: Vec<(String, String)>,
    /// Identity that could not be read: every tool call is then refused.
    pub unreadable: Option<String>,
}

impl Caller {
    /// Builds the caller from the serialized dynamic metadata
    /// (`get_property(["metadata"])`) and the `caller_claims` path.
    pub fn claims_from_metadata(&mut self, metadata: &[u8], path: &[String]) {
        match claims_json(metadata, path) {
            Ok(c) => self.claims = c,
            Err(e) => self.unreadable = Some(format!("the JWT claims in Envoy metadata: {e}")),
        }
    }

    /// Sets the principal from the property bytes (empty means none).
    pub fn principal_from(&mut self, bytes: Option<Vec<u8>>) {
        match bytes.map(String::from_utf8) {
            Some(Ok(p)) if !p.is_empty() => self.principal = Some(p),
            Some(Err(_)) => self.unreadable = Some("the peer principal is not UTF-8".into()),
            _ => {}
        }
    }

    /// Whether a verified identity is present (claims or principal).
    pub fn verified(&self) -> bool {
        self.claims.is_some() || self.principal.is_some()
    }

    /// Parses the caller for one decision.
    pub fn view(&self) -> CallerView<'_> {
        let claims = self
            .claims
            .as_deref()
            .and_then(|c| json::parse(c.as_bytes()).ok());
        let (claims_source, claims) = match claims {
            Some(d) => (d.source, Some(d.root)),
            None => ("", None),
        };
        fn string(s: &str) -> Node<'_> {
            Node {
                value: Value::String(JsonStr::plain(s)),
                start: 0,
                end: 0,
            }
        }
        CallerView {
            claims,
            claims_source,
            principal: self.principal.as_deref().map(string),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.as_str(), string(v)))
                .collect(),
        }
    }

    /// `sub` claim (for audit lines), if a string.
    pub fn subject(&self) -> Option<String> {
        let view = self.view();
        view.claims
            .as_ref()
            .and_then(|c| c.get("sub"))
            .and_then(Node::as_str)
            .map(str::to_string)
    }
}

/// The claims object at `path` inside the serialized metadata.
fn claims_json(metadata: &[u8], path: &[String]) -> Result<Option<String>, String> {
    let (Some(ns), keys) = (path.get(2), path.get(3..).unwrap_or_default()) else {
        return Err("caller_claims path is too short".into());
    };
    let Some(st) = metadata::filter_struct(metadata, ns).map_err(|e| e.0)? else {
        return Ok(None);
    };
    let text = metadata::struct_to_json(st).map_err(|e| e.0)?;
    let doc = json::parse(text.as_bytes()).map_err(|e| e.to_string())?;
    let mut node = &doc.root;
    for k in keys {
        match node.get(k) {
            Some(n) => node = n,
            None => return Ok(None),
        }
    }
    match node.value {
        Value::Object(_) => Ok(Some(node.raw(doc.source).to_string())),
        _ => Err(format!(
            "expected an object of claims, found a {}",
            node.type_name()
        )),
    }
}

/// A parsed caller, borrowed for one decision.
#[derive(Debug, Default)]
pub struct CallerView<'c> {
    pub claims: Option<Node<'c>>,
    /// The claims' JSON text (for values used as grants).
    pub claims_source: &'c str,
    pub principal: Option<Node<'c>>,
    pub headers: Vec<(&'c str, Node<'c>)>,
}

impl<'c> CallerView<'c> {
    /// The node a `caller.` path names, if present.
    pub fn resolve(&self, path: &CallerPath) -> Option<&Node<'c>> {
        match &path.root {
            CallerRoot::Claims => resolve_steps(self.claims.as_ref(), &path.steps),
            CallerRoot::Principal => self.principal.as_ref(),
            CallerRoot::Header(name) => {
                self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v)
            }
        }
    }

    /// The grant value `grant_from` names: the claim's text (strings as
    /// they are, other values as JSON) or the principal.
    pub fn grant_value(&self, from: &GrantFrom) -> Option<Vec<u8>> {
        let node = match from {
            GrantFrom::Principal => self.principal.as_ref(),
            GrantFrom::Claim(steps) => resolve_steps(self.claims.as_ref(), steps),
        }?;
        match &node.value {
            Value::String(s) => Some(s.as_bytes().to_vec()),
            Value::Null => None,
            _ => Some(node.raw(self.claims_source).as_bytes().to_vec()),
        }
    }
}

#[cfg(test)]
mod tests;
