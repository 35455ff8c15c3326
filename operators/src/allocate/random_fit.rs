//! The random-fit policy: a uniformly random executor among those that fit.

use crate::model::ResourceRequest;

use super::{ExecutorState, GpuPick, PlacementPolicy, Score};

/// Picks uniformly among the executors that fit, with a seeded generator
/// (xorshift64*) so that runs are reproducible. A baseline.
#[derive(Debug, Clone)]
pub struct RandomFit {
    state: u64,
    fitting: Vec<usize>,
}

impl RandomFit {
    /// A policy seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        RandomFit {
            state: seed.max(1),
            fitting: Vec::new(),
        }
    }

    fn next(&mut self) -> u64 {
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

impl PlacementPolicy for RandomFit {
    fn name(&self) -> &'static str {
        "random_fit"
    }
    fn score(
        &mut self,
        _req: &ResourceRequest,
        _index: usize,
        _e: &ExecutorState,
        _pick: &GpuPick,
    ) -> Score {
        Score::of(0.0)
    }

    fn cacheable(&self) -> bool {
        false
    }

    fn choose(&mut self, req: &ResourceRequest, executors: &[ExecutorState]) -> Option<usize> {
        self.fitting.clear();
        self.fitting.extend(
            executors
                .iter()
                .enumerate()
                .filter(|(_, e)| e.fit(req).is_some())
                .map(|(i, _)| i),
        );
        if self.fitting.is_empty() {
            return None;
        }
        let pick = (self.next() % self.fitting.len() as u64) as usize;
        Some(self.fitting[pick])
    }
}
