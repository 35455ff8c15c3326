//! The openb replay over several shards in parallel, as the live
//! coordinator runs them: one thread per shard, epochs, capacity summaries.
//!
//! ```text
//!  pods (drawn as in the single-shard replay) ──► round-robin to shards
//!  each epoch, every shard in parallel:
//!     forwarded pods from the last epoch, then its new pods:
//!       place locally ─► else move to a shard whose summary (as of the
//!       epoch's start) fits ─► else count as not placed
//!  end of epoch: summaries refreshed, moved pods delivered
//! ```
//!
//! A pod moves at most once, like in the live coordinator. The report has
//! the same fields as the single-shard replay, so placement quality with
//! several shards can be compared number by number.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use tidewater_operators::allocate::{CapacitySummary, ExecutorState, Placer};
use tidewater_operators::model::{ExecutorSpec, ResourceRequest};

use crate::openb::{policy, CurvePoint, ReplayError, ReplayReport};

/// Pods each shard takes per epoch.
pub const EPOCH_PODS: usize = 256;

struct Shard {
    placer: Placer,
    inbox: Vec<ResourceRequest>,
    outbox: Vec<(usize, ResourceRequest)>,
    allocated: u64,
    placed: u64,
    failed: u64,
}

impl Shard {
    /// Places this epoch's pods; what fits nowhere here moves (once) to a
    /// shard whose summary fits, or fails.
    fn run_epoch(&mut self, new: &[ResourceRequest], summaries: &mut [Option<CapacitySummary>]) {
        let forwarded = std::mem::take(&mut self.inbox);
        for pod in forwarded.iter() {
            if !self.place(pod) {
                self.failed += 1;
            }
        }
        for pod in new {
            if self.place(pod) {
                continue;
            }
            let target = summaries
                .iter_mut()
                .position(|s| s.as_mut().is_some_and(|s| s.take(pod)));
            match target {
                Some(shard) => self.outbox.push((shard, pod.clone())),
                None => self.failed += 1,
            }
        }
    }

    fn place(&mut self, pod: &ResourceRequest) -> bool {
        match self.placer.choose(pod) {
            Some((index, pick)) => {
                self.placer.take(index, pod, &pick);
                self.allocated += u64::from(pod.gpu.milli());
                self.placed += 1;
                true
            }
            None => false,
        }
    }
}

/// Replays `pods` on `nodes` split over `shards` shards (node `i` in shard
/// `i % shards`), `runs` times from `seed`.
pub fn replay_sharded(
    nodes: &[ExecutorSpec],
    pods: &[ResourceRequest],
    policy_name: &str,
    seed: u64,
    runs: usize,
    shards: usize,
) -> Result<ReplayReport, ReplayError> {
    let capacity: u64 = nodes.iter().map(|n| n.gpus.len() as u64 * 1000).sum();
    if capacity == 0 {
        return Err(ReplayError::Empty("the cluster has no GPUs".into()));
    }
    let (runs, shards) = (runs.max(1), shards.max(1));
    let (mut decisions, mut seconds) = (0u64, 0.0f64);
    let (mut submitted, mut placed, mut unallocated, mut first_failure) = (0.0, 0.0, 0.0, 0.0);
    let mut curve = Vec::new();
    for run in 0..runs {
        let run_seed = seed.wrapping_add(run as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(run_seed);
        let mut state: Vec<Shard> = Vec::with_capacity(shards);
        for s in 0..shards {
            let executors: Vec<ExecutorState> = nodes
                .iter()
                .enumerate()
                .filter(|(i, _)| i % shards == s)
                .map(|(_, n)| ExecutorState::new(n.clone()))
                .collect();
            state.push(Shard {
                placer: Placer::new(executors, policy(policy_name, pods, run_seed)?),
                inbox: Vec::new(),
                outbox: Vec::new(),
                allocated: 0,
                placed: 0,
                failed: 0,
            });
        }
        let (mut arrived, mut count) = (0u64, 0u64);
        let mut first: Option<f64> = None;
        let started = Instant::now();
        let mut batches: Vec<Vec<ResourceRequest>> = vec![Vec::new(); shards];
        loop {
            for batch in &mut batches {
                batch.clear();
            }
            'draw: for _ in 0..EPOCH_PODS {
                for batch in batches.iter_mut() {
                    if arrived >= capacity {
                        break 'draw;
                    }
                    let pod = &pods[rng.random_range(0..pods.len())];
                    arrived += u64::from(pod.gpu.milli());
                    count += 1;
                    batch.push(pod.clone());
                }
            }
            let pending = state.iter().any(|s| !s.inbox.is_empty());
            if batches.iter().all(Vec::is_empty) && !pending {
                break;
            }
            let summaries: Vec<Option<CapacitySummary>> = state
                .iter()
                .map(|s| Some(CapacitySummary::of(s.placer.executors())))
                .collect();
            let failed_before: u64 = state.iter().map(|s| s.failed).sum();
            std::thread::scope(|scope| {
                for (s, (shard, batch)) in state.iter_mut().zip(&batches).enumerate() {
                    let mut peers = summaries.clone();
                    peers[s] = None;
                    scope.spawn(move || shard.run_epoch(batch, &mut peers));
                }
            });
            let moved: Vec<(usize, ResourceRequest)> =
                state.iter_mut().flat_map(|s| s.outbox.drain(..)).collect();
            for (target, pod) in moved {
                state[target].inbox.push(pod);
            }
            let failed_after: u64 = state.iter().map(|s| s.failed).sum();
            if first.is_none() && failed_after > failed_before {
                first = Some(arrived as f64 / capacity as f64);
            }
            if run == 0 {
                let allocated: u64 = state.iter().map(|s| s.allocated).sum();
                curve.push(CurvePoint {
                    arrived: arrived as f64 / capacity as f64,
                    allocated: allocated as f64 / capacity as f64,
                });
            }
        }
        seconds += started.elapsed().as_secs_f64();
        decisions += count;
        submitted += count as f64;
        placed += state.iter().map(|s| s.placed).sum::<u64>() as f64;
        let allocated: u64 = state.iter().map(|s| s.allocated).sum();
        unallocated += 1.0 - allocated as f64 / capacity as f64;
        first_failure += first.unwrap_or(1.0);
    }
    let n = runs as f64;
    Ok(ReplayReport {
        policy: policy_name.to_string(),
        nodes: nodes.len(),
        gpus: (capacity / 1000) as usize,
        trace_pods: pods.len(),
        runs,
        submitted: submitted / n,
        placed: placed / n,
        placements_per_sec: decisions as f64 / seconds.max(1e-9),
        unallocated_gpu_share_at_saturation: unallocated / n,
        first_failure_at_arrived_share: first_failure / n,
        curve,
    })
}
