//! Placement policies: which of the executors that fit gets the task.
//!
//! A policy scores placing a request on one executor; the executor with the
//! lowest [`Score`] that fits wins, ties going to the earliest in registry
//! order. Because a score depends only on the request and that executor's
//! state, the [`Placer`](super::Placer) caches scores per request shape
//! and rescores only executors whose state changed. A policy whose choice is
//! not a function of per-executor scores (random fit) says so with
//! [`PlacementPolicy::cacheable`] and implements
//! [`choose`](PlacementPolicy::choose) itself.

use std::cmp::Ordering;

use crate::model::ResourceRequest;

use super::{ExecutorState, GpuPick};

/// How good a placement is: compared lexicographically, lower is better.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score(pub f64, pub f64);

impl Score {
    /// The score of an executor that does not fit: worse than any other.
    pub const UNFIT: Score = Score(f64::INFINITY, f64::INFINITY);

    /// A single-criterion score.
    pub fn of(value: f64) -> Score {
        Score(value, 0.0)
    }

    /// Whether this is a real score (the executor fits).
    pub fn fits(&self) -> bool {
        self.0 != f64::INFINITY
    }

    /// Total order (NaN sorts last, like unfit).
    pub fn total_cmp(&self, other: &Score) -> Ordering {
        self.0
            .total_cmp(&other.0)
            .then_with(|| self.1.total_cmp(&other.1))
    }
}

/// Chooses an executor for a request among a shard's executors.
pub trait PlacementPolicy: Send {
    /// The policy's configuration name.
    fn name(&self) -> &'static str;

    /// The score of placing `req` on executor `index`, whose state `e` fits
    /// `req` with the GPU devices `pick`. Lower is better.
    fn score(
        &mut self,
        req: &ResourceRequest,
        index: usize,
        e: &ExecutorState,
        pick: &GpuPick,
    ) -> Score;

    /// Whether the choice is the lowest score (so scores may be cached).
    fn cacheable(&self) -> bool {
        true
    }

    /// Changes whenever the scoring function itself changes (for example
    /// the fragmentation-aware policy's task mix), invalidating cached
    /// scores.
    fn generation(&self) -> u64 {
        0
    }

    /// Index of the chosen executor, or `None` if none fits now, computed
    /// without a cache: the lowest score among executors that fit.
    fn choose(&mut self, req: &ResourceRequest, executors: &[ExecutorState]) -> Option<usize> {
        let mut best: Option<(usize, Score)> = None;
        for (i, e) in executors.iter().enumerate() {
            let Some(pick) = e.fit(req) else {
                continue;
            };
            let s = self.score(req, i, e, &pick);
            if best.is_none_or(|(_, b)| s.total_cmp(&b) == Ordering::Less) {
                best = Some((i, s));
            }
        }
        best.map(|(i, _)| i)
    }

    /// Sees every request submitted, placed or not, so that policies that
    /// model the workload (the fragmentation-aware one) can learn its mix.
    fn observe(&mut self, _req: &ResourceRequest) {}
}

/// The first executor, in registry order, that fits.
#[derive(Debug, Default, Clone, Copy)]
pub struct FirstFit;

impl PlacementPolicy for FirstFit {
    fn name(&self) -> &'static str {
        "first_fit"
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
    fn choose(&mut self, req: &ResourceRequest, executors: &[ExecutorState]) -> Option<usize> {
        executors.iter().position(|e| e.fit(req).is_some())
    }
}

/// The executor that fits and has the least capacity left afterwards (summed
/// over dimensions as fractions of capacity), packing tightly.
#[derive(Debug, Default, Clone, Copy)]
pub struct BestFit;

impl PlacementPolicy for BestFit {
    fn name(&self) -> &'static str {
        "best_fit"
    }
    fn score(
        &mut self,
        req: &ResourceRequest,
        _index: usize,
        e: &ExecutorState,
        _pick: &GpuPick,
    ) -> Score {
        Score::of(leftover_score(req, e))
    }
}

/// Sum over dimensions of the free fraction left after placing `req` on `e`.
pub(crate) fn leftover_score(req: &ResourceRequest, e: &ExecutorState) -> f64 {
    let frac = |free: u64, used: u64, cap: u64| {
        if cap == 0 {
            0.0
        } else {
            free.saturating_sub(used) as f64 / cap as f64
        }
    };
    let gpu_cap = e.spec.gpus.len() as u64 * 1000;
    frac(e.free_cpu_milli, u64::from(req.cpu_milli), e.spec.cpu_milli)
        + frac(
            e.free_memory_mib,
            u64::from(req.memory_mib),
            e.spec.memory_mib,
        )
        + frac(e.free_gpu_total(), u64::from(req.gpu.milli()), gpu_cap)
}

/// Names accepted by [`policy_by_name`].
pub const POLICY_NAMES: &[&str] = &[
    "first_fit",
    "best_fit",
    "spread",
    "dot_product",
    "random_fit",
    "fgd",
];

/// Builds a policy from its configuration name. The fragmentation-aware
/// policy starts with an empty task mix and learns it from the requests it
/// observes; [`super::Fgd::with_mix`] seeds it with a known one.
pub fn policy_by_name(name: &str) -> Option<Box<dyn PlacementPolicy>> {
    match name {
        "first_fit" => Some(Box::new(FirstFit)),
        "best_fit" => Some(Box::new(BestFit)),
        "spread" => Some(Box::new(super::Spread)),
        "dot_product" => Some(Box::new(super::DotProduct)),
        "random_fit" => Some(Box::new(super::RandomFit::new(0x5eed))),
        "fgd" => Some(Box::new(super::Fgd::new())),
        _ => None,
    }
}
