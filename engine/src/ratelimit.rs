//! Exact, bounded rate limiting on a shared compare-and-swap store.
//!
//! Envoy runs one Wasm VM per worker; their only common memory is proxy-wasm
//! shared data, a process-wide map of `key -> (bytes, cas)` whose keys are
//! never deleted and where a `set` on a missing key succeeds whatever CAS is
//! passed. The design follows from that:
//!
//! * **Fixed key space.** Each counter owns `slots` keys,
//!   `mcp_policy/v1/<counter>/<slot>`. A scope value (grant, session, address)
//!   is fingerprinted and mapped to one slot. However many values agents
//!   invent, the number of keys never grows past `counters x slots`.
//! * **Bounded slot.** A slot holds `ENTRIES` entries `(fingerprint, window,
//!   count)` plus one overflow entry. An entry whose window is over is free to
//!   reuse. When every entry is taken by live values, newcomers share the
//!   overflow entry's budget: stricter than their own, never unlimited.
//! * **No lost increments.** Counts only change through a CAS `set` against
//!   the value just read, retried on conflict. A missing key is created only
//!   with an empty slot and an impossible CAS, so creation can never
//!   overwrite a slot someone already created and counted in.
//! * **A refused call consumes nothing.** A call with several limits takes a
//!   unit from each in turn and gives back what it took if a later one is
//!   exhausted.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::policy::{Counter, Scope};

/// Live entries per slot (plus one overflow entry).
pub const ENTRIES: usize = 8;
const ENTRY_BYTES: usize = 24;
const MAGIC: &[u8; 4] = b"MPv1";
/// Bytes of one slot value: the bound on shared-data memory per key.
pub const SLOT_BYTES: usize = MAGIC.len() + (ENTRIES + 1) * ENTRY_BYTES;
/// CAS retries before giving up (fail closed).
const MAX_ATTEMPTS: usize = 64;
/// A CAS value Envoy never hands out for a fresh key: used to create a key
/// only if it is still absent.
const CREATE_ONLY_CAS: u32 = u32::MAX;

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

/// A unit taken from one counter: enough to give it back later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub key: String,
    pub fingerprint: u64,
    pub window: u64,
    pub amount: u64,
    pub overflow: bool,
}

/// What to take: counter index, scope fingerprint, amount.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Take {
    pub counter: usize,
    pub fingerprint: u64,
    pub amount: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// The counter at this index has no room in the current window.
    Exhausted {
        counter: usize,
        retry_after_seconds: u64,
    },
    /// The store failed or stayed contended: refuse rather than guess.
    Unavailable { counter: usize },
}

/// Fingerprint of a scope value, keyed so that raw credentials never reach
/// shared data or logs. A missing value maps to the scope's `anonymous`
/// bucket.
pub fn fingerprint(key: &[u8], scope: Scope, value: Option<&[u8]>) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    scope.name().hash(&mut h);
    match value {
        Some(v) if !v.is_empty() => {
            1u8.hash(&mut h);
            v.hash(&mut h);
        }
        _ => 0u8.hash(&mut h),
    }
    h.finish()
}

/// The shared-data key holding `fingerprint` for `counter`.
pub fn slot_key(counter: &Counter, fingerprint: u64, slots: u32) -> String {
    let slot = fingerprint % u64::from(slots.max(1));
    format!("mcp_policy/v1/{}/{}", counter.name, slot)
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    fingerprint: u64,
    window: u64,
    count: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Slot {
    entries: [Entry; ENTRIES + 1],
}

impl Slot {
    fn decode(bytes: &[u8]) -> Slot {
        let mut slot = Slot::default();
        // Anything unreadable is treated as empty: keys are versioned, so
        // only a corrupted value could get here.
        if bytes.len() != SLOT_BYTES || bytes.get(..MAGIC.len()) != Some(MAGIC.as_slice()) {
            return slot;
        }
        for (i, entry) in slot.entries.iter_mut().enumerate() {
            let at = MAGIC.len() + i * ENTRY_BYTES;
            let word = |k: usize| -> u64 {
                bytes
                    .get(at + k * 8..at + k * 8 + 8)
                    .and_then(|b| <[u8; 8]>::try_from(b).ok())
                    .map(u64::from_le_bytes)
                    .unwrap_or(0)
            };
            *entry = Entry {
                fingerprint: word(0),
                window: word(1),
                count: word(2),
            };
        }
        slot
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SLOT_BYTES);
        out.extend_from_slice(MAGIC);
        for e in &self.entries {
            out.extend_from_slice(&e.fingerprint.to_le_bytes());
            out.extend_from_slice(&e.window.to_le_bytes());
            out.extend_from_slice(&e.count.to_le_bytes());
        }
        out
    }

    /// The entry for `fp` in `window`: its own, a free one, or the overflow.
    fn entry_for(&mut self, fp: u64, window: u64) -> (&mut Entry, bool) {
        let live = |e: &Entry| e.window == window && e.count > 0;
        let [regular @ .., overflow] = &mut self.entries;
        let own = regular
            .iter()
            .position(|e| live(e) && e.fingerprint == fp)
            .or_else(|| regular.iter().position(|e| !live(e)));
        if let Some(e) = own.and_then(|i| regular.get_mut(i)) {
            if !(live(e) && e.fingerprint == fp) {
                *e = Entry {
                    fingerprint: fp,
                    window,
                    count: 0,
                };
            }
            return (e, false);
        }
        if overflow.window != window {
            *overflow = Entry {
                fingerprint: 0,
                window,
                count: 0,
            };
        }
        (overflow, true)
    }
}

/// Reads a slot, creating it empty if absent (never overwriting).
fn read_slot(store: &dyn SharedStore, key: &str) -> Option<(Slot, u32)> {
    for _ in 0..2 {
        match store.get(key) {
            Some((_, 0)) => return None,
            Some((bytes, cas)) => return Some((Slot::decode(&bytes), cas)),
            None => {
                let _ = store.set(key, &Slot::default().encode(), CREATE_ONLY_CAS);
            }
        }
    }
    None
}

/// Takes one unit per `take` (all or nothing) at time `now_ms`.
pub fn acquire(
    store: &dyn SharedStore,
    counters: &[Counter],
    slots: u32,
    takes: &[Take],
    now_ms: u64,
) -> Result<Vec<Charge>, Denial> {
    acquire_indexed(store, counters, slots, takes, now_ms).map_err(|(_, d)| d)
}

/// Like [`acquire`], also telling which take (index into `takes`) failed,
/// so a batch refusal blames the call that actually hit the limit.
pub fn acquire_indexed(
    store: &dyn SharedStore,
    counters: &[Counter],
    slots: u32,
    takes: &[Take],
    now_ms: u64,
) -> Result<Vec<Charge>, (usize, Denial)> {
    let now_s = now_ms / 1000;
    let mut taken: Vec<Charge> = Vec::with_capacity(takes.len());
    for (index, take) in takes.iter().enumerate() {
        let outcome = match counters.get(take.counter) {
            Some(counter) => take_one(store, counter, slots, take, now_s),
            None => Err(Denial::Unavailable {
                counter: take.counter,
            }),
        };
        match outcome {
            Ok(charge) => taken.push(charge),
            Err(denial) => {
                release(store, &taken);
                return Err((index, denial));
            }
        }
    }
    Ok(taken)
}

fn take_one(
    store: &dyn SharedStore,
    counter: &Counter,
    slots: u32,
    take: &Take,
    now_s: u64,
) -> Result<Charge, Denial> {
    let window_secs = counter.window.seconds();
    let window = now_s / window_secs;
    let key = slot_key(counter, take.fingerprint, slots);
    let unavailable = Denial::Unavailable {
        counter: take.counter,
    };
    for _ in 0..MAX_ATTEMPTS {
        let (mut slot, cas) = read_slot(store, &key).ok_or(unavailable.clone())?;
        let (entry, overflow) = slot.entry_for(take.fingerprint, window);
        let next = entry.count.saturating_add(take.amount);
        if next > counter.max {
            let window_end = (window + 1) * window_secs;
            return Err(Denial::Exhausted {
                counter: take.counter,
                retry_after_seconds: window_end.saturating_sub(now_s).max(1),
            });
        }
        entry.count = next;
        match store.set(&key, &slot.encode(), cas) {
            Ok(()) => {
                return Ok(Charge {
                    key,
                    fingerprint: take.fingerprint,
                    window,
                    amount: take.amount,
                    overflow,
                })
            }
            Err(SetError::CasMismatch) => continue,
            Err(SetError::Failed) => return Err(unavailable),
        }
    }
    Err(unavailable)
}

/// Gives back what `charges` took, if their windows are still current.
pub fn release(store: &dyn SharedStore, charges: &[Charge]) {
    for charge in charges {
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut slot, cas)) = read_slot(store, &charge.key) else {
                break;
            };
            let target = if charge.overflow {
                slot.entries.get_mut(ENTRIES)
            } else {
                slot.entries
                    .iter_mut()
                    .take(ENTRIES)
                    .find(|e| e.fingerprint == charge.fingerprint && e.window == charge.window)
            };
            let Some(entry) = target.filter(|e| e.window == charge.window && e.count > 0) else {
                break;
            };
            entry.count = entry.count.saturating_sub(charge.amount);
            match store.set(&charge.key, &slot.encode(), cas) {
                Err(SetError::CasMismatch) => continue,
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests;
