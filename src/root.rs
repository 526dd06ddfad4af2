//! The root context: loads and validates the policy once per VM.

use std::cell::RefCell;
use std::rc::Rc;

use mcp_policy_engine::answer;
use mcp_policy_engine::policy::HeaderMode;
use mcp_policy_engine::store::Clock;

use mcp_policy_engine::config::{load_settings, load_with_base};
use mcp_policy_engine::lint::lint;
use mcp_policy_engine::policy::Settings;
use mcp_policy_engine::Engine;

use crate::abi;

use crate::filter::Request;
use crate::host::{HostClock, Metrics};

/// `hold` mode bookkeeping shared by the root and its requests.
#[derive(Default)]
pub struct Held {
    /// Requests that have not seen a body callback yet: (context id,
    /// deadline in ms).
    pub waiting: Vec<(u32, u64)>,
    /// A held request of this VM has had a body callback, so Envoy has
    /// `allow_on_headers_stop_iteration` set (also recorded in shared data
    /// under [`BODIES_ARRIVE_KEY`] for the other workers).
    pub bodies_arrive: bool,
}

pub type HeldRequests = Rc<RefCell<Held>>;

/// Shared-data key set once any worker has delivered a body in `hold` mode.
pub const BODIES_ARRIVE_KEY: &str = "mcp_policy.hold.bodies_arrive";

const TICK_MS: u32 = 500;

#[derive(Default)]
pub struct Root {
    held: HeldRequests,
    warned: bool,
    engine: Option<Rc<Engine>>,
    metrics: Rc<Metrics>,
    /// Filter settings from the Envoy `vm_config.configuration` (optional):
    /// deployment concerns such as `header_mode`, kept out of the policy so
    /// the policy file stays what its authors wrote.
    base: Settings,
}

/// The callbacks `dispatch` routes to a root context.
impl Root {
    pub fn on_vm_start(&mut self, size: usize) -> bool {
        let config = match abi::get_buffer(abi::BUFFER_VM_CONFIGURATION, 0, size) {
            Ok(Some(bytes)) if !bytes.iter().all(u8::is_ascii_whitespace) => bytes,
            _ => return true, // no VM settings: defaults
        };
        match load_settings(&config) {
            Ok(settings) => {
                self.base = settings;
                true
            }
            Err(errors) => {
                for e in &errors {
                    log::error!("mcp-policy: invalid VM settings: {e}");
                }
                false
            }
        }
    }

    /// Returning false makes Envoy refuse the configuration: a policy with a
    /// mistake never enforces something other than what was written.
    pub fn on_configure(&mut self, size: usize) -> bool {
        let config = match abi::get_buffer(abi::BUFFER_PLUGIN_CONFIGURATION, 0, size) {
            Ok(Some(bytes)) => bytes,
            _ => {
                log::error!("mcp-policy: no plugin configuration; the policy JSON is required");
                return false;
            }
        };
        match load_with_base(&config, &self.base) {
            Ok(p) => {
                log::info!(
                    "mcp-policy: policy loaded ({} tools, {} patterns, default {:?}, {} counters, header mode {:?})",
                    p.tools.len(),
                    p.patterns.len(),
                    p.default,
                    p.counters.len(),
                    p.settings.header_mode
                );
                if p.settings.header_mode == HeaderMode::Hold {
                    abi::set_tick_period_ms(TICK_MS);
                }
                for w in lint(&p) {
                    log::warn!("mcp-policy: policy warning: {w}");
                }
                self.metrics = Rc::new(Metrics::define(&p));
                self.engine = Some(Rc::new(Engine::new(p)));
                true
            }
            Err(errors) => {
                for e in &errors {
                    log::error!("mcp-policy: invalid policy: {e}");
                }
                log::error!(
                    "mcp-policy: policy rejected with {} problem(s); configuration refused",
                    errors.len()
                );
                false
            }
        }
    }

    /// A request's state; None without a loaded policy.
    pub fn create_request(&self, context_id: u32) -> Option<Request> {
        let engine = self.engine.clone()?;
        Some(Request::new(
            engine,
            self.metrics.clone(),
            context_id,
            self.held.clone(),
        ))
    }

    /// Answers held requests whose first body byte did not come in time
    /// (`settings.hold_body_timeout_ms`). If bodies have reached held
    /// requests before, the Envoy field is set and the client is slow: 408.
    /// Otherwise Envoy probably lacks `allow_on_headers_stop_iteration`:
    /// 500 and a log line saying how to fix it. Nothing is forwarded.
    pub fn on_tick(&mut self) {
        let now = HostClock.now_unix_millis();
        let (expired, seen_here): (Vec<u32>, bool) = {
            let mut held = self.held.borrow_mut();
            let (gone, kept): (Vec<_>, Vec<_>) =
                held.waiting.drain(..).partition(|(_, d)| *d <= now);
            held.waiting = kept;
            (
                gone.into_iter().map(|(id, _)| id).collect(),
                held.bodies_arrive,
            )
        };
        if expired.is_empty() {
            return;
        }
        let timeout = self
            .engine
            .as_ref()
            .map_or(0, |e| e.policy.settings.hold_body_timeout_ms);
        let bodies_arrive = seen_here || abi::get_shared_data(BODIES_ARRIVE_KEY).is_some();
        if !bodies_arrive && !self.warned {
            self.warned = true;
            log::error!(
                "mcp-policy: header_mode \"hold\" but Envoy delivered no request body within {timeout} ms: set allow_on_headers_stop_iteration: true in the Wasm plugin config (Envoy >= 1.35), or use header_mode \"stream\"; such requests are answered 500, never forwarded"
            );
        }
        let reply = answer::hold_timeout(bodies_arrive, timeout);
        let headers: Vec<(&str, &[u8])> = reply
            .headers
            .iter()
            .map(|(k, v)| (*k, v.as_bytes()))
            .collect();
        for id in expired {
            if bodies_arrive {
                log::info!(
                    "mcp-policy: refused (invalid) status 408: no request body within {timeout} ms"
                );
            }
            if abi::set_effective_context(id) {
                let _ = abi::send_response(reply.status, &headers, reply.body.as_bytes());
            }
        }
    }
}
