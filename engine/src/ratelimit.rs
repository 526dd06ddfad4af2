//! Exact, bounded rate limiting on a shared compare-and-swap store.
//!
//! Envoy runs one Wasm VM per worker; their only common memory is proxy-wasm
//! shared data, a process-wide map of `key -> (bytes, cas)` whose keys are
//! never deleted and where a `set` on a missing key succeeds whatever CAS is
//! passed. The design follows from that:
//!
//! * **Fixed key space.** Each counter owns `slots` keys,
//!   `mcp_policy/v3/<counter>/<slot>`. A scope value (grant, session, address)
//!   is fingerprinted and mapped to one slot. However many values agents
//!   invent, the number of keys never grows past `counters x slots`.
//! * **Bounded slot.** A slot holds `ENTRIES` entries plus one overflow
//!   entry; an entry is a fingerprint and `RECORDS` admission records
//!   `(time in ms, amount)`. An entry with no record left in the window is
//!   free to reuse. When every entry is taken by live values, newcomers share
//!   the overflow entry's budget: stricter than their own, never unlimited.
//!   Record times are stored relative to a per-slot base (`slot`), so a
//!   call decodes and rewrites only the header and the one entry it uses.
//! * **Sliding windows.** A limit admits a call when the amounts recorded in
//!   the last window length plus the call's amount stay within `max`, so no
//!   interval of that length ever holds more than `max`, across boundaries
//!   too. Each admission is its own record (exact, to the millisecond) until
//!   an entry's records are full; then two records of one sub-window
//!   (`window / BUCKETS`) merge under the later time. A merged amount counts
//!   a little longer than it should, never shorter: the limit may refuse up
//!   to one sub-window early, it never admits more. `RECORDS > BUCKETS`
//!   guarantees two records always share a sub-window when a merge is due.
//! * **Fixed windows** (on request) keep one record per UTC-aligned window.
//! * **One clock per slot.** A slot stores the latest time any worker used;
//!   a worker whose clock reads earlier uses that time instead. Decisions on
//!   a slot are therefore ordered in time as they are in CAS order, so no
//!   worker can drop or overlook a record another worker still counts.
//! * **No lost increments.** Counts only change through a CAS `set` against
//!   the value just read, retried on conflict. A missing key is created only
//!   with an empty slot and an impossible CAS, so creation can never
//!   overwrite a slot someone already created and counted in.
//! * **A refused call consumes nothing.** A call with several limits takes
//!   its amount from each in turn and gives back what it took if a later one
//!   is exhausted.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::policy::{Algorithm, Counter, Scope};
use crate::store::{SetError, SharedStore};

mod slot;
#[cfg(test)]
use slot::Slot;
use slot::SlotBytes;
pub use slot::SLOT_BYTES;

/// Live entries per slot (plus one overflow entry).
pub const ENTRIES: usize = 8;
/// Admission records per entry: a sliding limit of up to this many whole
/// calls is exact to the millisecond.
pub const RECORDS: usize = 16;
/// Sub-windows of a sliding window. Records only merge within one, so a
/// merged amount counts at most `window / BUCKETS` longer than exactly.
pub const BUCKETS: u64 = 15;
/// Prefix of every counter key; the version changes with the value layout
/// (v3: record times relative to a per-slot base, see `slot`), so values
/// written by an older module are never misread.
pub const KEY_PREFIX: &str = "mcp_policy/v3/";
/// CAS retries before giving up (fail closed).
const MAX_ATTEMPTS: usize = 64;
/// A CAS value Envoy never hands out for a fresh key: used to create a key
/// only if it is still absent.
const CREATE_ONLY_CAS: u32 = u32::MAX;

/// An amount taken from one counter: enough to give it back later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub key: String,
    pub fingerprint: u64,
    /// When it was recorded (ms, on the slot's clock).
    pub at_ms: u64,
    pub amount: u64,
    pub overflow: bool,
    /// The counter's window length and algorithm: where the record may
    /// have merged to by the time it is given back.
    pub window_ms: u64,
    pub algorithm: Algorithm,
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
    /// The counter at this index has no room now. `retry_after_seconds` is
    /// when a call of the same amount would be admitted, if nothing else is
    /// taken meanwhile.
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
    // Built by hand: two keys per allowed call, and `format!` was ~5% of
    // `decide` (callgrind, bench/README.md).
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = slot;
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    let mut key =
        String::with_capacity(KEY_PREFIX.len() + counter.name.len() + 1 + digits.len() - at);
    key.push_str(KEY_PREFIX);
    key.push_str(&counter.name);
    key.push('/');
    key.push_str(std::str::from_utf8(digits.get(at..).unwrap_or_default()).unwrap_or_default());
    key
}

/// How a counter's window decides what still counts and what may merge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rules {
    window_ms: u64,
    algorithm: Algorithm,
}

impl Rules {
    fn of(counter: &Counter) -> Rules {
        Rules {
            window_ms: counter.window.seconds().saturating_mul(1000).max(1),
            algorithm: counter.algorithm,
        }
    }

    /// Whether `record` still counts at `now`.
    fn live(self, record: &Record, now: u64) -> bool {
        record.amount > 0
            && match self.algorithm {
                Algorithm::Sliding => record.time.saturating_add(self.window_ms) > now,
                Algorithm::Fixed => record.time / self.window_ms == now / self.window_ms,
            }
    }

    /// The sub-window (sliding) or window (fixed) a time falls in: records
    /// only ever merge within one.
    fn bucket(self, time: u64) -> u64 {
        match self.algorithm {
            Algorithm::Sliding => time.saturating_mul(BUCKETS) / self.window_ms,
            Algorithm::Fixed => time / self.window_ms,
        }
    }
}

/// Amount admitted at `time` (ms); an amount of 0 marks a free record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Record {
    time: u64,
    amount: u64,
}

/// One scope value's admissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Entry {
    fingerprint: u64,
    records: [Record; RECORDS],
}

impl Entry {
    /// Frees the records that no longer count.
    fn prune(&mut self, rules: Rules, now: u64) {
        for r in &mut self.records {
            if !rules.live(r, now) {
                *r = Record::default();
            }
        }
    }

    /// The amount that counts at `now`.
    fn used(&self, rules: Rules, now: u64) -> u64 {
        self.records
            .iter()
            .filter(|r| rules.live(r, now))
            .fold(0, |sum, r| sum.saturating_add(r.amount))
    }

    /// Records `amount` at `now` (after [`Entry::prune`]; `now` is at or
    /// after every record's time).
    fn add(&mut self, rules: Rules, now: u64, amount: u64) {
        if amount == 0 {
            return;
        }
        // The same millisecond (fixed: the same window) is one record.
        let joins = |r: &Record| {
            r.amount > 0
                && match rules.algorithm {
                    Algorithm::Sliding => r.time == now,
                    Algorithm::Fixed => rules.bucket(r.time) == rules.bucket(now),
                }
        };
        if let Some(r) = self.records.iter_mut().find(|r| joins(r)) {
            *r = Record {
                time: now,
                amount: r.amount.saturating_add(amount),
            };
            return;
        }
        if let Some(r) = self.records.iter_mut().find(|r| r.amount == 0) {
            *r = Record { time: now, amount };
            return;
        }
        // Full: the newest record absorbs the call if it is in the same
        // sub-window; else two neighbours of one sub-window merge, freeing a
        // record. Every record lies in the last window, which touches at most
        // BUCKETS + 1 sub-windows, so with RECORDS > BUCKETS one of the two
        // always applies.
        let time = |i: usize| self.records.get(i).map_or(0, |r| r.time);
        // Oldest first; equal times in index order. No allocation.
        let mut order: [usize; RECORDS] = std::array::from_fn(|i| i);
        order.sort_unstable_by_key(|&i| (time(i), i));
        if let Some(&newest) = order.last() {
            if rules.bucket(time(newest)) == rules.bucket(now) {
                if let Some(r) = self.records.get_mut(newest) {
                    *r = Record {
                        time: now,
                        amount: r.amount.saturating_add(amount),
                    };
                }
                return;
            }
        }
        let pair = order
            .windows(2)
            .filter_map(|w| match w {
                [a, b] if rules.bucket(time(*a)) == rules.bucket(time(*b)) => Some((*a, *b)),
                _ => None,
            })
            .min_by_key(|&(a, b)| time(b).saturating_sub(time(a)))
            // Unreachable (see above); folding the oldest record into the
            // next still never under-counts.
            .or(match order.as_slice() {
                [a, b, ..] => Some((*a, *b)),
                _ => None,
            });
        if let Some((older, newer)) = pair {
            let moved = self.records.get(older).map_or(0, |r| r.amount);
            if let Some(r) = self.records.get_mut(newer) {
                r.amount = r.amount.saturating_add(moved);
            }
            if let Some(r) = self.records.get_mut(older) {
                *r = Record { time: now, amount };
            }
        }
    }

    /// The earliest time at which `amount` more fits under `max`, if
    /// nothing else is taken meanwhile.
    fn admissible_at(&self, rules: Rules, now: u64, amount: u64, max: u64) -> u64 {
        if rules.algorithm == Algorithm::Fixed {
            return (now / rules.window_ms)
                .saturating_add(1)
                .saturating_mul(rules.window_ms);
        }
        // The live records, oldest first (no allocation).
        let mut records = self.records;
        let mut count = 0;
        for r in self.records.iter().filter(|r| rules.live(r, now)) {
            if let Some(slot) = records.get_mut(count) {
                *slot = *r;
                count += 1;
            }
        }
        let live = records.get_mut(..count).unwrap_or_default();
        live.sort_unstable_by_key(|r| r.time);
        let mut used = self.used(rules, now);
        for r in live.iter() {
            used = used.saturating_sub(r.amount);
            if used.saturating_add(amount) <= max {
                return r.time.saturating_add(rules.window_ms);
            }
        }
        // More than `max` alone never fits; the budget is whole again once
        // everything recorded has left the window.
        live.last()
            .map_or(now, |r| r.time)
            .saturating_add(rules.window_ms)
    }

    /// The record holding an amount recorded at `at`, if it can be told.
    ///
    /// Merges only move an amount forward to its next record within one
    /// sub-window, and new records are never older than existing ones, so
    /// the amount sits in the first record at or after `at` in the same
    /// sub-window. That is certain when it is the record of `at` itself, or
    /// while `at` is still in the window (nothing that could hold it has
    /// been dropped); otherwise nothing is given back.
    fn holder(&mut self, rules: Rules, at: u64, latest: u64) -> Option<&mut Record> {
        let bucket = rules.bucket(at);
        let first = self
            .records
            .iter_mut()
            .filter(|r| r.amount > 0 && r.time >= at && rules.bucket(r.time) == bucket)
            .min_by_key(|r| r.time)?;
        let certain = first.time == at
            || match rules.algorithm {
                // One record per window.
                Algorithm::Fixed => true,
                Algorithm::Sliding => at.saturating_add(rules.window_ms) > latest,
            };
        certain.then_some(first)
    }
}

/// Reads a slot, creating it empty if absent (never overwriting).
fn read_slot(store: &dyn SharedStore, key: &str) -> Option<(SlotBytes, u32)> {
    for _ in 0..2 {
        match store.get(key) {
            Some((_, 0)) => return None,
            Some((bytes, cas)) => return Some((SlotBytes::new(bytes), cas)),
            None => {
                let _ = store.set(key, &slot::empty(), CREATE_ONLY_CAS);
            }
        }
    }
    None
}

/// Takes each `take`'s amount (all or nothing) at time `now_ms`.
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
    let mut taken: Vec<Charge> = Vec::with_capacity(takes.len());
    for (index, take) in takes.iter().enumerate() {
        let outcome = match counters.get(take.counter) {
            Some(counter) => take_one(store, counter, slots, take, now_ms),
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
    now_ms: u64,
) -> Result<Charge, Denial> {
    let rules = Rules::of(counter);
    let key = slot_key(counter, take.fingerprint, slots);
    let unavailable = Denial::Unavailable {
        counter: take.counter,
    };
    for _ in 0..MAX_ATTEMPTS {
        let (mut slot, cas) = read_slot(store, &key).ok_or(unavailable.clone())?;
        // Never decide earlier than a decision already written here.
        let now = now_ms.max(slot.latest());
        let (index, mut entry, overflow) = slot.entry_for(take.fingerprint, rules, now);
        entry.prune(rules, now);
        if entry.used(rules, now).saturating_add(take.amount) > counter.max {
            let at = entry.admissible_at(rules, now, take.amount, counter.max);
            return Err(Denial::Exhausted {
                counter: take.counter,
                retry_after_seconds: at.saturating_sub(now_ms).div_ceil(1000).max(1),
            });
        }
        entry.add(rules, now, take.amount);
        slot.advance(now);
        slot.put_entry(index, &entry);
        match store.set(&key, &slot.0, cas) {
            Ok(()) => {
                return Ok(Charge {
                    key,
                    fingerprint: take.fingerprint,
                    at_ms: now,
                    amount: take.amount,
                    overflow,
                    window_ms: rules.window_ms,
                    algorithm: rules.algorithm,
                })
            }
            Err(SetError::CasMismatch) => continue,
            Err(SetError::Failed) => return Err(unavailable),
        }
    }
    Err(unavailable)
}

/// Gives back what `charges` took, to the records still holding it. An
/// amount whose record has left the window no longer counts: nothing to do.
pub fn release(store: &dyn SharedStore, charges: &[Charge]) {
    for charge in charges.iter().filter(|c| c.amount > 0) {
        let rules = Rules {
            window_ms: charge.window_ms.max(1),
            algorithm: charge.algorithm,
        };
        for _ in 0..MAX_ATTEMPTS {
            let Some((mut slot, cas)) = read_slot(store, &charge.key) else {
                break;
            };
            let latest = slot.latest();
            let candidates = if charge.overflow {
                ENTRIES..ENTRIES + 1
            } else {
                0..ENTRIES
            };
            let found = candidates
                .filter(|&i| charge.overflow || slot.fingerprint(i) == charge.fingerprint)
                .find_map(|i| {
                    let mut entry = slot.entry(i);
                    let record = entry.holder(rules, charge.at_ms, latest)?;
                    record.amount = record.amount.saturating_sub(charge.amount);
                    Some((i, entry))
                });
            let Some((index, entry)) = found else {
                break;
            };
            slot.put_entry(index, &entry);
            match store.set(&charge.key, &slot.0, cas) {
                Err(SetError::CasMismatch) => continue,
                _ => break,
            }
        }
    }
}

#[cfg(test)]
mod tests;
