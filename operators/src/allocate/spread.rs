//! The spread policy: the least loaded executor that fits.

use crate::model::ResourceRequest;

use super::policy::leftover_score;
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
        executors
            .iter()
            .enumerate()
            .filter(|(_, e)| e.fit(req).is_some())
            .map(|(i, e)| (i, leftover_score(req, e)))
            .max_by(|a, b| a.1.total_cmp(&b.1).then(b.0.cmp(&a.0)))
            .map(|(i, _)| i)
    }
}
