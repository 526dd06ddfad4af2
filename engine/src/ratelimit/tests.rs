#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[cfg(target_arch = "wasm32")]
use wasm_bindgen_test::wasm_bindgen_test as test;

use std::cell::Cell;
use std::rc::Rc;

use super::*;
use crate::policy::{Algorithm, Window};
use crate::store::Clock;
use crate::testing::{FixedClock, MemoryStore};

// ---------------------------------------------------------------- helpers

const KEY: &[u8] = b"test-key";
/// 2026-11-24T00:00:00Z: a whole day, hour and minute.
const T0: u64 = 1_795_478_400;

/// A sliding-window counter (the default).
fn counter(name: &str, window: Window, max: u64) -> Counter {
    Counter {
        name: name.to_string(),
        window,
        max,
        scope: Scope::Grant,
        algorithm: Algorithm::Sliding,
        increment_from: None,
        default_increment_milli: None,
        global: false,
        reason: None,
    }
}

/// A counter with fixed windows aligned to UTC.
fn fixed(name: &str, window: Window, max: u64) -> Counter {
    Counter {
        algorithm: Algorithm::Fixed,
        ..counter(name, window, max)
    }
}

fn fp(who: &str) -> u64 {
    fingerprint(KEY, Scope::Grant, Some(who.as_bytes()))
}

fn take(counter: usize, fingerprint: u64) -> Take {
    Take {
        counter,
        fingerprint,
        amount: 1,
    }
}

/// One call taking one unit from each listed counter for `who`.
fn call(
    store: &MemoryStore,
    counters: &[Counter],
    slots: u32,
    limits: &[usize],
    who: u64,
    clock: &FixedClock,
) -> Result<Vec<Charge>, Denial> {
    let takes: Vec<Take> = limits.iter().map(|&c| take(c, who)).collect();
    acquire(store, counters, slots, &takes, clock.now_unix_millis())
}

/// Calls until refused; returns how many were allowed (bounded by `cap`).
fn allowed_calls(
    store: &MemoryStore,
    counters: &[Counter],
    who: u64,
    clock: &FixedClock,
    cap: u64,
) -> u64 {
    let mut n = 0;
    while n < cap && call(store, counters, 256, &[0], who, clock).is_ok() {
        n += 1;
    }
    n
}

/// The amount that counts for `who` on `counter` at `now_s` (its own
/// entry, else 0).
fn stored_count(store: &MemoryStore, counter: &Counter, slots: u32, who: u64, now_s: u64) -> u64 {
    let Some((bytes, _)) = store.get(&slot_key(counter, who, slots)) else {
        return 0;
    };
    let rules = Rules::of(counter);
    let now = (now_s * 1000).max(Slot::decode(&bytes).latest);
    Slot::decode(&bytes)
        .entries
        .iter()
        .take(ENTRIES)
        .find(|e| e.fingerprint == who)
        .map_or(0, |e| e.used(rules, now))
}

fn exhausted_retry(result: Result<Vec<Charge>, Denial>) -> (usize, u64) {
    match result {
        Err(Denial::Exhausted {
            counter,
            retry_after_seconds,
        }) => (counter, retry_after_seconds),
        other => panic!("expected exhaustion, got {other:?}"),
    }
}

/// A store whose every set fails (the host refused to write).
struct FailingStore;

impl SharedStore for FailingStore {
    fn get(&self, _: &str) -> Option<(Vec<u8>, u32)> {
        None
    }
    fn set(&self, _: &str, _: &[u8], _: u32) -> Result<(), SetError> {
        Err(SetError::Failed)
    }
}

// ---------------------------------------------------------------- exact counting

#[test]
fn counts_exactly_to_max_then_refuses() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 5)];
    let clock = FixedClock::at_secs(T0 + 10);
    for i in 1..=5 {
        assert!(
            call(&store, &counters, 256, &[0], fp("a"), &clock).is_ok(),
            "call {i}"
        );
    }
    let (idx, retry) = exhausted_retry(call(&store, &counters, 256, &[0], fp("a"), &clock));
    assert_eq!(idx, 0);
    // Sliding: the five units leave the window 60 s after they were taken.
    assert_eq!(retry, 60);
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0 + 10), 5);
}

#[test]
fn refused_call_does_not_count() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 2)];
    let clock = FixedClock::at_secs(T0);
    assert_eq!(allowed_calls(&store, &counters, fp("a"), &clock, 100), 2);
    for _ in 0..10 {
        assert!(call(&store, &counters, 256, &[0], fp("a"), &clock).is_err());
    }
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0), 2);
}

#[test]
fn max_of_one_allows_exactly_one() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Day, 1)];
    let clock = FixedClock::at_secs(T0);
    assert_eq!(allowed_calls(&store, &counters, fp("a"), &clock, 100), 1);
}

#[test]
fn charge_describes_what_was_taken() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 5)];
    let clock = FixedClock::at_secs(T0 + 61);
    let charges = call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
    assert_eq!(
        charges,
        [Charge {
            key: slot_key(&counters[0], fp("a"), 256),
            fingerprint: fp("a"),
            at_ms: (T0 + 61) * 1000,
            amount: 1,
            overflow: false,
            window_ms: 60_000,
            algorithm: Algorithm::Sliding,
        }]
    );
}

#[test]
fn amounts_larger_than_one_are_counted() {
    let store = MemoryStore::new();
    let counters = [counter("spend", Window::Day, 10)];
    let now = T0 * 1000;
    let big = Take {
        counter: 0,
        fingerprint: fp("a"),
        amount: 7,
    };
    assert!(acquire(&store, &counters, 256, &[big], now).is_ok());
    assert!(acquire(&store, &counters, 256, &[big], now).is_err());
    let three = Take { amount: 3, ..big };
    assert!(acquire(&store, &counters, 256, &[three], now).is_ok());
    assert!(acquire(&store, &counters, 256, &[take(0, fp("a"))], now).is_err());
}

// ---------------------------------------------------------------- windows

#[test]
fn fixed_minute_window_rolls_over_on_the_utc_minute() {
    let store = MemoryStore::new();
    let counters = [fixed("c", Window::Minute, 3)];
    let clock = FixedClock::at_secs(T0 + 59);
    assert_eq!(allowed_calls(&store, &counters, fp("a"), &clock, 100), 3);
    let (_, retry) = exhausted_retry(call(&store, &counters, 256, &[0], fp("a"), &clock));
    assert_eq!(retry, 1);
    clock.advance_secs(1);
    assert_eq!(allowed_calls(&store, &counters, fp("a"), &clock, 100), 3);
}

#[test]
fn fixed_retry_after_counts_to_the_end_of_the_window() {
    let counters = [fixed("c", Window::Minute, 1)];
    for (offset, expected) in [(0, 60), (1, 59), (30, 30), (58, 2), (59, 1)] {
        let store = MemoryStore::new();
        let clock = FixedClock::at_secs(T0 + offset);
        call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
        let (_, retry) = exhausted_retry(call(&store, &counters, 256, &[0], fp("a"), &clock));
        assert_eq!(retry, expected, "{offset} s into the minute");
    }
}

#[test]
fn fixed_retry_after_is_at_least_one_second_in_the_last_millisecond() {
    let store = MemoryStore::new();
    let counters = [fixed("c", Window::Minute, 1)];
    let clock = FixedClock(Cell::new((T0 + 59) * 1000 + 999));
    call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
    let (_, retry) = exhausted_retry(call(&store, &counters, 256, &[0], fp("a"), &clock));
    assert_eq!(retry, 1);
}

#[test]
fn fixed_second_window_rolls_over_every_second() {
    let store = MemoryStore::new();
    let counters = [fixed("c", Window::Second, 2)];
    let clock = FixedClock(Cell::new(T0 * 1000 + 999));
    assert_eq!(allowed_calls(&store, &counters, fp("a"), &clock, 100), 2);
    let (_, retry) = exhausted_retry(call(&store, &counters, 256, &[0], fp("a"), &clock));
    assert_eq!(retry, 1);
    clock.0.set((T0 + 1) * 1000);
    assert_eq!(allowed_calls(&store, &counters, fp("a"), &clock, 100), 2);
}

#[test]
fn fixed_milliseconds_do_not_open_a_new_window() {
    let store = MemoryStore::new();
    let counters = [fixed("c", Window::Minute, 1)];
    let clock = FixedClock(Cell::new(T0 * 1000));
    call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
    clock.0.set((T0 + 59) * 1000 + 999);
    assert!(call(&store, &counters, 256, &[0], fp("a"), &clock).is_err());
    clock.0.set((T0 + 60) * 1000);
    assert!(call(&store, &counters, 256, &[0], fp("a"), &clock).is_ok());
}

#[test]
fn fixed_hour_and_day_windows_align_to_utc() {
    let store = MemoryStore::new();
    let counters = [fixed("h", Window::Hour, 1), fixed("d", Window::Day, 1)];
    let clock = FixedClock::at_secs(T0 + 86_400 - 1);
    call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
    call(&store, &counters, 256, &[1], fp("a"), &clock).unwrap();
    assert_eq!(
        exhausted_retry(call(&store, &counters, 256, &[0], fp("a"), &clock)),
        (0, 1)
    );
    assert_eq!(
        exhausted_retry(call(&store, &counters, 256, &[1], fp("a"), &clock)),
        (1, 1)
    );
    clock.advance_secs(1);
    assert!(call(&store, &counters, 256, &[0, 1], fp("a"), &clock).is_ok());
}

#[test]
fn old_window_counts_do_not_carry_over() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 3)];
    let clock = FixedClock::at_secs(T0);
    assert_eq!(allowed_calls(&store, &counters, fp("a"), &clock, 100), 3);
    clock.advance_secs(3600);
    assert_eq!(allowed_calls(&store, &counters, fp("a"), &clock, 100), 3);
}

// ---------------------------------------------------------------- scopes and sharing

#[test]
fn different_fingerprints_have_independent_budgets() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 2)];
    let clock = FixedClock::at_secs(T0);
    assert_eq!(allowed_calls(&store, &counters, fp("a"), &clock, 100), 2);
    assert_eq!(allowed_calls(&store, &counters, fp("b"), &clock, 100), 2);
    assert!(call(&store, &counters, 256, &[0], fp("a"), &clock).is_err());
}

#[test]
fn fingerprints_sharing_one_slot_are_still_independent() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 2)];
    let clock = FixedClock::at_secs(T0);
    for who in ["a", "b", "c", "d"] {
        for _ in 0..2 {
            call(&store, &counters, 1, &[0], fp(who), &clock).unwrap();
        }
        assert!(call(&store, &counters, 1, &[0], fp(who), &clock).is_err());
    }
    assert_eq!(store.keys(), 1);
}

#[test]
fn one_counter_is_one_budget_whoever_names_it() {
    // Two tools naming the same counter take from the same index.
    let store = MemoryStore::new();
    let counters = [counter("shared", Window::Minute, 3)];
    let clock = FixedClock::at_secs(T0);
    let tool_a = [0];
    let tool_b = [0];
    call(&store, &counters, 256, &tool_a, fp("a"), &clock).unwrap();
    call(&store, &counters, 256, &tool_b, fp("a"), &clock).unwrap();
    call(&store, &counters, 256, &tool_a, fp("a"), &clock).unwrap();
    assert!(call(&store, &counters, 256, &tool_b, fp("a"), &clock).is_err());
    assert!(call(&store, &counters, 256, &tool_a, fp("a"), &clock).is_err());
}

#[test]
fn counters_with_different_names_use_different_keys() {
    let store = MemoryStore::new();
    let counters = [
        counter("x", Window::Minute, 1),
        counter("y", Window::Minute, 1),
    ];
    let clock = FixedClock::at_secs(T0);
    call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
    call(&store, &counters, 256, &[1], fp("a"), &clock).unwrap();
    assert_eq!(store.keys(), 2);
}

#[test]
fn missing_scope_value_maps_to_one_anonymous_bucket() {
    let anonymous = fingerprint(KEY, Scope::Grant, None);
    assert_eq!(fingerprint(KEY, Scope::Grant, Some(b"")), anonymous);
    assert_ne!(fingerprint(KEY, Scope::Grant, Some(b"x")), anonymous);
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 2)];
    let clock = FixedClock::at_secs(T0);
    call(
        &store,
        &counters,
        256,
        &[0],
        fingerprint(KEY, Scope::Grant, None),
        &clock,
    )
    .unwrap();
    call(
        &store,
        &counters,
        256,
        &[0],
        fingerprint(KEY, Scope::Grant, Some(b"")),
        &clock,
    )
    .unwrap();
    assert!(call(&store, &counters, 256, &[0], anonymous, &clock).is_err());
    assert!(call(&store, &counters, 256, &[0], fp("named"), &clock).is_ok());
}

#[test]
fn fingerprints_depend_on_key_scope_and_value() {
    let base = fingerprint(KEY, Scope::Grant, Some(b"v"));
    assert_eq!(base, fingerprint(KEY, Scope::Grant, Some(b"v")));
    assert_ne!(base, fingerprint(b"other-key", Scope::Grant, Some(b"v")));
    assert_ne!(base, fingerprint(KEY, Scope::Session, Some(b"v")));
    assert_ne!(base, fingerprint(KEY, Scope::Grant, Some(b"w")));
    assert_ne!(
        fingerprint(KEY, Scope::Grant, None),
        fingerprint(KEY, Scope::Session, None)
    );
}

#[test]
fn slot_keys_are_namespaced_by_counter_and_bounded_by_slots() {
    let c = counter("rate", Window::Minute, 1);
    assert_eq!(slot_key(&c, 0, 256), "mcp_policy/v3/rate/0");
    assert_eq!(slot_key(&c, 257, 256), "mcp_policy/v3/rate/1");
    assert_eq!(slot_key(&c, u64::MAX, 1), "mcp_policy/v3/rate/0");
    // Zero slots cannot divide by zero.
    assert_eq!(slot_key(&c, 12345, 0), "mcp_policy/v3/rate/0");
    // Every digit of a large slot number, in order.
    assert_eq!(slot_key(&c, 255, 256), "mcp_policy/v3/rate/255");
    assert_eq!(
        slot_key(&c, 4_294_967_294, u32::MAX),
        "mcp_policy/v3/rate/4294967294"
    );
    assert_eq!(
        slot_key(&c, 1_000_000, 1_000_007),
        "mcp_policy/v3/rate/1000000"
    );
}

// ---------------------------------------------------------------- several limits on one call

#[test]
fn refusal_on_a_later_limit_gives_back_the_earlier_ones() {
    let store = MemoryStore::new();
    let counters = [
        counter("wide", Window::Minute, 5),
        counter("narrow", Window::Minute, 1),
    ];
    let clock = FixedClock::at_secs(T0);
    call(&store, &counters, 256, &[0, 1], fp("a"), &clock).unwrap();
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0), 1);
    let (idx, _) = exhausted_retry(call(&store, &counters, 256, &[0, 1], fp("a"), &clock));
    assert_eq!(idx, 1);
    // The unit taken from "wide" before "narrow" refused was given back.
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0), 1);
    assert_eq!(allowed_calls(&store, &counters, fp("a"), &clock, 100), 4);
}

#[test]
fn refusal_on_the_first_limit_touches_nothing_else() {
    let store = MemoryStore::new();
    let counters = [
        counter("narrow", Window::Minute, 1),
        counter("wide", Window::Minute, 5),
    ];
    let clock = FixedClock::at_secs(T0);
    call(&store, &counters, 256, &[0, 1], fp("a"), &clock).unwrap();
    assert_eq!(
        exhausted_retry(call(&store, &counters, 256, &[0, 1], fp("a"), &clock)).0,
        0
    );
    assert_eq!(stored_count(&store, &counters[1], 256, fp("a"), T0), 1);
}

#[test]
fn unknown_counter_index_is_unavailable_and_gives_back() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 5)];
    let clock = FixedClock::at_secs(T0);
    assert_eq!(
        call(&store, &counters, 256, &[0, 9], fp("a"), &clock),
        Err(Denial::Unavailable { counter: 9 })
    );
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0), 0);
}

// ---------------------------------------------------------------- contention

#[test]
fn injected_conflicts_still_count_exactly() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 10)];
    let clock = FixedClock::at_secs(T0);
    // Create the key first: a missing key never conflicts in Envoy.
    call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
    for _ in 0..9 {
        store.inject_conflicts.set(5);
        call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
        assert_eq!(store.inject_conflicts.get(), 0);
    }
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0), 10);
    store.inject_conflicts.set(3);
    assert!(call(&store, &counters, 256, &[0], fp("a"), &clock).is_err());
}

#[test]
fn endless_conflicts_fail_closed_without_counting() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 10)];
    let clock = FixedClock::at_secs(T0);
    call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
    store.inject_conflicts.set(1_000);
    assert_eq!(
        call(&store, &counters, 256, &[0], fp("a"), &clock),
        Err(Denial::Unavailable { counter: 0 })
    );
    store.inject_conflicts.set(0);
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0), 1);
}

#[test]
fn store_failure_fails_closed() {
    let counters = [counter("c", Window::Minute, 10)];
    assert_eq!(
        acquire(
            &FailingStore,
            &counters,
            256,
            &[take(0, fp("a"))],
            T0 * 1000
        ),
        Err(Denial::Unavailable { counter: 0 })
    );
}

/// Installs a hook that, before each of our next `times` sets, lets
/// "another worker" make a complete call on the same counter and scope.
fn other_worker_before_our_sets(
    store: &MemoryStore,
    counters: &[Counter],
    who: u64,
    now_ms: u64,
    times: u32,
) -> Rc<Cell<u32>> {
    let done = Rc::new(Cell::new(0));
    let seen = Rc::clone(&done);
    let counters = counters.to_vec();
    *store.before_set.borrow_mut() = Some(Box::new(move |s: &MemoryStore, _key: &str| {
        if seen.get() < times {
            seen.set(seen.get() + 1);
            acquire(s, &counters, 256, &[take(0, who)], now_ms).unwrap();
        }
    }));
    done
}

#[test]
fn creation_race_loses_no_increment() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 10)];
    let now = T0 * 1000;
    // Our get finds no key; before our create-only set, the other worker
    // creates the key and counts its call.
    let others = other_worker_before_our_sets(&store, &counters, fp("a"), now, 1);
    acquire(&store, &counters, 256, &[take(0, fp("a"))], now).unwrap();
    assert_eq!(others.get(), 1);
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0), 2);
}

#[test]
fn increment_race_loses_no_increment() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 100)];
    let now = T0 * 1000;
    acquire(&store, &counters, 256, &[take(0, fp("a"))], now).unwrap();
    let others = other_worker_before_our_sets(&store, &counters, fp("a"), now, 5);
    acquire(&store, &counters, 256, &[take(0, fp("a"))], now).unwrap();
    assert_eq!(others.get(), 5);
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0), 7);
}

#[test]
fn racing_workers_never_exceed_max() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 3)];
    let now = T0 * 1000;
    // Two other calls land while we try; ours is the third and last unit.
    other_worker_before_our_sets(&store, &counters, fp("a"), now, 2);
    acquire(&store, &counters, 256, &[take(0, fp("a"))], now).unwrap();
    assert!(acquire(&store, &counters, 256, &[take(0, fp("a"))], now).is_err());
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0), 3);
}

#[test]
fn race_for_the_last_unit_refuses_the_loser() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 2)];
    let now = T0 * 1000;
    acquire(&store, &counters, 256, &[take(0, fp("a"))], now).unwrap();
    // The other worker takes the last unit between our read and our write.
    other_worker_before_our_sets(&store, &counters, fp("a"), now, 1);
    assert!(matches!(
        acquire(&store, &counters, 256, &[take(0, fp("a"))], now),
        Err(Denial::Exhausted { .. })
    ));
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0), 2);
}

#[test]
fn creation_never_overwrites_an_existing_slot() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 10)];
    let now = T0 * 1000;
    let key = slot_key(&counters[0], fp("a"), 256);
    acquire(&store, &counters, 256, &[take(0, fp("a"))], now).unwrap();
    let before = store.get(&key).unwrap().0;
    // A read that creates must leave an existing value alone.
    let (slot, _) = read_slot(&store, &key).unwrap();
    assert_eq!(slot.0, before);
    assert_eq!(store.get(&key).unwrap().0, before);
}

// ---------------------------------------------------------------- bounded memory

#[test]
fn distinct_fingerprints_never_grow_the_key_count_past_the_slots() {
    let store = MemoryStore::new();
    let counters = [counter(
        "claude_code_session_rate",
        Window::Minute,
        1_000_000_000,
    )];
    let slots = 256;
    let now = T0 * 1000;
    for i in 0..100_000u32 {
        let who = fingerprint(KEY, Scope::Grant, Some(&i.to_le_bytes()));
        acquire(&store, &counters, slots, &[take(0, who)], now).unwrap();
    }
    assert!(store.keys() <= slots as usize, "{} keys", store.keys());
    let longest_key = slot_key(&counters[0], u64::from(slots - 1), slots).len();
    assert!(store.bytes() <= slots as usize * (SLOT_BYTES + longest_key));
}

#[test]
fn one_slot_configuration_keeps_a_single_key() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Second, 1_000)];
    let clock = FixedClock::at_secs(T0);
    for i in 0..2_000u32 {
        let who = fingerprint(KEY, Scope::Source, Some(&i.to_le_bytes()));
        let _ = call(&store, &counters, 1, &[0], who, &clock);
        clock.0.set(clock.0.get() + 7);
    }
    assert_eq!(store.keys(), 1);
    assert_eq!(store.bytes(), SLOT_BYTES + "mcp_policy/v3/c/0".len());
}

#[test]
fn slot_values_have_a_fixed_size() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 100)];
    let clock = FixedClock::at_secs(T0);
    for who in ["a", "b", "c"] {
        call(&store, &counters, 256, &[0], fp(who), &clock).unwrap();
        let (bytes, _) = store.get(&slot_key(&counters[0], fp(who), 256)).unwrap();
        assert_eq!(bytes.len(), SLOT_BYTES);
    }
}

// ---------------------------------------------------------------- overflow

#[test]
fn more_live_values_than_entries_share_the_capped_overflow_budget() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 2)];
    let clock = FixedClock::at_secs(T0);
    // Fill every regular entry of the only slot with one call each.
    for i in 0..ENTRIES {
        let charges = call(&store, &counters, 1, &[0], fp(&format!("r{i}")), &clock).unwrap();
        assert!(!charges[0].overflow);
    }
    // Newcomers share the overflow entry: two units in all, not two each.
    let c1 = call(&store, &counters, 1, &[0], fp("n1"), &clock).unwrap();
    let c2 = call(&store, &counters, 1, &[0], fp("n2"), &clock).unwrap();
    assert!(c1[0].overflow && c2[0].overflow);
    assert!(matches!(
        call(&store, &counters, 1, &[0], fp("n3"), &clock),
        Err(Denial::Exhausted { .. })
    ));
    assert!(call(&store, &counters, 1, &[0], fp("n1"), &clock).is_err());
    // Values with their own entry keep their own budget.
    for i in 0..ENTRIES {
        assert!(call(&store, &counters, 1, &[0], fp(&format!("r{i}")), &clock).is_ok());
    }
}

#[test]
fn entries_of_ended_windows_are_reused() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 1)];
    let clock = FixedClock::at_secs(T0);
    for i in 0..ENTRIES {
        call(&store, &counters, 1, &[0], fp(&format!("old{i}")), &clock).unwrap();
    }
    clock.advance_secs(60);
    for i in 0..ENTRIES {
        let charges = call(&store, &counters, 1, &[0], fp(&format!("new{i}")), &clock).unwrap();
        assert!(!charges[0].overflow, "new{i} should get a regular entry");
    }
}

#[test]
fn overflow_budget_resets_with_the_window() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 1)];
    let clock = FixedClock::at_secs(T0);
    for i in 0..ENTRIES {
        call(&store, &counters, 1, &[0], fp(&format!("r{i}")), &clock).unwrap();
    }
    assert!(call(&store, &counters, 1, &[0], fp("n"), &clock).unwrap()[0].overflow);
    assert!(call(&store, &counters, 1, &[0], fp("m"), &clock).is_err());
    clock.advance_secs(60);
    for i in 0..ENTRIES {
        call(&store, &counters, 1, &[0], fp(&format!("r{i}")), &clock).unwrap();
    }
    assert!(call(&store, &counters, 1, &[0], fp("m"), &clock).unwrap()[0].overflow);
}

// ---------------------------------------------------------------- release

#[test]
fn release_gives_a_unit_back_in_the_same_window() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 2)];
    let clock = FixedClock::at_secs(T0);
    let first = call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
    call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
    assert!(call(&store, &counters, 256, &[0], fp("a"), &clock).is_err());
    release(&store, &first);
    assert!(call(&store, &counters, 256, &[0], fp("a"), &clock).is_ok());
    assert!(call(&store, &counters, 256, &[0], fp("a"), &clock).is_err());
}

#[test]
fn release_after_the_window_ended_changes_nothing() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 2)];
    let clock = FixedClock::at_secs(T0);
    let old = call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
    clock.advance_secs(60);
    assert_eq!(allowed_calls(&store, &counters, fp("a"), &clock, 100), 2);
    release(&store, &old);
    assert!(call(&store, &counters, 256, &[0], fp("a"), &clock).is_err());
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0 + 60), 2);
}

#[test]
fn release_of_an_overflow_charge_gives_back_to_the_overflow() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 1)];
    let clock = FixedClock::at_secs(T0);
    for i in 0..ENTRIES {
        call(&store, &counters, 1, &[0], fp(&format!("r{i}")), &clock).unwrap();
    }
    let over = call(&store, &counters, 1, &[0], fp("n"), &clock).unwrap();
    assert!(over[0].overflow);
    assert!(call(&store, &counters, 1, &[0], fp("m"), &clock).is_err());
    release(&store, &over);
    assert!(call(&store, &counters, 1, &[0], fp("m"), &clock).is_ok());
}

#[test]
fn release_survives_conflicts() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 1)];
    let clock = FixedClock::at_secs(T0);
    let charges = call(&store, &counters, 256, &[0], fp("a"), &clock).unwrap();
    store.inject_conflicts.set(10);
    release(&store, &charges);
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0), 0);
}

#[test]
fn release_never_goes_below_zero_or_touches_other_values() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 3)];
    let clock = FixedClock::at_secs(T0);
    let a = call(&store, &counters, 1, &[0], fp("a"), &clock).unwrap();
    call(&store, &counters, 1, &[0], fp("b"), &clock).unwrap();
    release(&store, &a);
    release(&store, &a);
    assert_eq!(stored_count(&store, &counters[0], 1, fp("a"), T0), 0);
    assert_eq!(stored_count(&store, &counters[0], 1, fp("b"), T0), 1);
}

// ---------------------------------------------------------------- encoding

#[test]
fn slot_encoding_round_trips() {
    let latest = (T0 + 30) * 1000 + 7;
    let mut slot = Slot {
        latest,
        ..Slot::default()
    };
    slot.entries[0].fingerprint = u64::MAX;
    slot.entries[0].records[0] = Record {
        time: latest - 59_999,
        amount: 7_000,
    };
    slot.entries[0].records[RECORDS - 1] = Record {
        time: latest,
        amount: u64::MAX,
    };
    slot.entries[ENTRIES].records[3] = Record {
        time: latest - 86_400_000,
        amount: 3,
    };
    let bytes = slot.encode();
    assert_eq!(bytes.len(), SLOT_BYTES);
    assert!(bytes.starts_with(b"MPv3"));
    assert_eq!(Slot::decode(&bytes), slot);
}

#[test]
fn records_too_old_to_encode_are_dropped() {
    let latest = T0 * 1000;
    let mut slot = Slot {
        latest,
        ..Slot::default()
    };
    slot.entries[1].records[0] = Record {
        time: latest - u64::from(u32::MAX) - 1,
        amount: 5,
    };
    assert_eq!(
        Slot::decode(&slot.encode()).entries[1].records[0],
        Record::default()
    );
}

#[test]
fn slot_values_are_versioned_in_key_and_magic() {
    // A hot reload from a module with another layout must not misread:
    // the key prefix changed, and a stray value of another layout is empty.
    assert_eq!(KEY_PREFIX, "mcp_policy/v3/");
    let mut old_layout = vec![0u8; 4 + 9 * 24];
    old_layout[..4].copy_from_slice(b"MPv1");
    assert_eq!(Slot::decode(&old_layout), Slot::default());
    // v2: ages before `latest`, 1,812 bytes.
    let mut v2 = vec![0u8; 12 + 9 * (8 + 16 * 12)];
    v2[..4].copy_from_slice(b"MPv2");
    v2[4..12].copy_from_slice(&(T0 * 1000).to_le_bytes());
    v2[12..20].copy_from_slice(&fp("a").to_le_bytes());
    v2[24..32].copy_from_slice(&5u64.to_le_bytes());
    assert_eq!(Slot::decode(&v2), Slot::default());
    assert_eq!(SlotBytes::new(v2), SlotBytes::new(Vec::new()));
}

#[test]
fn unreadable_slot_values_decode_as_empty() {
    let good = Slot::default().encode();
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    for bytes in [
        Vec::new(),
        vec![0; SLOT_BYTES - 1],
        bad_magic,
        vec![0xFF; SLOT_BYTES + 1],
    ] {
        assert_eq!(Slot::decode(&bytes), Slot::default());
    }
}

#[test]
fn acquire_indexed_names_the_take_that_failed() {
    let store = MemoryStore::new();
    let counters = [
        counter("wide", Window::Minute, 5),
        counter("narrow", Window::Minute, 1),
    ];
    let now = T0 * 1000;
    let takes = [take(0, fp("a")), take(1, fp("a")), take(1, fp("a"))];
    match acquire_indexed(&store, &counters, 256, &takes, now) {
        Err((index, Denial::Exhausted { counter, .. })) => {
            assert_eq!((index, counter), (2, 1));
        }
        other => panic!("{other:?}"),
    }
    // Everything taken before the failure was given back.
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0), 0);
    assert_eq!(stored_count(&store, &counters[1], 256, fp("a"), T0), 0);
}

// ---------------------------------------------------------------- sliding windows

/// One take of `amount` on counter 0 for `who` at `ms`.
fn take_at(
    store: &MemoryStore,
    counters: &[Counter],
    who: u64,
    ms: u64,
    amount: u64,
) -> Result<Vec<Charge>, Denial> {
    let t = Take {
        counter: 0,
        fingerprint: who,
        amount,
    };
    acquire(store, counters, 256, &[t], ms)
}

/// A deterministic pseudo-random sequence (no dependency for a test).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, below: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % below
    }
}

/// Sum of `admitted` amounts with a time in `(to - len, to]`.
fn sum_in(admitted: &[(u64, u64)], to: u64, len: u64) -> u64 {
    admitted
        .iter()
        .filter(|(t, _)| *t <= to && *t + len > to)
        .map(|(_, a)| a)
        .sum()
}

#[test]
fn ten_at_second_59_and_ten_at_second_0_do_not_both_pass() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 10)];
    let at_59 = (T0 + 59) * 1000;
    for i in 0..10 {
        assert!(take_at(&store, &counters, fp("a"), at_59 + i * 10, 1).is_ok());
    }
    for ms in [(T0 + 60) * 1000, (T0 + 61) * 1000, (T0 + 118) * 1000 + 999] {
        let (_, retry) = exhausted_retry(take_at(&store, &counters, fp("a"), ms, 1));
        // The first of the ten leaves the window at :59 of the next minute.
        assert_eq!(retry, (at_59 + 60_000 - ms).div_ceil(1000), "at {ms}");
    }
    // 60 s after the first call, exactly one unit is back; the others
    // follow ten milliseconds apart.
    assert!(take_at(&store, &counters, fp("a"), at_59 + 60_000, 1).is_ok());
    assert!(take_at(&store, &counters, fp("a"), at_59 + 60_000, 1).is_err());
    assert!(take_at(&store, &counters, fp("a"), at_59 + 60_009, 1).is_err());
    assert!(take_at(&store, &counters, fp("a"), at_59 + 60_010, 1).is_ok());
}

#[test]
fn fixed_windows_let_two_max_through_around_a_boundary() {
    // The documented difference: what "fixed" admits and "sliding" refuses.
    let store = MemoryStore::new();
    let counters = [fixed("c", Window::Minute, 10)];
    for i in 0..10 {
        assert!(take_at(&store, &counters, fp("a"), (T0 + 59) * 1000 + i, 1).is_ok());
    }
    for i in 0..10 {
        assert!(take_at(&store, &counters, fp("a"), (T0 + 60) * 1000 + i, 1).is_ok());
    }
}

/// Random calls of random amounts against a sliding counter: no interval
/// of the window's length ever holds more than `max`, and each refusal
/// happens only when the interval ending then, stretched by `slack_ms`,
/// already holds enough that the call would not fit.
fn check_sliding(max_units: u64, window: Window, amounts: &[u64], slack_ms: u64, seed: u64) {
    let store = MemoryStore::new();
    let max = max_units * 1000;
    let counters = [Counter {
        max,
        ..counter("c", window, max_units)
    }];
    let w = window.seconds() * 1000;
    let mut rng = Lcg(seed);
    let mut now = T0 * 1000 + rng.next(w);
    let mut admitted: Vec<(u64, u64)> = Vec::new();
    let mut refusals = 0;
    for _ in 0..3_000 {
        // About 2.5 x max attempts per window.
        now += rng.next(w * 4 / (max_units * 5) + 1);
        let amount = amounts[rng.next(amounts.len() as u64) as usize];
        match take_at(&store, &counters, fp("a"), now, amount) {
            Ok(_) => {
                admitted.push((now, amount));
                assert!(sum_in(&admitted, now, w) <= max, "over max at {now}");
            }
            Err(Denial::Exhausted {
                retry_after_seconds,
                ..
            }) => {
                refusals += 1;
                let held = sum_in(&admitted, now, w + slack_ms);
                assert!(held + amount > max, "refused early at {now}: {held} held");
                assert!(retry_after_seconds >= 1);
            }
            Err(other) => panic!("{other:?}"),
        }
    }
    assert!(refusals > 100, "the test must hit the limit: {refusals}");
    // Every interval, not only those ending at an admission.
    for &(t, _) in &admitted {
        assert!(sum_in(&admitted, t + w - 1, w) <= max);
    }
}

#[test]
fn small_unit_limits_are_exact_in_every_interval() {
    // Up to RECORDS whole calls: exact to the millisecond (no slack).
    for (max, seed) in [(1, 1), (3, 2), (10, 3), (RECORDS as u64, 4)] {
        check_sliding(max, Window::Minute, &[1000], 0, seed);
        check_sliding(max, Window::Second, &[1000], 0, seed + 10);
    }
}

#[test]
fn large_limits_hold_in_every_interval_within_one_sub_window() {
    for (max, window, seed) in [
        (17, Window::Minute, 5),
        (100, Window::Minute, 6),
        (1000, Window::Hour, 7),
        (40, Window::Second, 8),
    ] {
        let sub_window = window.seconds() * 1000 / BUCKETS + 1;
        check_sliding(max, window, &[1000], sub_window, seed);
    }
}

#[test]
fn amounts_hold_in_every_interval() {
    // Spend caps: thousandths, fractional and large amounts mixed.
    let sub_window = 86_400_000 / BUCKETS + 1;
    check_sliding(
        50,
        Window::Day,
        &[250, 1000, 5000, 30, 12_500],
        sub_window,
        9,
    );
    check_sliding(
        3,
        Window::Minute,
        &[250, 500, 1000, 0],
        60_000 / BUCKETS + 1,
        10,
    );
}

#[test]
fn sliding_retry_after_is_when_enough_leaves_the_window() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 3)];
    let t = (T0 + 5) * 1000;
    take_at(&store, &counters, fp("a"), t, 1).unwrap();
    take_at(&store, &counters, fp("a"), t + 10_000, 1).unwrap();
    take_at(&store, &counters, fp("a"), t + 20_000, 1).unwrap();
    let now = t + 30_000;
    // One unit is back when the first call leaves, at t + 60 s.
    assert_eq!(
        exhausted_retry(take_at(&store, &counters, fp("a"), now, 1)).1,
        30
    );
    // Two units only when the second one leaves too.
    assert_eq!(
        exhausted_retry(take_at(&store, &counters, fp("a"), now, 2)).1,
        40
    );
    // More than max never fits: the hint is when the budget is whole.
    assert_eq!(
        exhausted_retry(take_at(&store, &counters, fp("a"), now, 4)).1,
        50
    );
    // Rounded up: at 30.5 s before, the hint is 31 s, never too early.
    assert_eq!(
        exhausted_retry(take_at(&store, &counters, fp("a"), now + 500, 1)).1,
        30
    );
    assert_eq!(
        exhausted_retry(take_at(&store, &counters, fp("a"), t + 59_999, 1)).1,
        1
    );
}

#[test]
fn sliding_retry_after_is_true() {
    // Retrying after the hint succeeds; one millisecond before the exact
    // moment it does not.
    let counters = [counter("c", Window::Minute, 4)];
    let mut rng = Lcg(42);
    for _ in 0..50 {
        let store = MemoryStore::new();
        let mut now = T0 * 1000;
        for _ in 0..4 {
            now += rng.next(20_000);
            take_at(&store, &counters, fp("a"), now, 1).unwrap();
        }
        now += rng.next(20_000);
        let amount = 1 + rng.next(3);
        let (_, retry) = exhausted_retry(take_at(&store, &counters, fp("a"), now, amount));
        let at = now + retry * 1000;
        assert!(take_at(&store, &counters, fp("a"), at - 1000, amount).is_err());
        assert!(take_at(&store, &counters, fp("a"), at, amount).is_ok());
    }
}

#[test]
fn merged_records_stay_within_the_entry_and_count_conservatively() {
    // 200 calls a minute, one every 250 ms: records merge, the sum holds.
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 200)];
    let start = T0 * 1000;
    for i in 0..200 {
        take_at(&store, &counters, fp("a"), start + i * 250, 1).unwrap();
    }
    assert_eq!(
        stored_count(&store, &counters[0], 256, fp("a"), T0 + 50),
        200
    );
    assert!(take_at(&store, &counters, fp("a"), start + 50_000, 1).is_err());
    // After the window, and at most one sub-window more, it is all back.
    let back = start + 49_750 + 60_000 + 60_000 / BUCKETS;
    assert_eq!(
        stored_count(&store, &counters[0], 256, fp("a"), back / 1000 + 1),
        0
    );
}

#[test]
fn fixed_windows_are_one_record_each() {
    let store = MemoryStore::new();
    let counters = [fixed("c", Window::Minute, 1000)];
    for i in 0..500 {
        take_at(&store, &counters, fp("a"), T0 * 1000 + i * 100, 1).unwrap();
    }
    let (bytes, _) = store.get(&slot_key(&counters[0], fp("a"), 256)).unwrap();
    let slot = Slot::decode(&bytes);
    let entry = slot
        .entries
        .iter()
        .find(|e| e.fingerprint == fp("a"))
        .unwrap();
    assert_eq!(entry.records.iter().filter(|r| r.amount > 0).count(), 1);
    assert_eq!(entry.used(Rules::of(&counters[0]), slot.latest), 500);
}

// ---------------------------------------------------------------- one clock per slot

#[test]
fn a_worker_with_a_late_clock_decides_at_the_slot_time() {
    // Worker B's clock reads :00 of the next minute and it spends the new
    // fixed window; worker A, a millisecond behind, must not count into the
    // old window (and wipe B's count) but decide at B's time.
    let store = MemoryStore::new();
    let counters = [fixed("c", Window::Minute, 2)];
    let b = (T0 + 60) * 1000;
    take_at(&store, &counters, fp("a"), b, 1).unwrap();
    take_at(&store, &counters, fp("a"), b, 1).unwrap();
    assert!(take_at(&store, &counters, fp("a"), b - 1, 1).is_err());
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0 + 60), 2);
}

#[test]
fn a_late_clock_cannot_revive_records_another_worker_dropped() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 2)];
    let t = T0 * 1000;
    take_at(&store, &counters, fp("a"), t, 1).unwrap();
    take_at(&store, &counters, fp("a"), t + 30_000, 1).unwrap();
    // A worker at t + 60 s: the first unit has left; it takes it.
    take_at(&store, &counters, fp("a"), t + 60_000, 1).unwrap();
    // A worker whose clock still reads t + 59.999 s decides at t + 60 s:
    // the budget is spent (30 s and 60 s records), whatever its clock says.
    let (_, retry) = exhausted_retry(take_at(&store, &counters, fp("a"), t + 59_999, 1));
    assert_eq!(retry, 31);
}

// ---------------------------------------------------------------- sliding release

#[test]
fn release_gives_back_the_exact_record() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 2)];
    let t = T0 * 1000;
    let first = take_at(&store, &counters, fp("a"), t, 1).unwrap();
    take_at(&store, &counters, fp("a"), t + 40_000, 1).unwrap();
    release(&store, &first);
    // The given-back unit no longer holds the budget until t + 60 s.
    assert!(take_at(&store, &counters, fp("a"), t + 41_000, 1).is_ok());
    let (_, retry) = exhausted_retry(take_at(&store, &counters, fp("a"), t + 42_000, 1));
    assert_eq!(retry, 58);
}

#[test]
fn release_after_a_merge_gives_back_to_the_merged_record() {
    // RECORDS + 1 calls in one sub-window: the later ones merge; giving all
    // back leaves nothing counted.
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 100)];
    let t = T0 * 1000;
    let mut charges = Vec::new();
    for i in 0..(RECORDS as u64 + 5) {
        charges.extend(take_at(&store, &counters, fp("a"), t + i, 1).unwrap());
    }
    for i in 0..(RECORDS as u64 + 5) {
        // Spread over several sub-windows too.
        charges.extend(take_at(&store, &counters, fp("a"), t + 2_500 * i, 1).unwrap());
    }
    assert_eq!(
        stored_count(&store, &counters[0], 256, fp("a"), T0 + 59),
        42
    );
    for c in charges.iter().rev() {
        release(&store, std::slice::from_ref(c));
    }
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0 + 59), 0);
}

#[test]
fn release_after_the_unit_left_the_window_changes_nothing() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 1)];
    let t = T0 * 1000;
    let old = take_at(&store, &counters, fp("a"), t, 1).unwrap();
    take_at(&store, &counters, fp("a"), t + 60_000, 1).unwrap();
    release(&store, &old);
    assert!(take_at(&store, &counters, fp("a"), t + 60_001, 1).is_err());
}

#[test]
fn release_of_a_merged_unit_after_its_own_time_left_the_window_is_skipped() {
    // The unit taken at t merged into a later record of its sub-window;
    // once t itself is out of the window, the record that held it might
    // have been dropped, so nothing is given back (never under-count).
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 100)];
    let t = T0 * 1000;
    let mut first = None;
    for i in 0..=(RECORDS as u64) {
        let c = take_at(&store, &counters, fp("a"), t + i, 1).unwrap();
        first.get_or_insert(c);
    }
    // Call at t + 3.9 s, same sub-window (4 s): the record of t + 16 ms absorbs it.
    take_at(&store, &counters, fp("a"), t + 3_900, 1).unwrap();
    let used = |s| stored_count(&store, &counters[0], 256, fp("a"), s);
    assert_eq!(used(T0 + 1), 18);
    take_at(&store, &counters, fp("a"), t + 60_010, 1).unwrap();
    release(&store, &first.unwrap());
    assert!(used(T0 + 61) >= 1);
}

// ---------------------------------------------------------------- sliding overflow

#[test]
fn a_value_that_gets_an_entry_keeps_what_it_took_from_the_overflow() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 2)];
    let t = T0 * 1000;
    // Eight values fill the entries at t; a ninth uses the overflow budget.
    for i in 0..ENTRIES {
        take_at_slots(&store, &counters, 1, fp(&format!("r{i}")), t).unwrap();
    }
    let over = take_at_slots(&store, &counters, 1, fp("n"), t + 1_000).unwrap();
    assert!(over[0].overflow);
    take_at_slots(&store, &counters, 1, fp("n"), t + 2_000).unwrap();
    // At t + 60 s the eight entries are free again; "n" takes one, but
    // its two overflow units (until t + 61 and 62 s) still count against it.
    let at = t + 60_000;
    let own = take_at_slots(&store, &counters, 1, fp("n"), at);
    let (_, retry) = exhausted_retry(own);
    assert_eq!(retry, 1);
    assert!(take_at_slots(&store, &counters, 1, fp("n"), t + 61_000).is_ok());
    assert!(take_at_slots(&store, &counters, 1, fp("n"), t + 61_000).is_err());
}

fn take_at_slots(
    store: &MemoryStore,
    counters: &[Counter],
    slots: u32,
    who: u64,
    ms: u64,
) -> Result<Vec<Charge>, Denial> {
    acquire(store, counters, slots, &[take(0, who)], ms)
}

#[test]
fn overflow_budget_slides_too() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 1)];
    let t = T0 * 1000;
    for i in 0..ENTRIES {
        take_at_slots(&store, &counters, 1, fp(&format!("r{i}")), t + i as u64).unwrap();
    }
    assert!(take_at_slots(&store, &counters, 1, fp("n"), t + 30_000).unwrap()[0].overflow);
    // Still every entry live (until t + 60 s): the next newcomer shares
    // the spent overflow budget and waits for it.
    let (_, retry) = exhausted_retry(take_at_slots(&store, &counters, 1, fp("m"), t + 59_000));
    assert_eq!(retry, 31);
}

// ---------------------------------------------------------------- concurrency (sliding)

#[test]
fn racing_workers_across_a_boundary_never_exceed_max() {
    // Another worker, its clock a second ahead, takes units between our
    // read and our write, around a minute boundary: still exactly max.
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 3)];
    let ours = (T0 + 59) * 1000 + 999;
    let theirs = ours + 1;
    let done = Rc::new(Cell::new(0));
    let seen = Rc::clone(&done);
    let cs = counters.to_vec();
    *store.before_set.borrow_mut() = Some(Box::new(move |s: &MemoryStore, _key: &str| {
        if seen.get() < 2 {
            seen.set(seen.get() + 1);
            acquire(s, &cs, 256, &[take(0, fp("a"))], theirs).unwrap();
        }
    }));
    take_at(&store, &counters, fp("a"), ours, 1).unwrap();
    assert_eq!(done.get(), 2);
    assert!(take_at(&store, &counters, fp("a"), ours, 1).is_err());
    assert!(take_at(&store, &counters, fp("a"), theirs + 30_000, 1).is_err());
    assert_eq!(stored_count(&store, &counters[0], 256, fp("a"), T0 + 60), 3);
}

#[test]
fn a_hot_reload_to_another_algorithm_keeps_counting() {
    // Records are times and amounts whatever the algorithm: a reload from
    // fixed to sliding still counts what was taken (conservatively).
    let store = MemoryStore::new();
    let t = (T0 + 50) * 1000;
    for _ in 0..5 {
        take_at(&store, &[fixed("c", Window::Minute, 5)], fp("a"), t, 1).unwrap();
    }
    let sliding = [counter("c", Window::Minute, 5)];
    assert!(take_at(&store, &sliding, fp("a"), t + 20_000, 1).is_err());
    assert!(take_at(&store, &sliding, fp("a"), t + 60_000, 1).is_ok());
}

// ---------------------------------------------------------------- in-place layout

/// The slot value of `who` on counter 0 (one slot per counter).
fn slot_bytes(store: &MemoryStore, counters: &[Counter], who: u64) -> SlotBytes {
    SlotBytes(store.get(&slot_key(&counters[0], who, 1)).unwrap().0)
}

#[test]
fn a_call_changes_only_the_header_and_its_own_entry() {
    // The point of the layout: moving the slot's clock must not rewrite
    // other values' records, so a call touches only the bytes it uses.
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 100)];
    let t = T0 * 1000;
    let who: Vec<u64> = (0..ENTRIES).map(|i| fp(&format!("v{i}"))).collect();
    for (i, &v) in who.iter().enumerate() {
        take_at_slots(&store, &counters, 1, v, t + i as u64).unwrap();
    }
    let before = slot_bytes(&store, &counters, who[0]);
    let index = (0..ENTRIES)
        .find(|&i| before.fingerprint(i) == who[3])
        .unwrap();
    take_at_slots(&store, &counters, 1, who[3], t + 5_000).unwrap();
    let after = slot_bytes(&store, &counters, who[0]);
    assert_eq!(after.latest(), t + 5_000);
    assert_eq!(after.base(), before.base());
    let entry_bytes = (SLOT_BYTES - 20) / (ENTRIES + 1);
    let own = 20 + index * entry_bytes..20 + (index + 1) * entry_bytes;
    for (at, (b, a)) in before.0.iter().zip(&after.0).enumerate() {
        if b != a {
            assert!(at < 20 || own.contains(&at), "byte {at} changed");
        }
    }
}

#[test]
fn many_fingerprints_in_one_slot_keep_exact_counts() {
    // Eight values with entries, newcomers in the overflow, all in one
    // slot and interleaved: each keeps its own exact count, and the whole
    // value reads back as what was written.
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Minute, 5)];
    let t = T0 * 1000;
    let who: Vec<u64> = (0..ENTRIES).map(|i| fp(&format!("v{i}"))).collect();
    for round in 0..5u64 {
        for (i, &v) in who.iter().enumerate() {
            take_at_slots(&store, &counters, 1, v, t + round * 1_000 + i as u64).unwrap();
        }
    }
    let now = t + 4_000 + ENTRIES as u64;
    for &v in &who {
        assert_eq!(stored_count(&store, &counters[0], 1, v, now / 1000), 5);
        assert!(take_at_slots(&store, &counters, 1, v, now).is_err());
    }
    for i in 0..3 {
        let charge = take_at_slots(&store, &counters, 1, fp(&format!("n{i}")), now).unwrap();
        assert!(charge[0].overflow);
    }
    let slot = slot_bytes(&store, &counters, who[0]);
    let decoded = Slot::decode(&slot.0);
    assert_eq!(decoded.latest, now);
    assert_eq!(
        decoded.entries[ENTRIES].used(Rules::of(&counters[0]), now),
        3
    );
    for (i, &v) in who.iter().enumerate() {
        let e = decoded.entries.iter().find(|e| e.fingerprint == v).unwrap();
        let mut times: Vec<u64> = e
            .records
            .iter()
            .filter(|r| r.amount > 0)
            .map(|r| r.time)
            .collect();
        times.sort_unstable();
        let expected: Vec<u64> = (0..5).map(|round| t + round * 1_000 + i as u64).collect();
        assert_eq!(times, expected);
    }
    // A minute after their last calls, the first value's records have left
    // the window and its entry serves a newcomer.
    let later = t + 4_000 + 60_000;
    let charge = take_at_slots(&store, &counters, 1, fp("late"), later).unwrap();
    assert!(!charge[0].overflow);
}

#[test]
fn a_time_past_the_offset_range_rebases_and_keeps_live_records() {
    // Month windows (30 days) outlive half the 49-day offset range: a
    // rebase must keep the records still in the window and count them.
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Month, 2)];
    let day = 86_400_000;
    let t = T0 * 1000;
    take_at_slots(&store, &counters, 1, fp("a"), t).unwrap();
    // The first call rebased the empty value (created with base 0).
    assert_eq!(slot_bytes(&store, &counters, fp("a")).base(), t);
    take_at_slots(&store, &counters, 1, fp("b"), t + 22 * day).unwrap();
    take_at_slots(&store, &counters, 1, fp("a"), t + 25 * day).unwrap();
    assert_eq!(slot_bytes(&store, &counters, fp("a")).base(), t);
    // 50 days after the base: the offset of `now` would not fit 32 bits.
    let now = t + 50 * day;
    assert!(now - t > u64::from(u32::MAX));
    take_at_slots(&store, &counters, 1, fp("a"), now).unwrap();
    let slot = slot_bytes(&store, &counters, fp("a"));
    // The records of t (past every window and the offset range) are gone;
    // the oldest kept one, b's at t + 22 days, is the new base.
    assert_eq!(slot.base(), t + 22 * day);
    assert_eq!(slot.latest(), now);
    let rules = Rules::of(&counters[0]);
    let a = (0..ENTRIES)
        .find(|&i| slot.fingerprint(i) == fp("a"))
        .unwrap();
    let mut times: Vec<u64> = slot
        .entry(a)
        .records
        .iter()
        .filter(|r| r.amount > 0)
        .map(|r| r.time)
        .collect();
    times.sort_unstable();
    assert_eq!(times, vec![t + 25 * day, now]);
    assert_eq!(slot.entry(a).used(rules, now), 2);
    // Sliding exactness across the rebase: a is full until its t + 25 days
    // record leaves the window (t + 55 days).
    let (_, retry) = exhausted_retry(take_at_slots(&store, &counters, 1, fp("a"), now));
    assert_eq!(retry, 5 * day / 1000);
    assert!(take_at_slots(&store, &counters, 1, fp("a"), t + 55 * day - 1).is_err());
    assert!(take_at_slots(&store, &counters, 1, fp("a"), t + 55 * day).is_ok());
    // b's record still counts after the rebase, and gives back.
    let b = (0..ENTRIES)
        .find(|&i| slot.fingerprint(i) == fp("b"))
        .unwrap();
    assert_eq!(slot.entry(b).used(rules, now), 1);
}

#[test]
fn release_after_a_rebase_gives_back_to_the_moved_record() {
    let store = MemoryStore::new();
    let counters = [counter("c", Window::Month, 3)];
    let day = 86_400_000;
    let t = T0 * 1000;
    take_at_slots(&store, &counters, 1, fp("old"), t).unwrap();
    let charge = take_at_slots(&store, &counters, 1, fp("a"), t + 40 * day).unwrap();
    take_at_slots(&store, &counters, 1, fp("a"), t + 50 * day).unwrap();
    assert_eq!(slot_bytes(&store, &counters, fp("a")).base(), t + 40 * day);
    release(&store, &charge);
    let now = t + 50 * day;
    assert_eq!(
        stored_count(&store, &counters[0], 1, fp("a"), now / 1000),
        1
    );
}

#[test]
fn values_of_an_earlier_base_read_back_exactly() {
    // A value on an older base (not the oldest record) reads and writes
    // in place without moving any record.
    let latest = (T0 + 30) * 1000;
    let mut slot = Slot {
        latest,
        ..Slot::default()
    };
    slot.entries[2].fingerprint = 42;
    slot.entries[2].records[0] = Record {
        time: latest - 1_000,
        amount: 2,
    };
    let mut bytes = SlotBytes::new(slot.encode());
    assert_eq!(bytes.base(), latest - 1_000);
    bytes.advance(latest + 7);
    let mut entry = bytes.entry(2);
    entry.add(Rules::of(&counter("c", Window::Minute, 9)), latest + 7, 1);
    bytes.put_entry(2, &entry);
    slot.latest = latest + 7;
    slot.entries[2].records[1] = Record {
        time: latest + 7,
        amount: 1,
    };
    assert_eq!(Slot::decode(&bytes.0), slot);
    assert_eq!(bytes.base(), latest - 1_000);
}
