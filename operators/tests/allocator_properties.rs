//! Property tests of the shard allocator: under random submissions,
//! releases and scheduling rounds, no executor or GPU device is ever over
//! capacity, the books always balance, and releasing everything returns
//! every executor to full capacity.

use proptest::prelude::*;

use tidewater_operators::allocate::{AllocatorConfig, Decision, FeasibilityIndex, ShardAllocator};
use tidewater_operators::model::{ExecutorSpec, GpuRequest, Lease, Name, ResourceRequest, Task};

fn cluster() -> Vec<ExecutorSpec> {
    vec![
        ExecutorSpec::cpu("cpu-0", 4000, 8192).with_custom("licence", 2),
        ExecutorSpec::cpu("a100-0", 8000, 16384).with_gpus(4, "A100"),
        ExecutorSpec::cpu("v100-0", 8000, 16384).with_gpus(2, "V100"),
    ]
}

fn request() -> impl Strategy<Value = ResourceRequest> {
    (1u32..5000, 0u32..9000, 0u8..6, 1u16..1000, 0u8..4, 0u8..3).prop_map(
        |(cpu, mem, gpu_kind, milli, n, model)| {
            let gpu = match gpu_kind {
                0 => GpuRequest::Fraction(milli),
                1 => GpuRequest::Whole(n.max(1)),
                _ => GpuRequest::None,
            };
            let gpu_models: Box<[Name]> = match (gpu, model) {
                (GpuRequest::None, _) | (_, 0) => Box::new([]),
                (_, 1) => Box::new([Name::from("A100")]),
                _ => Box::new([Name::from("V100")]),
            };
            let custom: Box<[(Name, u64)]> = if cpu % 7 == 0 {
                Box::new([(Name::from("licence"), 1)])
            } else {
                Box::new([])
            };
            ResourceRequest {
                cpu_milli: cpu,
                memory_mib: mem,
                gpu,
                gpu_models,
                custom,
            }
        },
    )
}

#[derive(Debug, Clone)]
enum Op {
    Submit(ResourceRequest),
    Release(usize),
    Schedule,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![4 => request().prop_map(Op::Submit), 3 => any::<usize>().prop_map(Op::Release), 1 => Just(Op::Schedule)]
}

fn allocator(policy: &str) -> ShardAllocator {
    let feasibility = FeasibilityIndex::new(1, cluster().into_iter().map(|s| (0, s)));
    let config = AllocatorConfig {
        policy: policy.to_string(),
        backfill_depth: 8,
        ..AllocatorConfig::default()
    };
    ShardAllocator::new(0, cluster(), feasibility, &config).expect("allocator")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn never_over_capacity_and_releases_everything(ops in proptest::collection::vec(op(), 1..150), best in any::<bool>()) {
        let mut alloc = allocator(if best { "best_fit" } else { "first_fit" });
        let mut running: Vec<Lease> = Vec::new();
        let mut decisions = Vec::new();
        let (mut submitted, mut rejected) = (0usize, 0usize);
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Submit(req) => {
                    submitted += 1;
                    alloc.submit(Task::new(format!("t{n}"), "noop", req), 0, &mut decisions);
                }
                Op::Release(i) if !running.is_empty() => {
                    let lease = running.swap_remove(i % running.len());
                    prop_assert!(alloc.release(lease).is_some(), "a held lease releases once");
                    prop_assert!(alloc.release(lease).is_none(), "and never twice");
                }
                Op::Release(_) => {}
                Op::Schedule => alloc.schedule(0, &mut decisions),
            }
            for decision in decisions.drain(..) {
                match decision {
                    Decision::Assign(a) => running.push(a.lease),
                    Decision::Reject { .. } => rejected += 1,
                    other => prop_assert!(false, "one shard without registry changes decides only assign or reject: {:?}", other),
                }
            }
            alloc.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
            for e in alloc.executors() {
                prop_assert!(e.free_cpu_milli <= e.spec.cpu_milli && e.free_memory_mib <= e.spec.memory_mib);
                prop_assert!(e.free_gpu_milli.iter().all(|&m| m <= 1000));
            }
            prop_assert_eq!(alloc.running(), running.len());
        }
        // Drain: release everything, placing what was queued, until idle.
        while !running.is_empty() || alloc.queued() > 0 {
            for lease in running.drain(..) {
                prop_assert!(alloc.release(lease).is_some());
            }
            alloc.schedule(0, &mut decisions);
            let before = running.len();
            for decision in decisions.drain(..) {
                match decision {
                    Decision::Assign(a) => running.push(a.lease),
                    Decision::Reject { .. } => rejected += 1,
                    other => prop_assert!(false, "one shard without registry changes decides only assign or reject: {:?}", other),
                }
            }
            prop_assert!(running.len() > before || alloc.queued() == 0, "a feasible queued task can always run on an empty cluster");
            alloc.check_invariants().map_err(|e| TestCaseError::fail(e.to_string()))?;
        }
        prop_assert!(submitted >= rejected);
        for e in alloc.executors() {
            prop_assert_eq!(e.free_cpu_milli, e.spec.cpu_milli);
            prop_assert_eq!(e.free_memory_mib, e.spec.memory_mib);
            prop_assert!(e.free_gpu_milli.iter().all(|&m| m == 1000));
            prop_assert_eq!(e.running, 0);
        }
    }
}

#[test]
fn fractional_shares_pack_onto_the_fullest_device() {
    let mut alloc = allocator("first_fit");
    let mut decisions = Vec::new();
    let share = |milli| ResourceRequest {
        gpu: GpuRequest::Fraction(milli),
        gpu_models: Box::new([Name::from("A100")]),
        ..ResourceRequest::cpu(1, 0)
    };
    for (n, milli) in [600, 300, 100, 500].into_iter().enumerate() {
        alloc.submit(
            Task::new(format!("f{n}"), "noop", share(milli)),
            0,
            &mut decisions,
        );
    }
    let devices: Vec<Vec<u8>> = decisions
        .iter()
        .map(|d| match d {
            Decision::Assign(a) => a.gpu_devices.clone(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    // 600 and 300 and 100 share device 0 (full), 500 starts device 1.
    assert_eq!(devices, vec![vec![0], vec![0], vec![0], vec![1]]);
    let a100 = &alloc.executors()[1];
    assert_eq!(a100.free_gpu_milli, vec![0, 500, 1000, 1000]);
}

#[test]
fn queue_serves_qos_then_priority_then_deadline() {
    use tidewater_operators::model::QosClass;
    let spec = vec![ExecutorSpec::cpu("one", 1000, 1000)];
    let feasibility = FeasibilityIndex::new(1, spec.clone().into_iter().map(|s| (0, s)));
    let mut alloc =
        ShardAllocator::new(0, spec, feasibility, &AllocatorConfig::default()).expect("allocator");
    let mut decisions = Vec::new();
    let whole = ResourceRequest::cpu(1000, 0);
    alloc.submit(
        Task::new("holder", "noop", whole.clone()),
        0,
        &mut decisions,
    );
    let mut tasks = vec![
        (
            Task::new("be", "noop", whole.clone()),
            QosClass::BestEffort,
            9,
            None,
        ),
        (
            Task::new("burst-low", "noop", whole.clone()),
            QosClass::Burstable,
            1,
            None,
        ),
        (
            Task::new("burst-high-late", "noop", whole.clone()),
            QosClass::Burstable,
            5,
            Some(u64::MAX - 1),
        ),
        (
            Task::new("burst-high-soon", "noop", whole.clone()),
            QosClass::Burstable,
            5,
            Some(u64::MAX - 2),
        ),
        (
            Task::new("ls", "noop", whole.clone()),
            QosClass::LatencySensitive,
            0,
            None,
        ),
    ];
    for (mut task, qos, priority, deadline) in tasks.drain(..) {
        task.qos = qos;
        task.priority = priority;
        task.deadline_ms = deadline;
        alloc.submit(task, 0, &mut decisions);
    }
    let Some(Decision::Assign(holder)) = decisions.pop() else {
        panic!("holder placed")
    };
    let mut order = Vec::new();
    let mut lease = holder.lease;
    for _ in 0..5 {
        alloc.release(lease);
        alloc.schedule(0, &mut decisions);
        let Some(Decision::Assign(next)) = decisions.pop() else {
            panic!("next placed")
        };
        order.push(next.task.id.to_string());
        lease = next.lease;
    }
    assert_eq!(
        order,
        [
            "ls",
            "burst-high-soon",
            "burst-high-late",
            "burst-low",
            "be"
        ]
    );
}

#[test]
fn expired_deadlines_and_infeasible_requests_are_rejected() {
    let mut alloc = allocator("best_fit");
    let mut decisions = Vec::new();
    let mut late = Task::new("late", "noop", ResourceRequest::cpu(1, 0));
    late.deadline_ms = Some(1);
    alloc.submit(late, 5_000, &mut decisions);
    let huge = ResourceRequest {
        gpu: GpuRequest::Whole(3),
        gpu_models: Box::new([Name::from("V100")]),
        ..ResourceRequest::cpu(1, 0)
    };
    alloc.submit(Task::new("huge", "noop", huge), 0, &mut decisions);
    let reasons: Vec<String> = decisions
        .iter()
        .map(|d| match d {
            Decision::Reject { reason, .. } => reason.to_string(),
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert!(reasons[0].contains("deadline passed"), "{reasons:?}");
    assert!(
        reasons[1].contains("3 GPUs requested but no executor has more than 2"),
        "{reasons:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// Every policy picks an executor where the request fits, and finds one
    /// whenever one exists.
    #[test]
    fn every_policy_chooses_only_executors_that_fit(
        load in proptest::collection::vec(request(), 0..12),
        req in request(),
    ) {
        use tidewater_operators::allocate::{policy_by_name, POLICY_NAMES};
        let mut executors: Vec<_> = cluster().into_iter().map(tidewater_operators::allocate::ExecutorState::new).collect();
        for (n, r) in load.iter().enumerate() {
            let e = &mut executors[n % 3];
            if let Some(pick) = e.fit(r) {
                e.take(r, &pick);
            }
        }
        let any_fits = executors.iter().any(|e| e.fit(&req).is_some());
        for name in POLICY_NAMES {
            let mut policy = policy_by_name(name).expect("known policy");
            for r in &load {
                policy.observe(r);
            }
            match policy.choose(&req, &executors) {
                Some(i) => prop_assert!(executors[i].fit(&req).is_some(), "{name} chose {i}, which does not fit"),
                None => prop_assert!(!any_fits, "{name} found nothing though an executor fits"),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// The score cache never changes a decision: under random placements,
    /// releases and cluster growth, the cached choice equals a full scan
    /// with the same policy.
    #[test]
    fn cached_choices_equal_uncached_scans(
        steps in proptest::collection::vec((request(), any::<bool>(), any::<usize>()), 1..120),
        which in 0usize..5,
    ) {
        use tidewater_operators::allocate::{policy_by_name, ExecutorState, Placer, GpuPick};
        let name = ["first_fit", "best_fit", "spread", "dot_product", "fgd"][which];
        let states = || -> Vec<ExecutorState> {
            let mut specs = cluster();
            specs.extend(cluster().into_iter().map(|mut s| { s.id = Name::from(format!("{}-b", s.id)); s }));
            specs.into_iter().map(ExecutorState::new).collect()
        };
        let mut placer = Placer::new(states(), policy_by_name(name).expect("policy"));
        let mut reference = policy_by_name(name).expect("policy");
        let mut held: Vec<(usize, ResourceRequest, GpuPick)> = Vec::new();
        for (n, (req, release, pick)) in steps.into_iter().enumerate() {
            if release && !held.is_empty() {
                let (index, req, gpu) = held.swap_remove(pick % held.len());
                placer.give_back(index, &req, &gpu);
                continue;
            }
            if n == 60 {
                placer.push(ExecutorState::new(ExecutorSpec::cpu("late", 16000, 32768).with_gpus(8, "A100")));
            }
            placer.observe(&req);
            reference.observe(&req);
            let expected = reference.choose(&req, placer.executors());
            let chosen = placer.choose(&req);
            prop_assert_eq!(chosen.as_ref().map(|(i, _)| *i), expected, "{} on {:?}", name, req);
            if let Some((index, gpu)) = chosen {
                placer.take(index, &req, &gpu);
                held.push((index, req, gpu));
            }
        }
    }
}
