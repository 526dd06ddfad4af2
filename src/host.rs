//! The engine's host traits implemented on proxy-wasm host calls, plus the
//! Envoy metrics the filter publishes.

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
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    ids: Vec<(Outcome, u32)>,
}

const OUTCOMES: [Outcome; 5] = [
    Outcome::Allowed,
    Outcome::Denied,
    Outcome::RateLimited,
    Outcome::ApprovalRefused,
    Outcome::Invalid,
];

impl Metrics {
    /// Defines `mcp_policy.calls.<outcome>` (tool calls) and
    /// `mcp_policy.requests.invalid` once per VM.
    pub fn define() -> Self {
        let mut ids = Vec::new();
        for outcome in OUTCOMES {
            let name = if outcome == Outcome::Invalid {
                "mcp_policy.requests.invalid".to_string()
            } else {
                format!("mcp_policy.calls.{}", outcome.name())
            };
            if let Ok(id) = hostcalls::define_metric(MetricType::Counter, &name) {
                ids.push((outcome, id));
            }
        }
        Self { ids }
    }

    pub fn count(&self, outcome: Outcome) {
        if let Some((_, id)) = self.ids.iter().find(|(o, _)| *o == outcome) {
            let _ = hostcalls::increment_metric(*id, 1);
        }
    }
}

impl Metrics {
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
