//! Whether a batch's tasks are likely all new to the store, so that its
//! transaction may skip reading them.
//!
//! Outcomes of broker tasks (never admitted) and admissions of new tasks
//! name ids the store has not seen. For such a batch the read of the
//! working set finds nothing, and on some servers it costs more than the
//! write: SecantusDB's `$in` costs grow quadratically with its length. A
//! transaction may instead *assume* that no id exists and insert every
//! document: the outcome is exactly what the read would have led to, and
//! if an id does exist the insert fails on the unique `_id`, the
//! transaction aborts with nothing applied, and the batch is made again
//! with the read. [`FreshHint`] remembers, per operation, whether that
//! assumption held lately, so that a stream of batches that do exist
//! (tasks admitted before they finish) pays for the failed guess only now
//! and then.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

/// After a guess failed, one batch in this many guesses again.
const PROBE_EVERY: u32 = 32;

/// Per-operation memory of whether the "all new" guess held (cheap to
/// clone; clones share it).
#[derive(Clone, Debug, Default)]
pub struct FreshHint {
    /// Batches since the guess last failed: 0 right after a failure,
    /// counting up to [`PROBE_EVERY`]; a guess is made from there on.
    since_failure: Arc<AtomicU32>,
}

impl FreshHint {
    /// A hint that starts by guessing.
    pub fn new() -> Self {
        let hint = FreshHint::default();
        hint.since_failure.store(PROBE_EVERY, Ordering::Relaxed);
        hint
    }

    /// Whether this batch should be tried as all new.
    pub fn guess(&self) -> bool {
        let seen = self.since_failure.load(Ordering::Relaxed);
        if seen >= PROBE_EVERY {
            return true;
        }
        self.since_failure.store(seen + 1, Ordering::Relaxed);
        false
    }

    /// The guess was wrong: an id existed.
    pub fn missed(&self) {
        self.since_failure.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guesses_until_a_miss_then_probes_now_and_then() {
        let hint = FreshHint::new();
        assert!(hint.guess());
        assert!(hint.guess());
        hint.missed();
        let guesses = (0..PROBE_EVERY * 2).filter(|_| hint.guess()).count();
        // After the miss: PROBE_EVERY batches read, then guesses again.
        assert_eq!(guesses, PROBE_EVERY as usize);
    }
}
