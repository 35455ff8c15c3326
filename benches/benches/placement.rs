//! Placement: every policy choosing executors for a stream of mixed CPU and
//! GPU requests over a 1,000-executor cluster held at about 70% full
//! ([`Placer::choose`], then taking and later giving back the resources),
//! and a shard allocator's whole admission path
//! ([`ShardAllocator::submit`], then [`ShardAllocator::release`]).
//!
//! `placement_scale` runs the default policy (best-fit), FGD and first-fit
//! on clusters of 100, 1,000 and 10,000 executors held equally full, to
//! show whether a decision's cost stays flat as the cluster grows.

mod common;

use std::collections::VecDeque;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use tidewater_operators::allocate::{
    policy_by_name, AllocatorConfig, Decision, ExecutorState, FeasibilityIndex, GpuPick, Placer,
    ShardAllocator, POLICY_NAMES,
};
use tidewater_operators::model::{ExecutorSpec, GpuRequest, Lease, ResourceRequest, Task};

/// Executors in the cluster.
const EXECUTORS: usize = 1_000;
/// Placements held at once per executor (about 70% of the cluster's GPUs).
const HELD_PER_EXECUTOR: f64 = 2.5;
/// Placements held at once on the 1,000-executor cluster.
const HELD: usize = 2_500;
/// Cluster sizes of the scale group.
const SCALE_SIZES: [usize; 3] = [100, 1_000, 10_000];
/// Policies of the scale group.
const SCALE_POLICIES: [&str; 3] = ["best_fit", "fgd", "first_fit"];

/// A cluster of CPU-only and 8-GPU executors.
fn cluster() -> Vec<ExecutorSpec> {
    cluster_of(EXECUTORS)
}

/// A cluster of `size` executors, one in four CPU-only, the rest 8-GPU.
fn cluster_of(size: usize) -> Vec<ExecutorSpec> {
    (0..size)
        .map(|i| {
            let spec = ExecutorSpec::cpu(format!("node-{i}"), 64_000, 256 * 1024);
            if i % 4 == 0 {
                spec
            } else {
                spec.with_gpus(8, "V100")
            }
        })
        .collect()
}

/// The `n`th request of the stream: CPU-only, fractional-GPU and whole-GPU
/// requests in a fixed mix.
fn request(n: u64) -> ResourceRequest {
    let mut request = ResourceRequest::cpu(500 + (n % 8) as u32 * 1_000, 1024);
    request.gpu = match n % 5 {
        0 | 1 => GpuRequest::None,
        2 | 3 => GpuRequest::Fraction(250 * (1 + (n % 3) as u16)),
        _ => GpuRequest::Whole(1 + (n % 4) as u8),
    };
    request
}

fn policies(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement");
    group.throughput(Throughput::Elements(1));
    for name in POLICY_NAMES {
        bench_policy(&mut group, name, name, EXECUTORS, HELD);
    }
    group.finish();
}

fn placement_scale(c: &mut Criterion) {
    let mut group = c.benchmark_group("placement_scale");
    group.throughput(Throughput::Elements(1));
    for name in SCALE_POLICIES {
        for size in SCALE_SIZES {
            let held = (size as f64 * HELD_PER_EXECUTOR) as usize;
            bench_policy(&mut group, &format!("{name}/{size}"), name, size, held);
        }
    }
    group.finish();
}

/// One decision of policy `name` on a `size`-executor cluster holding
/// `held` placements: choose, take, and give back the oldest placement.
fn bench_policy(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    name: &str,
    size: usize,
    held_bound: usize,
) {
    let Some(policy) = policy_by_name(name) else {
        return;
    };
    let executors = cluster_of(size)
        .into_iter()
        .map(ExecutorState::new)
        .collect();
    let mut placer = Placer::new(executors, policy);
    let mut held: VecDeque<(usize, ResourceRequest, GpuPick)> = VecDeque::new();
    let mut n = 0u64;
    let mut step = |placer: &mut Placer, n: &mut u64| {
        *n += 1;
        let req = request(*n);
        placer.observe(&req);
        if let Some((index, pick)) = placer.choose(black_box(&req)) {
            placer.take(index, &req, &pick);
            held.push_back((index, req, pick));
        }
        if held.len() > held_bound {
            if let Some((index, req, pick)) = held.pop_front() {
                placer.give_back(index, &req, &pick);
            }
        }
    };
    // Fill to the steady state first, so that every size is measured
    // equally full rather than while filling.
    for _ in 0..2 * held_bound {
        step(&mut placer, &mut n);
    }
    group.bench_function(id, |b| b.iter(|| step(&mut placer, &mut n)));
}

fn shard_allocator(c: &mut Criterion) {
    let executors = cluster();
    let feasibility = FeasibilityIndex::new(1, executors.iter().cloned().map(|e| (0, e)));
    let Ok(mut allocator) =
        ShardAllocator::new(0, executors, feasibility, &AllocatorConfig::default())
    else {
        return;
    };
    let mut held: VecDeque<Lease> = VecDeque::new();
    let mut decisions = Vec::new();
    let mut n = 0u64;
    let mut group = c.benchmark_group("allocate");
    group.throughput(Throughput::Elements(1));
    group.bench_function("submit_release", |b| {
        b.iter(|| {
            n += 1;
            let task = Task::new(format!("t{n}"), "noop", request(n));
            allocator.submit(task, n, &mut decisions);
            for decision in decisions.drain(..) {
                if let Decision::Assign(assignment) = decision {
                    held.push_back(assignment.lease);
                }
            }
            if held.len() > HELD {
                if let Some(lease) = held.pop_front() {
                    black_box(allocator.release(lease));
                }
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::quick(2, 30);
    targets = policies, placement_scale, shard_allocator
}
criterion_main!(benches);
