//! What the engine needs from its host: a shared compare-and-swap store and
//! a clock. Proxy-wasm implements them in the adapter, tests in
//! `testing`; rate limits and learned risk hints build on them.

/// Why a [`SharedStore::set`] did not write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetError {
    CasMismatch,
    Failed,
}

/// The host's shared key-value store (proxy-wasm shared data in Envoy).
pub trait SharedStore {
    /// The value and its CAS token, or None if the key does not exist.
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Writes `value` if the key's CAS still equals `cas` (or if the key is
    /// missing, whatever `cas`).
    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError>;
}

/// Wall-clock time.
pub trait Clock {
    fn now_unix_millis(&self) -> u64;
}
