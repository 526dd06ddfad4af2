//! Host-free core of mcp-policy: strict JSON-RPC parsing, the policy, the
//! decision for each request, rate-limit counters and the answers to refused
//! calls. Nothing here calls proxy-wasm; the host is reached only through the
//! [`store::SharedStore`] and [`store::Clock`] traits, so all of it
//! runs in native unit tests and as wasm32.

pub mod answer;
pub mod audit;
pub mod caller;
pub mod conditions;
pub mod config;
pub mod credentials;
pub mod engine;
pub mod glob;
pub mod global_limits;
pub mod item_rules;
pub mod json;
pub mod jsonrpc;
pub mod key_folding;
pub mod lint;
pub mod metadata;
pub mod path_steps;
pub mod policy;
pub mod ratelimit;
pub mod risk;
pub mod routing_headers;
pub mod store;
pub mod text;
pub mod tools_list;
pub mod tunnels;
pub mod write;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use engine::{CallRecord, Engine, Forwarded, Scopes, Verdict};
pub use policy::Policy;
