//! The root context: loads and validates the policy once per VM.

use std::rc::Rc;

use mcp_policy_engine::config::{load_settings, load_with_base};
use mcp_policy_engine::policy::Settings;
use mcp_policy_engine::Engine;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::ContextType;

use crate::abi;

use crate::filter::Request;
use crate::host::Metrics;

#[derive(Default)]
pub struct Root {
    engine: Option<Rc<Engine>>,
    metrics: Rc<Metrics>,
    /// Filter settings from the Envoy `vm_config.configuration` (optional):
    /// deployment concerns such as `header_mode`, kept out of the policy so
    /// the policy file stays what its authors wrote.
    base: Settings,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_vm_start(&mut self, size: usize) -> bool {
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
    fn on_configure(&mut self, size: usize) -> bool {
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
                    "mcp-policy: policy loaded ({} tools, default {:?}, {} counters, header mode {:?})",
                    p.tools.len(),
                    p.default,
                    p.counters.len(),
                    p.settings.header_mode
                );
                self.metrics = Rc::new(Metrics::define(p.tools.keys()));
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

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        let engine = self.engine.clone()?;
        Some(Box::new(Request::new(engine, self.metrics.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
