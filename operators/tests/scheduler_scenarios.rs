//! Scenario tests of the coordinator's features, one behaviour each:
//! typed and fractional GPUs, executor loss and re-queue, graceful leave,
//! cancellation wherever the task is, reservations, quotas, fair share,
//! quota-bound tenants across two shards, and attempt records.

use std::collections::BTreeMap;

use tidewater_operators::allocate::{
    home_shard, AllocatorConfig, FeasibilityIndex, ResourceQuota, ShardAllocator, TenantConfig,
};
use tidewater_operators::dataflow::{CoordinatorOutputs, CoordinatorState, Feedback, RetryPolicy};
use tidewater_operators::model::{
    AbortReason, Assignment, Completion, ControlCommand, ExecutorSpec, ExecutorWork, GpuRequest,
    Name, Outcome, RejectReason, ReservationHolder, ReservationRequest, ResourceRequest, Task,
};

const T0: u64 = 1_000_000_000_000;

fn coordinator(
    executors: Vec<ExecutorSpec>,
    tenants: BTreeMap<Name, TenantConfig>,
) -> CoordinatorState {
    let feasibility = FeasibilityIndex::new(1, executors.iter().cloned().map(|s| (0, s)));
    let config = AllocatorConfig {
        tenants,
        ..AllocatorConfig::default()
    };
    let allocator = ShardAllocator::new(0, executors, feasibility, &config).expect("allocator");
    let retry = RetryPolicy {
        initial_backoff_ms: 10,
        ..RetryPolicy::default()
    };
    CoordinatorState::new(allocator, retry, false)
}

fn task(id: &str, tenant: &str, req: ResourceRequest) -> Task {
    let mut t = Task::new(id, "noop", req);
    t.tenant = Name::from(tenant);
    t.submitted_at_us = T0;
    t
}

fn runs(out: &mut CoordinatorOutputs) -> Vec<Assignment> {
    out.work
        .drain(..)
        .filter_map(|w| match w {
            ExecutorWork::Run(a) => Some(a),
            ExecutorWork::Abort { .. } => None,
        })
        .collect()
}

fn done(a: Assignment, outcome: Outcome) -> Feedback {
    Feedback::Completed(Completion {
        executor: a.executor,
        shard: a.shard,
        lease: a.lease,
        outcome,
        started_at_us: T0,
        finished_at_us: T0,
        exit_code: None,
        output_bytes: 0,
        is_final: false,
        result: None,
        task: a.task,
    })
}

fn gpu(gpu: GpuRequest, models: &[&str]) -> ResourceRequest {
    ResourceRequest {
        gpu,
        gpu_models: models.iter().map(|m| Name::from(*m)).collect(),
        ..ResourceRequest::cpu(100, 100)
    }
}

#[test]
fn typed_gpu_requests_go_only_to_allowed_models_and_shares_stack_on_one_device() {
    let mut c = coordinator(
        vec![
            ExecutorSpec::cpu("t4", 8000, 8000).with_gpus(2, "T4"),
            ExecutorSpec::cpu("a100", 8000, 8000).with_gpus(2, "A100"),
        ],
        BTreeMap::new(),
    );
    let mut out = CoordinatorOutputs::default();
    c.on_task(
        task("whole", "x", gpu(GpuRequest::Whole(2), &["A100"])),
        T0,
        &mut out,
    );
    c.on_task(
        task("s1", "x", gpu(GpuRequest::Fraction(400), &["T4"])),
        T0,
        &mut out,
    );
    c.on_task(
        task("s2", "x", gpu(GpuRequest::Fraction(600), &["T4"])),
        T0,
        &mut out,
    );
    c.on_task(
        task("s3", "x", gpu(GpuRequest::Fraction(500), &["A100"])),
        T0,
        &mut out,
    );
    let placed = runs(&mut out);
    let by_id = |id: &str| placed.iter().find(|a| a.task.id == id).expect(id);
    assert_eq!(by_id("whole").executor, "a100");
    assert_eq!(by_id("whole").gpu_devices, vec![0, 1]);
    assert_eq!(by_id("s1").executor, "t4");
    assert_eq!(by_id("s2").executor, "t4");
    assert_eq!(
        by_id("s1").gpu_devices,
        by_id("s2").gpu_devices,
        "shares fill one device"
    );
    assert!(
        placed.iter().all(|a| a.task.id != "s3"),
        "no A100 share is left: s3 waits"
    );
    assert_eq!(c.allocator().queued(), 1);
}

#[test]
fn a_lost_executor_releases_its_capacity_and_its_tasks_run_again() {
    let mut c = coordinator(
        vec![ExecutorSpec::cpu("static", 1000, 1000)],
        BTreeMap::new(),
    );
    let mut out = CoordinatorOutputs::default();
    let join = ControlCommand::Join {
        executor: ExecutorSpec::cpu("agent", 4000, 4000),
        heartbeat_ttl_ms: Some(1000),
    };
    c.on_control(join, T0, &mut out);
    let mut t = task("big", "x", ResourceRequest::cpu(3000, 100));
    t.max_attempts = 3;
    c.on_task(t, T0, &mut out);
    c.tick(T0, &mut out);
    let first = runs(&mut out).pop().expect("placed on the agent");
    assert_eq!(first.executor, "agent");
    // A heartbeat keeps it alive past one TTL; silence then loses it.
    c.on_control(
        ControlCommand::Heartbeat {
            executor: Name::from("agent"),
        },
        T0 + 800_000,
        &mut out,
    );
    c.tick(T0 + 1_500_000, &mut out);
    assert!(out.work.is_empty(), "still alive");
    c.tick(T0 + 2_000_000, &mut out);
    assert_eq!(
        out.work.drain(..).collect::<Vec<_>>(),
        vec![ExecutorWork::Abort {
            lease: first.lease,
            reason: AbortReason::ExecutorLost
        }]
    );
    assert!(c.allocator().registry().get("agent").is_none());
    c.allocator().check_invariants().expect("capacity released");
    // The aborted attempt reports back; the task is re-queued as attempt 2.
    c.on_feedback(done(first, Outcome::Cancelled), T0 + 2_000_000, &mut out);
    assert!(out.finals.is_empty());
    // Nothing else can hold 3000 milli-CPU until the agent re-joins.
    c.tick(T0 + 3_000_000, &mut out);
    assert!(runs(&mut out).is_empty());
    c.on_control(
        ControlCommand::Join {
            executor: ExecutorSpec::cpu("agent", 4000, 4000),
            heartbeat_ttl_ms: Some(1000),
        },
        T0 + 3_000_000,
        &mut out,
    );
    c.tick(T0 + 3_000_000, &mut out);
    let second = runs(&mut out).pop().expect("placed again");
    assert_eq!(second.task.attempt, 2);
    c.on_feedback(done(second, Outcome::Succeeded), T0 + 3_100_000, &mut out);
    assert_eq!(out.finals.len(), 1);
    assert_eq!(out.finals[0].outcome, Outcome::Succeeded);
}

#[test]
fn a_task_only_a_lost_executor_could_hold_waits_for_one_to_join_until_its_deadline() {
    let mut c = coordinator(
        vec![ExecutorSpec::cpu("static", 1000, 1000)],
        BTreeMap::new(),
    );
    let mut out = CoordinatorOutputs::default();
    let join = || ControlCommand::Join {
        executor: ExecutorSpec::cpu("agent", 4000, 4000),
        heartbeat_ttl_ms: Some(1000),
    };
    c.on_control(join(), T0, &mut out);
    // The agent goes silent and is lost; nothing else can hold 3000 milli-CPU.
    c.tick(T0 + 2_000_000, &mut out);
    assert!(c.allocator().registry().get("agent").is_none());
    // Submitted now, the tasks wait instead of being refused.
    let mut late = task("late", "x", ResourceRequest::cpu(3000, 100));
    late.deadline_ms = Some((T0 + 3_000_000) / 1000);
    c.on_task(late, T0 + 2_000_000, &mut out);
    c.on_task(
        task("patient", "x", ResourceRequest::cpu(3000, 100)),
        T0 + 2_000_000,
        &mut out,
    );
    // What no executor, lost or not, could ever hold is still refused.
    c.on_task(
        task("huge", "x", ResourceRequest::cpu(64_000, 100)),
        T0 + 2_000_000,
        &mut out,
    );
    c.tick(T0 + 2_000_000, &mut out);
    let refused: Vec<_> = out.rejections.drain(..).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        refused[0].task_id.as_ref().map(|n| n.as_str()),
        Some("huge")
    );
    assert!(runs(&mut out).is_empty());
    // The waiting task's deadline is a wake-up; past it, it is refused
    // with the reason, while the one without a deadline keeps waiting.
    assert_eq!(c.next_wakeup_us(), Some(T0 + 3_001_000));
    c.tick(T0 + 3_001_000, &mut out);
    let refused: Vec<_> = out.rejections.drain(..).collect();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert_eq!(
        refused[0].task_id.as_ref().map(|n| n.as_str()),
        Some("late")
    );
    assert_eq!(
        refused[0].reason,
        RejectReason::Infeasible {
            detail: "deadline passed waiting for an executor".into()
        }
    );
    // An executor joins: the patient task runs on it.
    c.on_control(join(), T0 + 4_000_000, &mut out);
    c.tick(T0 + 4_000_000, &mut out);
    let placed = runs(&mut out);
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].task.id, "patient");
    assert_eq!(placed[0].executor, "agent");
}

#[test]
fn a_leaving_executor_takes_no_new_work_and_is_removed_when_drained() {
    let mut c = coordinator(
        vec![
            ExecutorSpec::cpu("a", 1000, 1000),
            ExecutorSpec::cpu("b", 1000, 1000),
        ],
        BTreeMap::new(),
    );
    let mut out = CoordinatorOutputs::default();
    c.on_task(task("t1", "x", ResourceRequest::cpu(1000, 1)), T0, &mut out);
    let on_a = runs(&mut out).pop().expect("placed");
    assert_eq!(on_a.executor, "a");
    c.on_control(
        ControlCommand::Leave {
            executor: Name::from("a"),
        },
        T0,
        &mut out,
    );
    c.on_feedback(done(on_a, Outcome::Succeeded), T0, &mut out);
    assert!(
        c.allocator().registry().get("a").is_none(),
        "gone once drained"
    );
    c.on_task(task("t2", "x", ResourceRequest::cpu(1000, 1)), T0, &mut out);
    c.on_task(task("t3", "x", ResourceRequest::cpu(1000, 1)), T0, &mut out);
    c.tick(T0, &mut out);
    let placed = runs(&mut out);
    assert_eq!(placed.len(), 1);
    assert_eq!(placed[0].executor, "b");
}

#[test]
fn cancellation_finds_the_task_queued_waiting_to_retry_running_or_not_yet_arrived() {
    let mut c = coordinator(vec![ExecutorSpec::cpu("a", 1000, 1000)], BTreeMap::new());
    let mut out = CoordinatorOutputs::default();
    let cancel = |id: &str| ControlCommand::Cancel {
        task: Name::from(id),
    };
    let mut retried = task("retried", "x", ResourceRequest::cpu(1000, 1));
    retried.max_attempts = 5;
    c.on_task(retried, T0, &mut out);
    c.on_task(
        task("queued", "x", ResourceRequest::cpu(1000, 1)),
        T0,
        &mut out,
    );
    let running = runs(&mut out).pop().expect("placed");
    // Queued: ends at once.
    c.on_control(cancel("queued"), T0, &mut out);
    assert_eq!(
        out.finals
            .drain(..)
            .map(|f| (f.task.id.to_string(), f.outcome))
            .collect::<Vec<_>>(),
        vec![("queued".to_string(), Outcome::Cancelled)]
    );
    // Waiting to retry: ends at once.
    c.on_feedback(
        done(
            running,
            Outcome::Failed {
                reason: "flaky".into(),
            },
        ),
        T0,
        &mut out,
    );
    assert!(out.finals.is_empty());
    c.on_control(cancel("retried"), T0, &mut out);
    assert_eq!(
        out.finals.drain(..).map(|f| f.outcome).collect::<Vec<_>>(),
        vec![Outcome::Cancelled]
    );
    // Running: the executor is told to stop; its completion is final.
    let mut long = task("long", "x", ResourceRequest::cpu(1000, 1));
    long.max_attempts = 5;
    c.on_task(long, T0, &mut out);
    c.tick(T0 + 1_000_000, &mut out);
    let long_run = runs(&mut out).pop().expect("placed");
    c.on_control(cancel("long"), T0, &mut out);
    assert_eq!(
        out.work.drain(..).collect::<Vec<_>>(),
        vec![ExecutorWork::Abort {
            lease: long_run.lease,
            reason: AbortReason::Cancelled
        }]
    );
    c.on_feedback(done(long_run, Outcome::Cancelled), T0, &mut out);
    assert_eq!(
        out.finals.drain(..).map(|f| f.outcome).collect::<Vec<_>>(),
        vec![Outcome::Cancelled]
    );
    // Not arrived yet: cancelled when it does.
    c.on_control(cancel("later"), T0, &mut out);
    c.on_task(task("later", "x", ResourceRequest::cpu(1, 1)), T0, &mut out);
    assert!(runs(&mut out).is_empty());
    assert_eq!(
        out.finals.drain(..).map(|f| f.outcome).collect::<Vec<_>>(),
        vec![Outcome::Cancelled]
    );
    assert!(c.is_idle());
}

#[test]
fn a_reservation_holds_capacity_for_its_tenant_until_it_expires() {
    let mut c = coordinator(
        vec![ExecutorSpec::cpu("a", 4000, 4000).with_gpus(1, "A100")],
        BTreeMap::new(),
    );
    let mut out = CoordinatorOutputs::default();
    let reserve = ControlCommand::Reserve(ReservationRequest {
        id: Name::from("r1"),
        holder: ReservationHolder::Tenant(Name::from("gold")),
        resources: ResourceRequest {
            gpu: GpuRequest::Whole(1),
            ..ResourceRequest::cpu(2000, 2000)
        },
        expires_at_ms: T0 / 1000 + 5_000,
    });
    c.on_control(reserve, T0, &mut out);
    assert_eq!(c.allocator().reservations().len(), 1);
    // Another tenant cannot take the reserved GPU, nor more than the rest.
    c.on_task(
        task("other-gpu", "bronze", gpu(GpuRequest::Fraction(100), &[])),
        T0,
        &mut out,
    );
    c.on_task(
        task("other-cpu", "bronze", ResourceRequest::cpu(2000, 100)),
        T0,
        &mut out,
    );
    c.on_task(
        task("other-more", "bronze", ResourceRequest::cpu(100, 100)),
        T0,
        &mut out,
    );
    c.tick(T0, &mut out);
    let placed = runs(&mut out);
    assert_eq!(
        placed
            .iter()
            .map(|a| a.task.id.as_str())
            .collect::<Vec<_>>(),
        vec!["other-cpu"]
    );
    // The holder's tasks run inside it.
    c.on_task(
        task("gold-1", "gold", gpu(GpuRequest::Fraction(500), &[])),
        T0,
        &mut out,
    );
    c.on_task(
        task("gold-2", "gold", gpu(GpuRequest::Fraction(500), &[])),
        T0,
        &mut out,
    );
    let gold = runs(&mut out);
    assert_eq!(gold.len(), 2);
    assert!(gold.iter().all(|a| a.gpu_devices == vec![0]));
    c.allocator().check_invariants().expect("books balance");
    // It expires; a gold task still running keeps its share, the rest frees.
    let mut gold = gold.into_iter();
    let g1 = gold.next().expect("g1");
    c.on_feedback(done(g1, Outcome::Succeeded), T0, &mut out);
    c.tick(T0 + 6_000_000, &mut out);
    assert!(c.allocator().reservations().is_empty());
    c.allocator()
        .check_invariants()
        .expect("books balance after expiry");
    let placed = runs(&mut out);
    assert_eq!(
        placed
            .iter()
            .map(|a| a.task.id.as_str())
            .collect::<Vec<_>>(),
        vec!["other-gpu", "other-more"],
        "the unused half GPU and CPU return to the executor and the waiting tasks run"
    );
    let g2 = gold.next().expect("g2");
    c.on_feedback(done(g2, Outcome::Succeeded), T0 + 6_000_000, &mut out);
    c.allocator()
        .check_invariants()
        .expect("books balance after the last release");
}

#[test]
fn a_quota_caps_what_a_tenant_holds_at_once() {
    let mut tenants = BTreeMap::new();
    tenants.insert(
        Name::from("capped"),
        TenantConfig {
            weight: 1.0,
            quota: Some(ResourceQuota {
                cpu_milli: Some(2000),
                ..Default::default()
            }),
        },
    );
    let mut c = coordinator(vec![ExecutorSpec::cpu("a", 4000, 4000)], tenants);
    let mut out = CoordinatorOutputs::default();
    for i in 0..3 {
        c.on_task(
            task(
                &format!("capped-{i}"),
                "capped",
                ResourceRequest::cpu(1000, 1),
            ),
            T0,
            &mut out,
        );
    }
    c.on_task(
        task("too-big", "capped", ResourceRequest::cpu(3000, 1)),
        T0,
        &mut out,
    );
    match &out.rejections[..] {
        [r] => assert!(
            matches!(&r.reason, RejectReason::Infeasible { detail } if detail.contains("quota")),
            "{:?}",
            r.reason
        ),
        other => panic!("one rejection expected, got {other:?}"),
    }
    let placed = runs(&mut out);
    assert_eq!(
        placed.len(),
        2,
        "the quota admits two 1000-milli tasks although 4000 are free"
    );
    // Releasing a capped task lets the third one in.
    let capped = placed.into_iter().next().expect("capped");
    c.on_feedback(done(capped, Outcome::Succeeded), T0, &mut out);
    c.tick(T0, &mut out);
    assert_eq!(
        runs(&mut out)
            .iter()
            .map(|a| a.task.id.as_str())
            .collect::<Vec<_>>(),
        vec!["capped-2"]
    );
}

#[test]
fn a_quota_bound_tenant_is_admitted_by_its_home_shard_across_two_shards() {
    let specs = [
        ExecutorSpec::cpu("s0", 4000, 4000),
        ExecutorSpec::cpu("s1", 4000, 4000),
    ];
    let feasibility = || {
        FeasibilityIndex::new(
            2,
            specs
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, s)| (i as u32, s)),
        )
    };
    let mut tenants = BTreeMap::new();
    tenants.insert(
        Name::from("capped"),
        TenantConfig {
            weight: 1.0,
            quota: Some(ResourceQuota {
                cpu_milli: Some(1500),
                ..Default::default()
            }),
        },
    );
    let config = AllocatorConfig {
        tenants,
        ..AllocatorConfig::default()
    };
    let mut shards: Vec<CoordinatorState> = (0..2)
        .map(|i| {
            let alloc =
                ShardAllocator::new(i, vec![specs[i as usize].clone()], feasibility(), &config)
                    .expect("alloc");
            CoordinatorState::new(alloc, RetryPolicy::default(), false)
        })
        .collect();
    let home = home_shard("capped", 2) as usize;
    let away = 1 - home;
    let mut outs = [CoordinatorOutputs::default(), CoordinatorOutputs::default()];
    // Submitted on the other shard: forwarded home, admitted, placed.
    shards[away].on_task(
        task("c1", "capped", ResourceRequest::cpu(1000, 1)),
        T0,
        &mut outs[away],
    );
    shards[away].on_task(
        task("c2", "capped", ResourceRequest::cpu(1000, 1)),
        T0,
        &mut outs[away],
    );
    assert!(runs(&mut outs[away]).is_empty());
    let forwards: Vec<Feedback> = outs[away].forwards.drain(..).collect();
    assert_eq!(forwards.len(), 2);
    for f in forwards {
        assert_eq!(f.shard() as usize, home);
        shards[home].on_feedback(f, T0, &mut outs[home]);
    }
    let placed = runs(&mut outs[home]);
    assert_eq!(
        placed.len(),
        1,
        "1500 milli of quota admit one 1000-milli task"
    );
    assert_eq!(shards[home].allocator().queued(), 1);
    shards[home].on_feedback(
        done(placed.into_iter().next().expect("c1"), Outcome::Succeeded),
        T0,
        &mut outs[home],
    );
    shards[home].tick(T0, &mut outs[home]);
    assert_eq!(
        runs(&mut outs[home]).len(),
        1,
        "the release admits the second"
    );
}

#[test]
fn fair_share_serves_the_tenant_holding_less_first() {
    let mut c = coordinator(vec![ExecutorSpec::cpu("a", 4000, 4000)], BTreeMap::new());
    let mut out = CoordinatorOutputs::default();
    c.on_task(
        task("heavy-0", "heavy", ResourceRequest::cpu(2000, 1)),
        T0,
        &mut out,
    );
    c.on_task(
        task("heavy-1", "heavy", ResourceRequest::cpu(1000, 1)),
        T0,
        &mut out,
    );
    c.on_task(
        task("light-0", "light", ResourceRequest::cpu(1000, 1)),
        T0,
        &mut out,
    );
    let placed = runs(&mut out);
    assert_eq!(placed.len(), 3, "the executor is full");
    c.on_task(
        task("heavy-2", "heavy", ResourceRequest::cpu(1000, 1)),
        T0,
        &mut out,
    );
    c.on_task(
        task("light-1", "light", ResourceRequest::cpu(1000, 1)),
        T0,
        &mut out,
    );
    let light = placed
        .into_iter()
        .find(|a| a.task.tenant == "light")
        .expect("light-0");
    c.on_feedback(done(light, Outcome::Succeeded), T0, &mut out);
    c.tick(T0, &mut out);
    let next = runs(&mut out);
    assert_eq!(
        next.iter().map(|a| a.task.id.as_str()).collect::<Vec<_>>(),
        vec!["light-1"],
        "heavy holds 3/4 of the executor and light nothing, so light goes first although heavy-2 came earlier"
    );
}

#[test]
fn a_task_its_shard_cannot_place_now_moves_to_a_shard_whose_summary_fits() {
    let specs = [
        ExecutorSpec::cpu("s0", 2000, 2000),
        ExecutorSpec::cpu("s1", 2000, 2000),
    ];
    let feasibility = || {
        FeasibilityIndex::new(
            2,
            specs
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, s)| (i as u32, s)),
        )
    };
    let mut shards: Vec<CoordinatorState> = (0..2)
        .map(|i| {
            let alloc = ShardAllocator::new(
                i,
                vec![specs[i as usize].clone()],
                feasibility(),
                &AllocatorConfig::default(),
            )
            .expect("alloc");
            CoordinatorState::new(alloc, RetryPolicy::default(), false)
        })
        .collect();
    let mut outs = [CoordinatorOutputs::default(), CoordinatorOutputs::default()];
    // Shard 0 fills up; the next task waits there.
    shards[0].on_task(
        task("fill", "x", ResourceRequest::cpu(2000, 1)),
        T0,
        &mut outs[0],
    );
    shards[0].on_task(
        task("next", "x", ResourceRequest::cpu(1500, 1)),
        T0,
        &mut outs[0],
    );
    assert_eq!(runs(&mut outs[0]).len(), 1);
    assert_eq!(shards[0].allocator().queued(), 1);
    // Shard 1 publishes its summary in its next epoch; shard 0 hears it.
    shards[1].tick(T0 + 1_000, &mut outs[1]);
    let summaries: Vec<Feedback> = outs[1].forwards.drain(..).collect();
    assert!(
        matches!(
            &summaries[..],
            [Feedback::Summary {
                shard: 0,
                from: 1,
                ..
            }]
        ),
        "{summaries:?}"
    );
    for f in summaries {
        shards[0].on_feedback(f, T0 + 1_000, &mut outs[0]);
    }
    shards[0].tick(T0 + 1_000, &mut outs[0]);
    let moved: Vec<Feedback> = outs[0]
        .forwards
        .drain(..)
        .filter(|f| matches!(f, Feedback::Forwarded { .. }))
        .collect();
    assert_eq!(moved.len(), 1, "the waiting task moves to shard 1");
    for f in moved {
        assert_eq!(f.shard(), 1);
        shards[1].on_feedback(f, T0 + 2_000, &mut outs[1]);
    }
    let placed = runs(&mut outs[1]);
    assert_eq!(
        placed
            .iter()
            .map(|a| a.task.id.as_str())
            .collect::<Vec<_>>(),
        vec!["next"]
    );
    assert_eq!(placed[0].executor, "s1");
    // Nothing changed on shard 1 since... it just placed: its next summary says so.
    shards[1].tick(T0 + 3_000, &mut outs[1]);
    match &outs[1].forwards[..] {
        [Feedback::Summary { summary, .. }] => {
            assert!(!summary.fits(&ResourceRequest::cpu(1500, 1)));
        }
        other => panic!("expected a new summary, got {other:?}"),
    }
}

/// A run-time model trained so that `long` tasks take about 100 s and
/// `short` ones about 1 s.
fn trained_run_time_model() -> tidewater_operators::model::ModelUpdate {
    use tidewater_operators::learn::features::log_runtime_target;
    use tidewater_operators::learn::{
        FeatureHasher, Loss, ModelKind, ModelSpec, OnlineModel, OptimizerKind, TaskFeatures,
    };
    use tidewater_operators::model::ModelTarget;
    let spec = ModelSpec {
        kind: ModelKind::Linear,
        dim: 256,
        loss: Loss::Squared,
        optimizer: OptimizerKind::Adam {
            learning_rate: 0.05,
        },
        l2: 0.0,
        seed: 1,
    };
    let mut model = OnlineModel::new(&spec);
    let hasher = FeatureHasher::new(256);
    let data: Vec<_> = [("long", 100.0), ("short", 1.0)]
        .iter()
        .map(|&(kind, seconds)| {
            let mut t = Task::new("x", kind, ResourceRequest::cpu(1000, 1));
            t.tenant = Name::from("acme");
            let x = TaskFeatures::from_task(&t, t.qos.as_str(), "default").hash(&hasher);
            (x, log_runtime_target(seconds))
        })
        .collect();
    for _ in 0..2000 {
        model.train_batch(&data);
    }
    model.to_update(ModelTarget::RunTime, 1)
}

#[test]
fn shortest_predicted_first_follows_the_newest_run_time_model() {
    use tidewater_operators::allocate::QueueOrder;
    let executors = vec![ExecutorSpec::cpu("a", 1000, 1000)];
    let feasibility = FeasibilityIndex::new(1, executors.iter().cloned().map(|s| (0, s)));
    let config = AllocatorConfig {
        queue_order: QueueOrder::ShortestPredictedFirst,
        ..AllocatorConfig::default()
    };
    let allocator = ShardAllocator::new(0, executors, feasibility, &config).expect("allocator");
    let mut c = CoordinatorState::new(allocator, RetryPolicy::default(), false);
    let mut out = CoordinatorOutputs::default();
    let job = |id: &str, kind: &str| {
        let mut t = Task::new(id, kind, ResourceRequest::cpu(1000, 1));
        t.tenant = Name::from("acme");
        t.submitted_at_us = T0;
        t
    };
    c.on_task(job("blocker", "long"), T0, &mut out);
    let mut running = runs(&mut out).pop().expect("blocker runs");
    for (id, kind) in [
        ("long-1", "long"),
        ("short-1", "short"),
        ("long-2", "long"),
        ("short-2", "short"),
    ] {
        c.on_task(job(id, kind), T0, &mut out);
    }
    let mut order = Vec::new();
    let mut next = |c: &mut CoordinatorState, running: Assignment| {
        c.on_feedback(done(running, Outcome::Succeeded), T0, &mut out);
        c.tick(T0, &mut out);
        runs(&mut out).pop().expect("the next task runs")
    };
    // No model yet: arrival order.
    running = next(&mut c, running);
    order.push(running.task.id.to_string());
    // The model arrives: the queue is re-ranked by its predictions.
    c.on_model(trained_run_time_model());
    let predict = |kind: &str| {
        c.allocator()
            .predicted_runtime_s(&job("p", kind))
            .expect("a prediction")
    };
    let (short, long) = (predict("short"), predict("long"));
    assert!(short < 5.0 && long > 20.0, "short {short} s, long {long} s");
    for _ in 0..3 {
        running = next(&mut c, running);
        order.push(running.task.id.to_string());
    }
    assert_eq!(order, ["long-1", "short-1", "short-2", "long-2"]);
}

/// One executor of 2 cores. A long task (about 100 s by the model) starts
/// at T0; 50 s later a 2-core task arrives and must wait for it (with
/// `wide_deadline_ms` as its latest start, if given), then a long and a
/// short 1-core task. Returns the order in which tasks start, up to the
/// first start after the long task ends.
fn backfill_scenario(
    backfill: tidewater_operators::allocate::BackfillMode,
    wide_deadline_ms: Option<u64>,
) -> Vec<String> {
    let executors = vec![ExecutorSpec::cpu("a", 2000, 100)];
    let feasibility = FeasibilityIndex::new(1, executors.iter().cloned().map(|s| (0, s)));
    let config = AllocatorConfig {
        backfill,
        ..AllocatorConfig::default()
    };
    let allocator = ShardAllocator::new(0, executors, feasibility, &config).expect("allocator");
    let mut c = CoordinatorState::new(allocator, RetryPolicy::default(), false);
    c.on_model(trained_run_time_model());
    let mut out = CoordinatorOutputs::default();
    let job = |id: &str, kind: &str, cpu: u32| {
        let mut t = Task::new(id, kind, ResourceRequest::cpu(cpu, 1));
        t.tenant = Name::from("acme");
        t.submitted_at_us = T0;
        t
    };
    let mut started = Vec::new();
    let mut running = Vec::new();
    let step = |c: &mut CoordinatorState,
                out: &mut CoordinatorOutputs,
                at: u64,
                started: &mut Vec<String>,
                running: &mut Vec<Assignment>| {
        c.tick(at, out);
        for a in runs(out) {
            started.push(a.task.id.to_string());
            running.push(a);
        }
    };
    c.on_task(job("blocker", "long", 1000), T0, &mut out);
    step(&mut c, &mut out, T0, &mut started, &mut running);
    let t1 = T0 + 50_000_000;
    for (id, kind, cpu) in [
        ("wide", "long", 2000),
        ("long-2", "long", 1000),
        ("short-1", "short", 1000),
    ] {
        let mut task = job(id, kind, cpu);
        if id == "wide" {
            task.deadline_ms = wide_deadline_ms;
        }
        c.on_task(task, t1, &mut out);
        step(&mut c, &mut out, t1, &mut started, &mut running);
    }
    // Whatever started with `blocker` finishes now, the blocker included.
    let t2 = T0 + 100_000_000;
    for a in std::mem::take(&mut running) {
        c.on_feedback(done(a, Outcome::Succeeded), t2, &mut out);
    }
    step(&mut c, &mut out, t2, &mut started, &mut running);
    started
}

#[test]
fn easy_backfilling_by_predicted_run_time_keeps_the_heads_start() {
    use tidewater_operators::allocate::BackfillMode;
    // Greedy: the long 1-core task takes the free core, so the 2-core task
    // must wait for it too (about 100 s more).
    assert_eq!(
        backfill_scenario(BackfillMode::Greedy, None),
        ["blocker", "long-2", "wide"]
    );
    // EASY: the 2-core task is reserved the blocker's predicted end; the
    // long task would overrun it and waits, the short one (about 1 s)
    // backfills; the 2-core task starts when the blocker ends.
    assert_eq!(
        backfill_scenario(BackfillMode::Easy, None),
        ["blocker", "short-1", "wide"]
    );
    // EASY, but the 2-core task must start by T0 + 60 s, before the
    // blocker's predicted end: reserving for it would only idle the free
    // core, so the long task backfills; the 2-core task expires waiting and
    // the short one runs when the core frees.
    let deadline_ms = (T0 + 60_000_000) / 1000;
    assert_eq!(
        backfill_scenario(BackfillMode::Easy, Some(deadline_ms)),
        ["blocker", "long-2", "short-1"]
    );
}

#[test]
fn with_attempt_records_every_retried_attempt_is_reported_once_and_the_last_is_final() {
    let mut out = CoordinatorOutputs::default();
    let flaky = Outcome::Failed {
        reason: "flaky".into(),
    };
    // Without attempt records, a retry reports nothing.
    let mut plain = coordinator(vec![ExecutorSpec::cpu("a", 1000, 1000)], BTreeMap::new());
    let mut t = task("plain", "x", ResourceRequest::cpu(1000, 1));
    t.max_attempts = 2;
    plain.on_task(t, T0, &mut out);
    let first = runs(&mut out).pop().expect("placed");
    plain.on_feedback(done(first, flaky.clone()), T0, &mut out);
    assert!(out.retried.is_empty() && out.finals.is_empty());

    let mut c = coordinator(vec![ExecutorSpec::cpu("a", 1000, 1000)], BTreeMap::new())
        .with_attempt_records();
    let mut t = task("thrice", "x", ResourceRequest::cpu(1000, 1));
    t.max_attempts = 3;
    c.on_task(t, T0, &mut out);
    let mut now = T0;
    for outcome in [flaky.clone(), flaky, Outcome::Succeeded] {
        let run = loop {
            if let Some(run) = runs(&mut out).pop() {
                break run;
            }
            now += 1_000_000;
            c.tick(now, &mut out);
        };
        c.on_feedback(done(run, outcome), now, &mut out);
    }
    let retried: Vec<(u16, bool, bool)> = out
        .retried
        .iter()
        .map(|r| (r.task.attempt, r.is_final, r.outcome.is_retryable()))
        .collect();
    assert_eq!(retried, [(1, false, true), (2, false, true)]);
    let finals: Vec<(u16, bool, Outcome)> = out
        .finals
        .iter()
        .map(|f| (f.task.attempt, f.is_final, f.outcome.clone()))
        .collect();
    assert_eq!(finals, [(3, true, Outcome::Succeeded)]);
    assert!(c.is_idle());
}
