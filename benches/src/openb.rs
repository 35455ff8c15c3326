//! Replay of the openb GPU cluster trace (Alibaba, ATC '23) through
//! placement policies, to saturation.
//!
//! The node list becomes the cluster; the pod list defines the workload mix.
//! Following the FGD paper's method, pods are drawn at random (with
//! replacement, seeded) from the trace and submitted one after another, each
//! placed by the policy or counted as failed, until the GPU demand that has
//! arrived equals the cluster's GPU capacity: that is saturation, where the
//! share of GPU capacity still unallocated is reported. The allocation curve
//! records (arrived demand, allocated) every 2% of capacity. The first pod
//! that failed to place is reported too.

use std::path::Path;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use tidewater_operators::allocate::{
    policy_by_name, ExecutorState, Fgd, PlacementPolicy, Placer, TaskMix,
};
use tidewater_operators::model::{ExecutorSpec, Name, ResourceRequest};

pub use tidewater_connectors::trace::openb::{parse_nodes, parse_pods, read_nodes, read_pods};
use tidewater_connectors::trace::TraceError;

/// Why a replay could not run.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A trace file could not be read or parsed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The policy name is not known.
    #[error("unknown policy {0:?}")]
    UnknownPolicy(String),
    /// Nothing to replay.
    #[error("{0}")]
    Empty(String),
}

/// One point of the allocation curve, as shares of cluster GPU capacity.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CurvePoint {
    /// GPU demand submitted so far.
    pub arrived: f64,
    /// GPU capacity allocated so far.
    pub allocated: f64,
}

/// The result of a replay (averaged over runs where it says so).
#[derive(Clone, Debug, Serialize)]
pub struct ReplayReport {
    /// Policy name.
    pub policy: String,
    /// Nodes in the cluster.
    pub nodes: usize,
    /// GPUs in the cluster.
    pub gpus: usize,
    /// Pods in the trace (the mix).
    pub trace_pods: usize,
    /// Independent runs averaged.
    pub runs: usize,
    /// Pods submitted per run, on average.
    pub submitted: f64,
    /// Pods placed per run, on average.
    pub placed: f64,
    /// Placement decisions per second (placed or failed), over all runs.
    pub placements_per_sec: f64,
    /// Share of GPU capacity unallocated when arrived demand reached
    /// capacity, averaged over runs.
    pub unallocated_gpu_share_at_saturation: f64,
    /// Arrived demand (share of capacity) when the first pod failed to
    /// place, averaged over runs.
    pub first_failure_at_arrived_share: f64,
    /// Allocation curve of the first run.
    pub curve: Vec<CurvePoint>,
}

/// Builds the named policy; `fgd` is seeded with the trace's mix, as the
/// paper assumes the workload distribution is known.
pub(crate) fn policy(
    name: &str,
    pods: &[ResourceRequest],
    seed: u64,
) -> Result<Box<dyn PlacementPolicy>, ReplayError> {
    match name {
        "fgd" => Ok(Box::new(Fgd::with_mix(TaskMix::from_requests(pods)))),
        "random_fit" => Ok(Box::new(tidewater_operators::allocate::RandomFit::new(
            seed,
        ))),
        other => policy_by_name(other).ok_or_else(|| ReplayError::UnknownPolicy(other.to_string())),
    }
}

/// Replays `pods` on `nodes` with `policy_name`, `runs` times from `seed`.
pub fn replay(
    nodes: &[ExecutorSpec],
    pods: &[ResourceRequest],
    policy_name: &str,
    seed: u64,
    runs: usize,
) -> Result<ReplayReport, ReplayError> {
    let capacity: u64 = nodes.iter().map(|n| n.gpus.len() as u64 * 1000).sum();
    if capacity == 0 {
        return Err(ReplayError::Empty("the cluster has no GPUs".into()));
    }
    let runs = runs.max(1);
    let (mut decisions, mut seconds) = (0u64, 0.0f64);
    let (mut submitted, mut placed, mut unallocated, mut first_failure) = (0.0, 0.0, 0.0, 0.0);
    let mut curve = Vec::new();
    for run in 0..runs {
        let run_seed = seed.wrapping_add(run as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(run_seed);
        let executors: Vec<ExecutorState> = nodes.iter().cloned().map(ExecutorState::new).collect();
        let mut placer = Placer::new(executors, policy(policy_name, pods, run_seed)?);
        let (mut arrived, mut allocated, mut count, mut ok) = (0u64, 0u64, 0u64, 0u64);
        let mut first: Option<f64> = None;
        let mut next_point = 0.0;
        let started = Instant::now();
        while arrived < capacity {
            let pod = &pods[rng.random_range(0..pods.len())];
            count += 1;
            arrived += u64::from(pod.gpu.milli());
            if let Some((index, pick)) = placer.choose(pod) {
                placer.take(index, pod, &pick);
                allocated += u64::from(pod.gpu.milli());
                ok += 1;
            } else if first.is_none() {
                first = Some(arrived as f64 / capacity as f64);
            }
            if run == 0 && arrived as f64 / capacity as f64 >= next_point {
                curve.push(CurvePoint {
                    arrived: arrived as f64 / capacity as f64,
                    allocated: allocated as f64 / capacity as f64,
                });
                next_point += 0.02;
            }
        }
        seconds += started.elapsed().as_secs_f64();
        decisions += count;
        submitted += count as f64;
        placed += ok as f64;
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

/// A cluster of `size` nodes keeping the trace's mix of node types: an
/// even sample of the list when smaller, the list repeated when larger (ids
/// made unique).
pub fn resize_cluster(nodes: &[ExecutorSpec], size: usize) -> Vec<ExecutorSpec> {
    (0..size)
        .map(|i| {
            let index = if size <= nodes.len() {
                i * nodes.len() / size
            } else {
                i % nodes.len()
            };
            let mut spec = nodes[index].clone();
            spec.id = Name::from(format!("{}-{}", spec.id, i / nodes.len()));
            spec
        })
        .collect()
}

/// Reads the trace files and replays them (the `tidewater replay` command).
pub fn replay_openb(
    nodes_path: &Path,
    pods_path: &Path,
    policy_name: &str,
    seed: u64,
    runs: usize,
) -> Result<ReplayReport, ReplayError> {
    let nodes = read_nodes(nodes_path)?;
    let pods = read_pods(pods_path)?;
    replay(&nodes, &pods, policy_name, seed, runs)
}
