//! The spread policy: the least loaded executor that fits.

use crate::model::ResourceRequest;

use super::policy::{leftover_score, pick_by_score, Prefer};
use super::{ExecutorState, PlacementPolicy};

/// Places each task on the executor that keeps the most capacity free
/// afterwards (worst fit), spreading load and leaving headroom everywhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct Spread;

impl PlacementPolicy for Spread {
    fn name(&self) -> &'static str {
        "spread"
    }
    fn choose(&mut self, req: &ResourceRequest, executors: &[ExecutorState]) -> Option<usize> {
        pick_by_score(req, executors, Prefer::Highest, leftover_score)
    }
}
