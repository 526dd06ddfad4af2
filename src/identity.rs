//! Reads who is calling from Envoy, only what the policy uses: the
//! dynamic metadata holding verified JWT claims, the mTLS peer principal,
//! and the request headers named by `caller.header.*` paths.

use mcp_policy_engine::caller::{Caller, PRINCIPAL_PROPERTY};
use mcp_policy_engine::Engine;

use crate::abi::{self, HeaderMap};

/// The caller of this request, or None when the policy reads nothing of it.
pub fn read_caller(engine: &Engine, map: &HeaderMap) -> Option<Caller> {
    let needs = engine.caller_needs();
    if !needs.any() {
        return None;
    }
    let mut caller = Caller::default();
    if needs.claims {
        // The whole Metadata message: a path into the claims' Struct would
        // come back as proxy-wasm pairs, without the claims' types.
        match abi::get_property_checked(&["metadata"]) {
            Ok(Some(bytes)) => {
                caller.claims_from_metadata(&bytes, &engine.policy.settings.caller.claims_path)
            }
            Ok(None) => {}
            Err(e) => {
                caller.unreadable = Some(format!("Envoy metadata (host status {})", e.0));
            }
        }
    }
    if needs.principal {
        match abi::get_property_checked(&PRINCIPAL_PROPERTY) {
            Ok(bytes) => caller.principal_from(bytes),
            Err(e) => {
                caller.unreadable = Some(format!("the peer certificate (host status {})", e.0));
            }
        }
    }
    for name in &needs.headers {
        if let Some(v) = map.get(name) {
            caller
                .headers
                .push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    Some(caller)
}
