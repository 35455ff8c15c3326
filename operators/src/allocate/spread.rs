//! The spread policy: the least loaded executor that fits.

use crate::model::ResourceRequest;

use super::policy::{leftover_score, Score};
use super::{ExecutorState, GpuPick, PlacementPolicy};

/// Places each task on the executor that keeps the most capacity free
/// afterwards (worst fit), spreading load and leaving headroom everywhere.
#[derive(Debug, Default, Clone, Copy)]
pub struct Spread;

impl PlacementPolicy for Spread {
    fn name(&self) -> &'static str {
        "spread"
    }
    fn score(
        &mut self,
        req: &ResourceRequest,
        _index: usize,
        e: &ExecutorState,
        _pick: &GpuPick,
    ) -> Score {
        // The most capacity left afterwards is best.
        Score::of(-leftover_score(req, e))
    }
}
