//! Property tests of one coordinator shard under a churning cluster:
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

fn coordinator() -> CoordinatorState {
    let feasibility = FeasibilityIndex::new(1, static_executors().into_iter().map(|s| (0, s)));
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
    };
    let allocator =
        ShardAllocator::new(0, static_executors(), feasibility, &config).expect("allocator");
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
    running: HashMap<Lease, Assignment>,
    /// Completions produced by the executor side, to feed back.
    returned: Vec<Completion>,
    ended: HashMap<String, usize>,
    submitted: Vec<String>,
}

impl World {
    fn absorb(&mut self, out: &mut CoordinatorOutputs, now_us: u64) -> Result<(), TestCaseError> {
        for work in out.work.drain(..) {
            match work {
                ExecutorWork::Run(a) => {
                    prop_assert!(
                        !self.running.values().any(|r| r.task.id == a.task.id),
                        "task {} assigned while an attempt of it still runs",
                        a.task.id
                    );
                    self.running.insert(a.lease, a);
                }
                ExecutorWork::Abort { lease, reason } => {
                    if let Some(a) = self.running.remove(&lease) {
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
        prop_assert!(
            out.forwards
                .iter()
                .all(|f| !matches!(f, Feedback::Forwarded { .. })),
            "a single shard has nowhere to forward"
        );
        out.forwards.clear();
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn churn_never_overcommits_loses_or_doubles_a_task(ops in proptest::collection::vec(op(), 1..200)) {
        let mut state = coordinator();
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
                    state.on_task(task, now_us, &mut out);
                }
                Op::Finish { pick, outcome } if !world.running.is_empty() => {
                    let mut leases: Vec<Lease> = world.running.keys().copied().collect();
                    leases.sort();
                    let lease = leases[pick % leases.len()];
                    let a = world.running.remove(&lease).expect("running");
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
                    state.on_control(ControlCommand::Cancel { task }, now_us, &mut out);
                }
                Op::Cancel(_) => {}
                Op::Join(k) => state.on_control(
                    ControlCommand::Join { executor: dynamic_executor(k), heartbeat_ttl_ms: Some(TTL_MS) },
                    now_us,
                    &mut out,
                ),
                Op::Heartbeat(k) => state.on_control(
                    ControlCommand::Heartbeat { executor: Name::from(format!("dyn-{k}")) },
                    now_us,
                    &mut out,
                ),
                Op::Leave(k) => state.on_control(
                    ControlCommand::Leave { executor: Name::from(format!("dyn-{k}")) },
                    now_us,
                    &mut out,
                ),
                Op::Reserve { tenant: t, req, for_ms } => state.on_control(
                    ControlCommand::Reserve(ReservationRequest {
                        id: Name::from(format!("r{}", n % 4)),
                        holder: ReservationHolder::Tenant(tenant(t)),
                        resources: req,
                        expires_at_ms: now_us / 1000 + for_ms,
                    }),
                    now_us,
                    &mut out,
                ),
                Op::Unreserve(k) => state.on_control(
                    ControlCommand::Unreserve { id: Name::from(format!("r{k}")) },
                    now_us,
                    &mut out,
                ),
                Op::Advance(ms) => now_us += ms * 1000,
            }
            world.absorb(&mut out, now_us)?;
            for c in std::mem::take(&mut world.returned) {
                state.on_feedback(Feedback::Completed(c), now_us, &mut out);
                world.absorb(&mut out, now_us)?;
            }
            state.tick(now_us, &mut out);
            world.absorb(&mut out, now_us)?;
            step_checks(&state)?;
        }
        // Finish: run every attempt to success, let time pass, until idle.
        for _ in 0..1000 {
            if state.is_idle() && world.running.is_empty() && world.returned.is_empty() {
                break;
            }
            now_us += 500_000;
            let running: Vec<Assignment> = world.running.drain().map(|(_, a)| a).collect();
            for a in running {
                world.returned.push(complete(a, Outcome::Succeeded, now_us));
            }
            for c in std::mem::take(&mut world.returned) {
                state.on_feedback(Feedback::Completed(c), now_us, &mut out);
                world.absorb(&mut out, now_us)?;
            }
            // Keep joined executors alive so queued work can drain.
            for k in 0..6 {
                state.on_control(
                    ControlCommand::Heartbeat { executor: Name::from(format!("dyn-{k}")) },
                    now_us,
                    &mut out,
                );
            }
            state.tick(now_us, &mut out);
            world.absorb(&mut out, now_us)?;
            step_checks(&state)?;
        }
        prop_assert!(state.is_idle(), "work left: queued {} running {}", state.allocator().queued(), state.allocator().running());
        for id in &world.submitted {
            prop_assert_eq!(world.ended.get(id).copied().unwrap_or(0), 1, "task {} must end exactly once", id);
        }
        // Every reservation lapses; then all capacity is free again.
        now_us += 10_000_000_000;
        state.tick(now_us, &mut out);
        world.absorb(&mut out, now_us)?;
        step_checks(&state)?;
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
