//! The seam from recorded outcomes back to the connector that delivered the
//! record.
//!
//! After the runtime durably records a batch of final outcomes (or
//! dead-letters a batch of rejections), it passes those that came from a
//! connector's source to that connector's [`OutcomeListener`]. The listener
//! publishes what it must (results, dead letters) and only then
//! acknowledges the deliveries to its broker. Listeners are called on
//! dataflow worker threads: they must hand the work off and return at once.

use tidewater_operators::model::{Completion, Rejection};

/// A final outcome that the store has recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Finished {
    /// The final completion (its task carries the acknowledgement token).
    pub completion: Completion,
    /// Whether this recording was the first for the task id; `false` for a
    /// redelivered or duplicate submission whose outcome was already known.
    pub fresh: bool,
}

/// Receives the recorded outcomes of one source's records.
pub trait OutcomeListener: Send + Sync {
    /// Final outcomes, recorded in the store.
    fn finished(&self, batch: Vec<Finished>);
    /// Rejections, recorded as dead letters in the store.
    fn rejected(&self, batch: Vec<Rejection>);
}
