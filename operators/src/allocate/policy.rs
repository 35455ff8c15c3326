//! Placement policies: which of the executors that fit gets the task.

use crate::model::ResourceRequest;

use super::ExecutorState;

/// Chooses an executor for a request among a shard's executors.
pub trait PlacementPolicy: Send {
    /// The policy's configuration name.
    fn name(&self) -> &'static str;
    /// Index of the chosen executor, or `None` if none fits now.
    fn choose(&mut self, req: &ResourceRequest, executors: &[ExecutorState]) -> Option<usize>;

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
    fn choose(&mut self, req: &ResourceRequest, executors: &[ExecutorState]) -> Option<usize> {
        pick_by_score(req, executors, Prefer::Lowest, leftover_score)
    }
}

/// Which end of a score a policy wants.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Prefer {
    /// The smallest score wins.
    Lowest,
    /// The largest score wins.
    Highest,
}

/// The executor that fits `req` with the preferred `score`; ties go to the
/// earliest in registry order.
pub(crate) fn pick_by_score(
    req: &ResourceRequest,
    executors: &[ExecutorState],
    prefer: Prefer,
    score: impl Fn(&ResourceRequest, &ExecutorState) -> f64,
) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for (i, e) in executors.iter().enumerate() {
        if e.fit(req).is_none() {
            continue;
        }
        let s = score(req, e);
        let better = match best {
            None => true,
            Some((_, b)) => match prefer {
                Prefer::Lowest => s < b,
                Prefer::Highest => s > b,
            },
        };
        if better {
            best = Some((i, s));
        }
    }
    best.map(|(i, _)| i)
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
