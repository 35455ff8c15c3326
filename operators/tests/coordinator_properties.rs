//! Property tests of one and two coordinator shards under a churning cluster
//! (inter-shard feedback delivered as the dataflow would):
//! random submissions, completions (success, failure, timeout), retries,
//! cancellations, executors joining, heartbeating, leaving and going silent
//! (declared lost after their TTL), reservations, and time passing.
//!
//! A simulated executor side runs what the coordinator assigns and obeys
//! its aborts. After every step: no executor, device or reservation is over
//! capacity and the books balance; no task ever has two attempts running at
//! once. At the end, with every attempt finished and time run out: every
//! task ended exactly once (a final completion or a rejection), nothing is
//! queued, and every executor is back to full capacity.

use std::collections::{BTreeMap, HashMap};

use proptest::prelude::*;

use tidewater_operators::allocate::{
    AllocatorConfig, FeasibilityIndex, ResourceQuota, ShardAllocator, TenantConfig,
};
use tidewater_operators::dataflow::{CoordinatorOutputs, CoordinatorState, Feedback, RetryPolicy};
use tidewater_operators::model::{
    AbortReason, Assignment, Completion, ControlCommand, ExecutorSpec, ExecutorWork, GpuRequest,
    Lease, Name, Outcome, ReservationHolder, ReservationRequest, ResourceRequest, Task,
};

const TTL_MS: u64 = 1_000;

fn static_executors() -> Vec<ExecutorSpec> {
    vec![
        ExecutorSpec::cpu("static-cpu", 4000, 8192),
        ExecutorSpec::cpu("static-gpu", 8000, 16384).with_gpus(2, "A100"),
    ]
}

fn dynamic_executor(k: u8) -> ExecutorSpec {
    match k % 3 {
        0 => ExecutorSpec::cpu(format!("dyn-{k}"), 2000, 4096),
        1 => ExecutorSpec::cpu(format!("dyn-{k}"), 8000, 8192).with_gpus(4, "V100"),
        _ => ExecutorSpec::cpu(format!("dyn-{k}"), 4000, 8192).with_gpus(1, "A100"),
    }
}

fn request() -> impl Strategy<Value = ResourceRequest> {
    (1u32..4000, 0u32..8000, 0u8..5, 1u16..1000, 1u8..3).prop_map(|(cpu, mem, kind, milli, n)| {
        ResourceRequest {
            cpu_milli: cpu,
            memory_mib: mem,
            gpu: match kind {
                0 => GpuRequest::Fraction(milli),
                1 => GpuRequest::Whole(n),
                _ => GpuRequest::None,
            },
            ..Default::default()
        }
    })
}

#[derive(Debug, Clone)]
enum Op {
    Submit {
        req: ResourceRequest,
        tenant: u8,
        max_attempts: u16,
        deadline_in_ms: Option<u64>,
    },
    Finish {
        pick: usize,
        outcome: u8,
    },
    Cancel(usize),
    Join(u8),
    Heartbeat(u8),
    Leave(u8),
    Reserve {
        tenant: u8,
        req: ResourceRequest,
        for_ms: u64,
    },
    Unreserve(u8),
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (request(), 0u8..3, 1u16..4, proptest::option::of(0u64..3000)).prop_map(
            |(req, tenant, max_attempts, deadline_in_ms)| Op::Submit { req, tenant, max_attempts, deadline_in_ms }
        ),
        5 => (any::<usize>(), 0u8..4).prop_map(|(pick, outcome)| Op::Finish { pick, outcome }),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => (0u8..6).prop_map(Op::Join),
        3 => (0u8..6).prop_map(Op::Heartbeat),
        1 => (0u8..6).prop_map(Op::Leave),
        1 => (0u8..3, request(), 100u64..3000).prop_map(|(tenant, req, for_ms)| Op::Reserve { tenant, req, for_ms }),
        1 => (0u8..4).prop_map(Op::Unreserve),
        3 => (1u64..1500).prop_map(Op::Advance),
    ]
}

fn tenant(k: u8) -> Name {
    Name::from(format!("tenant-{k}"))
}

/// Shard `index` of `shards`: static executor `i` belongs to shard `i % shards`.
fn coordinator(shards: usize, index: usize) -> CoordinatorState {
    let owned = |i: usize| (i % shards) as u32;
    let feasibility = FeasibilityIndex::new(
        shards,
        static_executors()
            .into_iter()
            .enumerate()
            .map(|(i, s)| (owned(i), s)),
    );
    let mine: Vec<ExecutorSpec> = static_executors()
        .into_iter()
        .enumerate()
        .filter(|(i, _)| owned(*i) == index as u32)
        .map(|(_, s)| s)
        .collect();
    let mut tenants = BTreeMap::new();
    tenants.insert(
        tenant(0),
        TenantConfig {
            weight: 2.0,
            quota: Some(ResourceQuota {
                cpu_milli: Some(6000),
                memory_mib: None,
                gpu_milli: Some(3000),
            }),
        },
    );
    let config = AllocatorConfig {
        policy: "best_fit".into(),
        backfill_depth: 8,
        heartbeat_ttl_ms: TTL_MS,
        tenants,
        ..AllocatorConfig::default()
    };
    let allocator =
        ShardAllocator::new(index as u32, mine, feasibility, &config).expect("allocator");
    let retry = RetryPolicy {
        initial_backoff_ms: 50,
        multiplier: 2.0,
        max_backoff_ms: 400,
    };
    CoordinatorState::new(allocator, retry, false)
}

/// The executor side and the books of what ended.
#[derive(Default)]
struct World {
    running: HashMap<(u32, Lease), Assignment>,
    /// Completions produced by the executor side, to feed back.
    returned: Vec<Completion>,
    /// Feedback between shards (forwards, quota releases, summaries).
    in_flight: Vec<Feedback>,
    ended: HashMap<String, usize>,
    submitted: Vec<String>,
}

impl World {
    fn absorb(
        &mut self,
        shard: u32,
        out: &mut CoordinatorOutputs,
        now_us: u64,
    ) -> Result<(), TestCaseError> {
        for work in out.work.drain(..) {
            match work {
                ExecutorWork::Run(a) => {
                    prop_assert!(
                        !self.running.values().any(|r| r.task.id == a.task.id),
                        "task {} assigned while an attempt of it still runs",
                        a.task.id
                    );
                    self.running.insert((a.shard, a.lease), a);
                }
                ExecutorWork::Abort { lease, reason } => {
                    if let Some(a) = self.running.remove(&(shard, lease)) {
                        let outcome = match reason {
                            AbortReason::Cancelled => Outcome::Cancelled,
                            AbortReason::ExecutorLost => Outcome::Failed {
                                reason: "lost".into(),
                            },
                        };
                        self.returned.push(complete(a, outcome, now_us));
                    }
                }
            }
        }
        for c in out.finals.drain(..) {
            prop_assert!(c.is_final);
            *self.ended.entry(c.task.id.to_string()).or_default() += 1;
        }
        for r in out.rejections.drain(..) {
            let id = r.task_id.expect("coordinator rejections name the task");
            *self.ended.entry(id.to_string()).or_default() += 1;
        }
        self.in_flight.append(&mut out.forwards);
        Ok(())
    }
}

fn complete(a: Assignment, outcome: Outcome, now_us: u64) -> Completion {
    Completion {
        executor: a.executor,
        shard: a.shard,
        lease: a.lease,
        outcome,
        started_at_us: a.assigned_at_us,
        finished_at_us: now_us,
        exit_code: None,
        output_bytes: 0,
        is_final: false,
        result: None,
        task: a.task,
    }
}

fn step_checks(state: &CoordinatorState) -> Result<(), TestCaseError> {
    let alloc = state.allocator();
    alloc
        .check_invariants()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    for e in alloc.executors() {
        prop_assert!(e.free_cpu_milli <= e.spec.cpu_milli);
        prop_assert!(e.free_memory_mib <= e.spec.memory_mib);
        prop_assert!(e.free_gpu_milli.iter().all(|&m| m <= 1000));
    }
    let quota = alloc.tenants().quota_usage("tenant-0");
    prop_assert!(
        quota.cpu_milli <= 6000 && quota.gpu_milli <= 3000,
        "quota exceeded: {:?}",
        quota
    );
    Ok(())
}

/// Delivers completions and inter-shard feedback, ticking every shard,
/// until nothing is in flight.
fn settle(
    states: &mut [CoordinatorState],
    world: &mut World,
    now_us: u64,
) -> Result<(), TestCaseError> {
    let mut out = CoordinatorOutputs::default();
    for _ in 0..100 {
        let returned = std::mem::take(&mut world.returned);
        let feedback = std::mem::take(&mut world.in_flight);
        for c in returned {
            let shard = c.shard;
            states[shard as usize].on_feedback(Feedback::Completed(c), now_us, &mut out);
            world.absorb(shard, &mut out, now_us)?;
        }
        for f in feedback {
            let shard = f.shard();
            states[shard as usize].on_feedback(f, now_us, &mut out);
            world.absorb(shard, &mut out, now_us)?;
        }
        for (shard, state) in states.iter_mut().enumerate() {
            state.tick(now_us, &mut out);
            world.absorb(shard as u32, &mut out, now_us)?;
        }
        if world.returned.is_empty() && world.in_flight.is_empty() {
            return Ok(());
        }
    }
    Err(TestCaseError::fail("feedback never settled"))
}

/// Applies a control command on every shard (the dataflow broadcasts it).
fn broadcast(
    states: &mut [CoordinatorState],
    world: &mut World,
    command: ControlCommand,
    now_us: u64,
) -> Result<(), TestCaseError> {
    let mut out = CoordinatorOutputs::default();
    for (shard, state) in states.iter_mut().enumerate() {
        state.on_control(command.clone(), now_us, &mut out);
        world.absorb(shard as u32, &mut out, now_us)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn churn_never_overcommits_loses_or_doubles_a_task(
        ops in proptest::collection::vec(op(), 1..200),
        shards in 1usize..=2,
    ) {
        let mut states: Vec<CoordinatorState> = (0..shards).map(|i| coordinator(shards, i)).collect();
        let mut world = World::default();
        let mut out = CoordinatorOutputs::default();
        let mut now_us = 1_000_000_000u64;
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Submit { req, tenant: t, max_attempts, deadline_in_ms } => {
                    let mut task = Task::new(format!("t{n}"), "noop", req);
                    task.tenant = tenant(t);
                    task.max_attempts = max_attempts;
                    task.deadline_ms = deadline_in_ms.map(|d| now_us / 1000 + d);
                    task.submitted_at_us = now_us;
                    world.submitted.push(task.id.to_string());
                    let shard = n % shards;
                    states[shard].on_task(task, now_us, &mut out);
                    world.absorb(shard as u32, &mut out, now_us)?;
                }
                Op::Finish { pick, outcome } if !world.running.is_empty() => {
                    let mut keys: Vec<(u32, Lease)> = world.running.keys().copied().collect();
                    keys.sort();
                    let key = keys[pick % keys.len()];
                    let a = world.running.remove(&key).expect("running");
                    let outcome = match outcome {
                        0 | 1 => Outcome::Succeeded,
                        2 => Outcome::Failed { reason: "exit 1".into() },
                        _ => Outcome::TimedOut,
                    };
                    world.returned.push(complete(a, outcome, now_us));
                }
                Op::Finish { .. } => {}
                Op::Cancel(pick) if !world.submitted.is_empty() => {
                    let task = Name::from(world.submitted[pick % world.submitted.len()].as_str());
                    broadcast(&mut states, &mut world, ControlCommand::Cancel { task }, now_us)?;
                }
                Op::Cancel(_) => {}
                Op::Join(k) => broadcast(
                    &mut states,
                    &mut world,
                    ControlCommand::Join { executor: dynamic_executor(k), heartbeat_ttl_ms: Some(TTL_MS) },
                    now_us,
                )?,
                Op::Heartbeat(k) => broadcast(
                    &mut states,
                    &mut world,
                    ControlCommand::Heartbeat { executor: Name::from(format!("dyn-{k}")) },
                    now_us,
                )?,
                Op::Leave(k) => broadcast(
                    &mut states,
                    &mut world,
                    ControlCommand::Leave { executor: Name::from(format!("dyn-{k}")) },
                    now_us,
                )?,
                Op::Reserve { tenant: t, req, for_ms } => broadcast(
                    &mut states,
                    &mut world,
                    ControlCommand::Reserve(ReservationRequest {
                        id: Name::from(format!("r{}", n % 4)),
                        holder: ReservationHolder::Tenant(tenant(t)),
                        resources: req,
                        expires_at_ms: now_us / 1000 + for_ms,
                    }),
                    now_us,
                )?,
                Op::Unreserve(k) => broadcast(
                    &mut states,
                    &mut world,
                    ControlCommand::Unreserve { id: Name::from(format!("r{k}")) },
                    now_us,
                )?,
                Op::Advance(ms) => now_us += ms * 1000,
            }
            settle(&mut states, &mut world, now_us)?;
            for state in &states {
                step_checks(state)?;
            }
            let quota: u64 = states.iter().map(|s| s.allocator().tenants().quota_usage("tenant-0").cpu_milli).sum();
            prop_assert!(quota <= 6000, "tenant-0 holds {} milli-CPU over its quota", quota);
        }
        // Finish: run every attempt to success, let time pass, until idle.
        for _ in 0..1000 {
            if states.iter().all(CoordinatorState::is_idle) && world.running.is_empty() && world.returned.is_empty() {
                break;
            }
            now_us += 500_000;
            let running: Vec<Assignment> = world.running.drain().map(|(_, a)| a).collect();
            for a in running {
                world.returned.push(complete(a, Outcome::Succeeded, now_us));
            }
            // Keep joined executors alive so queued work can drain.
            for k in 0..6 {
                broadcast(
                    &mut states,
                    &mut world,
                    ControlCommand::Heartbeat { executor: Name::from(format!("dyn-{k}")) },
                    now_us,
                )?;
            }
            settle(&mut states, &mut world, now_us)?;
            for state in &states {
                step_checks(state)?;
            }
        }
        for state in &states {
            prop_assert!(state.is_idle(), "work left: queued {} running {}", state.allocator().queued(), state.allocator().running());
        }
        for id in &world.submitted {
            prop_assert_eq!(world.ended.get(id).copied().unwrap_or(0), 1, "task {} must end exactly once", id);
        }
        // Every reservation lapses; then all capacity is free again.
        now_us += 10_000_000_000;
        settle(&mut states, &mut world, now_us)?;
        for state in &states {
            step_checks(state)?;
            prop_assert!(state.allocator().reservations().is_empty());
            for e in state.allocator().executors() {
                prop_assert_eq!(e.free_cpu_milli, e.spec.cpu_milli, "{} cpu", e.spec.id);
                prop_assert_eq!(e.free_memory_mib, e.spec.memory_mib);
                prop_assert!(e.free_gpu_milli.iter().all(|&m| m == 1000));
                prop_assert_eq!(e.running, 0);
            }
            prop_assert!(state.allocator().tenants().quota_usage("tenant-0").is_zero());
        }
    }
}
