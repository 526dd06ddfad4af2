//! The byte layout of one slot value, and in-place access to it.
//!
//! ```text
//! header   "MPv3" | latest: u64 | base: u64                  20 bytes
//! entry    fingerprint: u64 | RECORDS x record               200 bytes, x (ENTRIES + 1)
//! record   offset: u32 (ms after base) | amount: u64          12 bytes (amount 0 = free)
//! ```
//!
//! Record times are offsets from a per-slot `base`, not ages before
//! `latest`: moving the slot's clock then changes no record's bytes, so a
//! call reads and writes only the header and the one entry it uses
//! ([`SlotBytes`]). Only when a time no longer fits 32 bits after `base`
//! (49 days, longer than every window) is the whole value rewritten on a
//! new base ([`Slot::encode`]). Absolute 8-byte times would avoid rebasing
//! but cost 576 more bytes per slot (2,388 instead of 1,820).

use super::{Entry, Record, Rules, ENTRIES, RECORDS};

const RECORD_BYTES: usize = 4 + 8;
const ENTRY_BYTES: usize = 8 + RECORDS * RECORD_BYTES;
const MAGIC: &[u8; 4] = b"MPv3";
const LATEST_AT: usize = MAGIC.len();
const BASE_AT: usize = LATEST_AT + 8;
const HEADER_BYTES: usize = BASE_AT + 8;
/// Bytes of one slot value: the bound on shared-data memory per key.
pub const SLOT_BYTES: usize = HEADER_BYTES + (ENTRIES + 1) * ENTRY_BYTES;
/// The longest distance from `base` a record time can be stored at.
const MAX_OFFSET: u64 = u32::MAX as u64;

fn word<const N: usize>(bytes: &[u8], at: usize) -> [u8; N] {
    bytes
        .get(at..at + N)
        .and_then(|b| <[u8; N]>::try_from(b).ok())
        .unwrap_or([0; N])
}

fn put(bytes: &mut [u8], at: usize, value: &[u8]) {
    if let Some(target) = bytes.get_mut(at..at + value.len()) {
        target.copy_from_slice(value);
    }
}

fn entry_at(index: usize) -> usize {
    HEADER_BYTES + index * ENTRY_BYTES
}

fn record_at(bytes: &[u8], base: u64, entry: usize, record: usize) -> Record {
    let at = entry_at(entry) + 8 + record * RECORD_BYTES;
    let amount = u64::from_le_bytes(word(bytes, at + 4));
    if amount == 0 {
        return Record::default();
    }
    let offset = u64::from(u32::from_le_bytes(word(bytes, at)));
    Record {
        time: base.saturating_add(offset),
        amount,
    }
}

fn decode_entry(bytes: &[u8], base: u64, index: usize) -> Entry {
    let mut entry = Entry {
        fingerprint: u64::from_le_bytes(word(bytes, entry_at(index))),
        ..Entry::default()
    };
    for (j, record) in entry.records.iter_mut().enumerate() {
        *record = record_at(bytes, base, index, j);
    }
    entry
}

/// Writes `entry` at `index`. A record `base` cannot express (before it,
/// or more than 49 days after) is written free: only [`Slot::encode`]
/// drops records that way, and only ones past every window.
fn encode_entry(bytes: &mut [u8], base: u64, index: usize, entry: &Entry) {
    let mut out = [0u8; ENTRY_BYTES];
    put(&mut out, 0, &entry.fingerprint.to_le_bytes());
    for (j, r) in entry.records.iter().enumerate() {
        let offset = r.time.checked_sub(base).and_then(|o| u32::try_from(o).ok());
        if let (Some(offset), true) = (offset, r.amount > 0) {
            let at = 8 + j * RECORD_BYTES;
            put(&mut out, at, &offset.to_le_bytes());
            put(&mut out, at + 4, &r.amount.to_le_bytes());
        }
    }
    put(bytes, entry_at(index), &out);
}

fn readable(bytes: &[u8]) -> bool {
    bytes.len() == SLOT_BYTES && bytes.get(..MAGIC.len()) == Some(MAGIC.as_slice())
}

/// The value a missing key is created with.
pub(super) fn empty() -> Vec<u8> {
    Slot::default().encode()
}

/// A whole slot, decoded: for creating and rebasing values, and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Slot {
    /// The latest time (ms) any worker decided at: the slot's clock.
    pub(super) latest: u64,
    pub(super) entries: [Entry; ENTRIES + 1],
}

impl Slot {
    /// Anything unreadable is treated as empty: keys are versioned, so only
    /// a corrupted value could get here.
    pub(super) fn decode(bytes: &[u8]) -> Slot {
        let mut slot = Slot::default();
        if !readable(bytes) {
            return slot;
        }
        slot.latest = u64::from_le_bytes(word(bytes, LATEST_AT));
        let base = u64::from_le_bytes(word(bytes, BASE_AT));
        for (i, entry) in slot.entries.iter_mut().enumerate() {
            *entry = decode_entry(bytes, base, i);
        }
        slot
    }

    /// The base is the oldest record kept, so the offsets last as long as
    /// they can. A record older than 49 days before `latest` is past every
    /// window (the longest is 30 days) and dropped.
    pub(super) fn encode(&self) -> Vec<u8> {
        let base = self
            .entries
            .iter()
            .flat_map(|e| e.records.iter())
            .filter(|r| r.amount > 0 && self.latest.saturating_sub(r.time) <= MAX_OFFSET)
            .map(|r| r.time)
            .fold(self.latest, u64::min);
        let mut out = vec![0u8; SLOT_BYTES];
        put(&mut out, 0, MAGIC);
        put(&mut out, LATEST_AT, &self.latest.to_le_bytes());
        put(&mut out, BASE_AT, &base.to_le_bytes());
        for (i, entry) in self.entries.iter().enumerate() {
            encode_entry(&mut out, base, i, entry);
        }
        out
    }
}

/// A slot value read from the store and changed in place: a call decodes
/// the fingerprints, the one entry it uses (and, for a newcomer, the
/// liveness of candidate entries), and writes back that entry and the
/// header only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SlotBytes(pub(super) Vec<u8>);

impl SlotBytes {
    /// An unreadable value is replaced by an empty slot (as
    /// [`Slot::decode`] reads it).
    pub(super) fn new(bytes: Vec<u8>) -> SlotBytes {
        if readable(&bytes) {
            SlotBytes(bytes)
        } else {
            SlotBytes(empty())
        }
    }

    pub(super) fn latest(&self) -> u64 {
        u64::from_le_bytes(word(&self.0, LATEST_AT))
    }

    pub(super) fn base(&self) -> u64 {
        u64::from_le_bytes(word(&self.0, BASE_AT))
    }

    /// Moves the slot's clock to `now` (at or after `latest`). If `now` is
    /// too far from `base` to be stored, the whole value is rewritten on a
    /// new base (rare: once per ~19-49 days of use).
    pub(super) fn advance(&mut self, now: u64) {
        let base = self.base();
        if now >= base && now - base <= MAX_OFFSET {
            put(&mut self.0, LATEST_AT, &now.to_le_bytes());
            return;
        }
        let mut slot = Slot::decode(&self.0);
        slot.latest = now;
        self.0 = slot.encode();
    }

    pub(super) fn fingerprint(&self, index: usize) -> u64 {
        u64::from_le_bytes(word(&self.0, entry_at(index)))
    }

    pub(super) fn entry(&self, index: usize) -> Entry {
        decode_entry(&self.0, self.base(), index)
    }

    pub(super) fn put_entry(&mut self, index: usize, entry: &Entry) {
        let base = self.base();
        encode_entry(&mut self.0, base, index, entry);
    }

    fn live(&self, index: usize, rules: Rules, now: u64) -> bool {
        let base = self.base();
        (0..RECORDS).any(|j| rules.live(&record_at(&self.0, base, index, j), now))
    }

    /// The entry for `fp` (index, contents, whether it is the overflow):
    /// its own, a free one, or the overflow. Nothing is written.
    pub(super) fn entry_for(&self, fp: u64, rules: Rules, now: u64) -> (usize, Entry, bool) {
        // A value keeps its entry while it has one (never two of them); a
        // free one is any entry with nothing left in the window.
        if let Some(i) = (0..ENTRIES).find(|&i| self.fingerprint(i) == fp) {
            return (i, self.entry(i), false);
        }
        let overflow = self.entry(ENTRIES);
        match (0..ENTRIES).find(|&i| !self.live(i, rules, now)) {
            Some(i) => {
                // The value may have used the shared overflow budget in
                // this window: all of that budget's use counts against it
                // too.
                let mut fresh = Entry {
                    fingerprint: fp,
                    records: overflow.records,
                };
                fresh.prune(rules, now);
                (i, fresh, false)
            }
            None => (ENTRIES, overflow, true),
        }
    }
}
