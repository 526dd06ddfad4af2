//! In-memory host doubles for tests: a shared store with Envoy's CAS
//! semantics (including the create race) and a settable clock.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use crate::store::{Clock, SetError, SharedStore};

/// Shared data as Envoy implements it: CAS tokens from one global sequence
/// that skips 0; a set on a missing key succeeds whatever the CAS; cas 0
/// means "no check".
#[derive(Default)]
pub struct MemoryStore {
    map: RefCell<HashMap<String, (Vec<u8>, u32)>>,
    next_cas: Cell<u32>,
    /// Number of upcoming CAS sets to fail with CasMismatch (conflict
    /// injection), as if another worker had written in between.
    pub inject_conflicts: Cell<u32>,
    /// Hook run before each set: simulates another worker acting between
    /// our get and our set.
    #[allow(clippy::type_complexity)]
    pub before_set: RefCell<Option<Box<dyn FnMut(&MemoryStore, &str)>>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        let s = Self::default();
        s.next_cas.set(1);
        s
    }

    fn bump(&self) -> u32 {
        let c = self.next_cas.get();
        let mut n = c.wrapping_add(1);
        if n == 0 {
            n = 1;
        }
        self.next_cas.set(n);
        c
    }

    pub fn keys(&self) -> usize {
        self.map.borrow().len()
    }

    pub fn bytes(&self) -> usize {
        self.map
            .borrow()
            .iter()
            .map(|(k, (v, _))| k.len() + v.len())
            .sum()
    }

    /// A raw set as another worker would do it.
    pub fn raw_set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let mut map = self.map.borrow_mut();
        if let Some((_, current)) = map.get(key) {
            if cas != 0 && cas != *current {
                return Err(SetError::CasMismatch);
            }
        }
        let token = self.bump();
        map.insert(key.to_string(), (value.to_vec(), token));
        Ok(())
    }
}

impl SharedStore for MemoryStore {
    fn get(&self, key: &str) -> Option<(Vec<u8>, u32)> {
        self.map.borrow().get(key).cloned()
    }

    fn set(&self, key: &str, value: &[u8], cas: u32) -> Result<(), SetError> {
        let hook = self.before_set.borrow_mut().take();
        if let Some(mut f) = hook {
            f(self, key);
            *self.before_set.borrow_mut() = Some(f);
        }
        if self.inject_conflicts.get() > 0 {
            self.inject_conflicts.set(self.inject_conflicts.get() - 1);
            return Err(SetError::CasMismatch);
        }
        self.raw_set(key, value, cas)
    }
}

/// A clock the test moves by hand.
pub struct FixedClock(pub Cell<u64>);

impl FixedClock {
    pub fn at_secs(secs: u64) -> Self {
        Self(Cell::new(secs * 1000))
    }
    pub fn advance_secs(&self, secs: u64) {
        self.0.set(self.0.get() + secs * 1000);
    }
}

impl Clock for FixedClock {
    fn now_unix_millis(&self) -> u64 {
        self.0.get()
    }
}
