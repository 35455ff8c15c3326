//! The placement engine: a shard's executors, its policy, and the score
//! cache that makes each decision cost O(changes · log n) instead of O(n).
//!
//! Every mutation of an executor goes through [`Placer::executor_mut`] (or
//! [`Placer::take`], [`Placer::give_back`], [`Placer::push`]), which notes the
//! change for the cache. A decision is checked against the executor's actual
//! state before it is returned, so a stale cache can cost optimality, never
//! correctness.

use crate::model::ResourceRequest;

use super::{ExecutorState, GpuPick, PlacementPolicy, ScoreCache};

/// Executors, a policy and cached scores.
pub struct Placer {
    executors: Vec<ExecutorState>,
    policy: Box<dyn PlacementPolicy>,
    cache: ScoreCache,
}

impl Placer {
    /// A placer over `executors` with `policy`.
    pub fn new(executors: Vec<ExecutorState>, policy: Box<dyn PlacementPolicy>) -> Self {
        Placer {
            executors,
            policy,
            cache: ScoreCache::new(),
        }
    }

    /// The executors.
    pub fn executors(&self) -> &[ExecutorState] {
        &self.executors
    }

    /// Executor `index`, to change; the change is noted for the cache.
    pub fn executor_mut(&mut self, index: usize) -> &mut ExecutorState {
        self.cache.touch(index, self.executors.len());
        &mut self.executors[index]
    }

    /// Adds an executor; returns its index.
    pub fn push(&mut self, executor: ExecutorState) -> usize {
        self.executors.push(executor);
        self.executors.len() - 1
    }

    /// The policy's name.
    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    /// Lets the policy see a submitted request (to learn the task mix).
    pub fn observe(&mut self, req: &ResourceRequest) {
        self.policy.observe(req);
    }

    /// The executor the policy chooses for `req` and the GPU devices it
    /// would take there, or `None` if nothing fits now.
    pub fn choose(&mut self, req: &ResourceRequest) -> Option<(usize, GpuPick)> {
        let cached = self
            .cache
            .choose(self.policy.as_mut(), req, &self.executors);
        if let Some(index) = cached {
            if let Some(pick) = self.executors[index].fit(req) {
                return Some((index, pick));
            }
        }
        // Reaching here with a stale choice, or (checked in debug builds)
        // missing a fitting executor, would be a bookkeeping bug; a scan
        // keeps the decision correct regardless.
        if cached.is_some() || cfg!(debug_assertions) {
            let scanned = self
                .policy
                .choose(req, &self.executors)
                .and_then(|i| self.executors[i].fit(req).map(|pick| (i, pick)));
            debug_assert!(
                scanned.is_none() || !self.policy.cacheable(),
                "score cache missed a fitting executor for {req:?}"
            );
            return scanned;
        }
        None
    }

    /// Takes `req` on executor `index` with the devices `pick`.
    pub fn take(&mut self, index: usize, req: &ResourceRequest, pick: &GpuPick) {
        self.executor_mut(index).take(req, pick);
    }

    /// Gives back what [`take`](Self::take) took.
    pub fn give_back(&mut self, index: usize, req: &ResourceRequest, pick: &GpuPick) {
        self.executor_mut(index).give_back(req, pick);
    }
}
