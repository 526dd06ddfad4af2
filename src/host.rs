//! The engine's host traits implemented on the panic-free ABI layer, plus
//! the Envoy metrics the filter publishes.

use std::collections::HashMap;

use mcp_policy_engine::answer::Outcome;
use mcp_policy_engine::ratelimit::{Clock, SetError, SharedStore};

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
/// Per-tool counters exist only for tools named in the policy (plus one
/// `_unlisted` bucket), so agents inventing tool names cannot create
/// unbounded stats.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    totals: Vec<(Outcome, u32)>,
    per_tool: HashMap<String, Vec<(Outcome, u32)>>,
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
    /// Defines `mcp_policy.calls.<outcome>`, `mcp_policy.requests.invalid`
    /// and `mcp_policy.tool.<tool>.<outcome>` for the policy's tools.
    pub fn define<'a>(tools: impl Iterator<Item = &'a String>) -> Self {
        let mut totals = define_family("mcp_policy.calls");
        if let Some(id) = abi::define_counter("mcp_policy.requests.invalid") {
            totals.push((Outcome::Invalid, id));
        }
        let per_tool = tools
            .map(|t| {
                let family = define_family(&format!("mcp_policy.tool.{}", stat_segment(t)));
                (t.clone(), family)
            })
            .collect();
        Self {
            totals,
            per_tool,
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

    /// Counts one judged tool call, in total and per tool.
    pub fn count_call(&self, tool: &str, outcome: Outcome) {
        Self::bump(&self.totals, outcome);
        Self::bump(self.per_tool.get(tool).unwrap_or(&self.unlisted), outcome);
    }
}
