//! The engine's host traits implemented on the panic-free ABI layer, plus
//! the Envoy metrics the filter publishes.

use std::collections::HashMap;

use mcp_policy_engine::answer::Outcome;
use mcp_policy_engine::store::{Clock, SetError, SharedStore};
use mcp_policy_engine::Policy;

use crate::abi::{self, SetOutcome};

/// proxy-wasm shared data: one map per vm_id, shared by all workers.
pub struct SharedData;

impl SharedStore for SharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        abi::get_shared_data(key)
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        match abi::set_shared_data(key, value, cas) {
            SetOutcome::Written => Ok(()),
            SetOutcome::CasMismatch => Err(SetError::CasMismatch),
            SetOutcome::Failed => Err(SetError::Failed),
        }
    }
}

/// Envoy's wall clock.
pub struct HostClock;

impl Clock for HostClock {
    fn now_unix_millis(&self) -> u64 {
        abi::now_nanos() / 1_000_000
    }
}

/// Counter ids of the decision metrics (Envoy prefixes them `wasmcustom.`).
///
/// Per-entry counters exist only for the policy's `tools` entries: one
/// family per exact name, one per pattern (a call counts under the entry
/// that decided it), plus one `_unlisted` bucket, so agents inventing tool
/// names cannot create unbounded stats.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    totals: Vec<(Outcome, u32)>,
    /// By `tools` key (exact name or pattern).
    per_entry: HashMap<String, Vec<(Outcome, u32)>>,
    unlisted: Vec<(Outcome, u32)>,
}

const CALL_OUTCOMES: [Outcome; 7] = [
    Outcome::Allowed,
    Outcome::Denied,
    Outcome::RateLimited,
    Outcome::ApprovalRefused,
    Outcome::WouldDeny,
    Outcome::WouldRateLimit,
    Outcome::WouldNeedApproval,
];

fn define_family(prefix: &str) -> Vec<(Outcome, u32)> {
    CALL_OUTCOMES
        .iter()
        .filter_map(|o| abi::define_counter(&format!("{prefix}.{}", o.name())).map(|id| (*o, id)))
        .collect()
}

/// Stat-name-safe form of a tool name.
fn stat_segment(tool: &str) -> String {
    tool.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Metrics {
    /// Defines `mcp_policy.calls.<outcome>`, `mcp_policy.requests.invalid`,
    /// `mcp_policy.tool.<tool>.<outcome>` for the policy's exact entries and
    /// `mcp_policy.pattern.<pattern>.<outcome>` for its pattern entries
    /// (`*` and other odd characters become `_`).
    pub fn define(policy: &Policy) -> Self {
        let mut totals = define_family("mcp_policy.calls");
        if let Some(id) = abi::define_counter("mcp_policy.requests.invalid") {
            totals.push((Outcome::Invalid, id));
        }
        let exact = policy
            .tools
            .keys()
            .map(|t| (t.clone(), format!("mcp_policy.tool.{}", stat_segment(t))));
        let patterns = policy.patterns.iter().map(|p| {
            let key = p.glob.text.clone();
            let name = format!("mcp_policy.pattern.{}", stat_segment(&key));
            (key, name)
        });
        let per_entry = exact
            .chain(patterns)
            .map(|(key, name)| (key, define_family(&name)))
            .collect();
        Self {
            totals,
            per_entry,
            unlisted: define_family("mcp_policy.tool._unlisted"),
        }
    }

    fn bump(ids: &[(Outcome, u32)], outcome: Outcome) {
        if let Some((_, id)) = ids.iter().find(|(o, _)| *o == outcome) {
            abi::increment(*id);
        }
    }

    /// Counts a request-level outcome (invalid requests).
    pub fn count(&self, outcome: Outcome) {
        Self::bump(&self.totals, outcome);
    }

    /// Counts one judged tool call, in total and under the `tools` entry
    /// that speaks for it (`Policy::entry`), else `_unlisted`.
    pub fn count_call(&self, entry: Option<&str>, outcome: Outcome) {
        Self::bump(&self.totals, outcome);
        let family = entry.and_then(|e| self.per_entry.get(e));
        Self::bump(family.unwrap_or(&self.unlisted), outcome);
    }
}
