//! The engine's host traits implemented on proxy-wasm host calls, plus the
//! Envoy metrics the filter publishes.

use std::collections::HashMap;
use std::time::UNIX_EPOCH;

use mcp_policy_engine::answer::Outcome;
use mcp_policy_engine::ratelimit::{Clock, SetError, SharedStore};
use proxy_wasm::hostcalls;
use proxy_wasm::types::{MetricType, Status};

/// proxy-wasm shared data: one map per vm_id, shared by all workers.
pub struct SharedData;

impl SharedStore for SharedData {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        match hostcalls::get_shared_data(key) {
            Ok((Some(bytes), Some(cas))) => Some((bytes, cas)),
            // A value without a CAS token cannot be updated safely.
            Ok((Some(bytes), None)) => Some((bytes, 0)),
            _ => None,
        }
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        match hostcalls::set_shared_data(key, Some(value), Some(cas)) {
            Ok(()) => Ok(()),
            Err(Status::CasMismatch) => Err(SetError::CasMismatch),
            Err(_) => Err(SetError::Failed),
        }
    }
}

/// Envoy's wall clock.
pub struct HostClock;

impl Clock for HostClock {
    fn now_unix_millis(&self) -> u64 {
        hostcalls::get_current_time()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
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

const CALL_OUTCOMES: [Outcome; 4] = [
    Outcome::Allowed,
    Outcome::Denied,
    Outcome::RateLimited,
    Outcome::ApprovalRefused,
];

fn define(name: &str) -> Option<u32> {
    hostcalls::define_metric(MetricType::Counter, name).ok()
}

fn define_family(prefix: &str) -> Vec<(Outcome, u32)> {
    CALL_OUTCOMES
        .iter()
        .filter_map(|o| define(&format!("{prefix}.{}", o.name())).map(|id| (*o, id)))
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
        if let Some(id) = define("mcp_policy.requests.invalid") {
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
            let _ = hostcalls::increment_metric(*id, 1);
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
