//! End to end through the learning loop: tasks run on a simulated backend,
//! their final completions train the learner on worker 0, and the model
//! versions it publishes reach every worker's coordinator (observed through
//! the coordinator's adoption listener).
//!
//! The learner trains on the CPU unless `TIDEWATER_TEST_LEARNER_DEVICE`
//! names another device (`cuda:0`, `auto`): on a machine with a GPU, run it
//! with `cuda:0` to take the same loop through the CUDA trainer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Input;
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;
use timely::scheduling::SyncActivator;

use tidewater_dataflows::learner::{learning_pipeline, LearnerParts};
use tidewater_dataflows::pipeline::PipelineParts;
use tidewater_operators::allocate::{AllocatorConfig, FeasibilityIndex, ShardAllocator};
use tidewater_operators::dataflow::{CoordinatorState, ExecutionBackend, RetryPolicy};
use tidewater_operators::learn::learner::{Learner, Publication};
use tidewater_operators::learn::settings::{DeviceChoice, LearnerSettings};
use tidewater_operators::model::{
    now_micros, AbortReason, AckToken, Assignment, Completion, ControlCommand, Epoch, ExecutorSpec,
    Lease, MetricEvent, MetricKind, ModelTarget, ModelUpdate, Name, Outcome, RecordBody,
    ResourceRequest, SourceRecord, Task,
};
use tidewater_operators::validate::{ValidationLimits, Validator};

/// Finishes every assignment at once, reporting a run time by task kind.
struct SimulatedBackend;

impl ExecutionBackend for SimulatedBackend {
    fn set_activator(&mut self, _activator: SyncActivator) {}

    fn start(&mut self, a: Assignment, done: &mut Vec<Completion>) {
        let run_us = if a.task.kind.as_str() == "slow" {
            20_000_000
        } else {
            50_000
        };
        let started_at_us = now_micros();
        done.push(Completion {
            executor: a.executor,
            shard: a.shard,
            lease: a.lease,
            outcome: Outcome::Succeeded,
            started_at_us,
            finished_at_us: started_at_us + run_us,
            exit_code: None,
            output_bytes: 0,
            is_final: false,
            result: None,
            task: a.task,
        });
    }

    fn abort(&mut self, _lease: Lease, _reason: AbortReason) {}

    fn poll(&mut self, _done: &mut Vec<Completion>) {}

    fn in_flight(&self) -> usize {
        0
    }
}

type Adopted = Arc<Mutex<Vec<(usize, ModelTarget, u64)>>>;

/// The learner's device for this run (see the module docs).
fn learner_device() -> DeviceChoice {
    std::env::var("TIDEWATER_TEST_LEARNER_DEVICE")
        .map(|d| {
            d.parse()
                .expect("TIDEWATER_TEST_LEARNER_DEVICE: auto, cpu or cuda:N")
        })
        .unwrap_or(DeviceChoice::Cpu)
}

#[test]
fn model_versions_reach_every_coordinator() {
    const WORKERS: usize = 2;
    let device = learner_device();
    const TASKS: usize = 200;
    let adopted: Adopted = Arc::new(Mutex::new(Vec::new()));
    let published: Arc<Mutex<Vec<Publication>>> = Arc::new(Mutex::new(Vec::new()));
    let losses: Arc<Mutex<Vec<MetricEvent>>> = Arc::new(Mutex::new(Vec::new()));
    let (adopted_w, published_w, losses_w) = (
        Arc::clone(&adopted),
        Arc::clone(&published),
        Arc::clone(&losses),
    );
    let guards = timely::execute(timely::Config::process(WORKERS), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let specs: Vec<ExecutorSpec> = (0..peers)
            .map(|i| ExecutorSpec::cpu(format!("e{i}"), 64_000, 64_000))
            .collect();
        let feasibility = FeasibilityIndex::new(
            peers,
            specs.iter().enumerate().map(|(i, s)| (i as u32, s.clone())),
        );
        let allocator = ShardAllocator::new(
            index as u32,
            vec![specs[index].clone()],
            feasibility,
            &AllocatorConfig::default(),
        )
        .expect("allocator");
        let adopted = Arc::clone(&adopted_w);
        let coordinator = CoordinatorState::new(allocator, RetryPolicy::default(), false)
            .on_model_adopted(Box::new(move |update: &ModelUpdate| {
                if let Ok(mut seen) = adopted.lock() {
                    seen.push((index, update.target, update.version));
                }
            }));
        let parts = PipelineParts {
            validator: Validator::new(ValidationLimits::default(), index, 1),
            coordinator,
            backend: SimulatedBackend,
            emit_metrics: false,
            screen: None,
        };
        let settings = LearnerSettings {
            enabled: true,
            device,
            batch_size: 10,
            learning_rate: 0.05,
            feature_dim: 256,
            ..Default::default()
        };
        let learning = LearnerParts {
            learner: (index == 0).then(|| Learner::new(&settings).expect("learner")),
            executor_classes: HashMap::new(),
        };
        let probe = ProbeHandle::new();
        let published = Arc::clone(&published_w);
        let losses = Arc::clone(&losses_w);
        let (mut records_in, mut models_in, mut control_in) =
            worker.dataflow::<Epoch, _, _>(|scope| {
                let (records_in, records) = scope.new_input::<Vec<SourceRecord>>();
                let (models_in, models) = scope.new_input::<Vec<ModelUpdate>>();
                let (control_in, control) = scope.new_input::<Vec<ControlCommand>>();
                let streams = learning_pipeline(records, models, control, parts, Some(learning));
                streams.pipeline.finals.probe_with(&probe);
                streams.pipeline.metrics.sink(
                    timely::dataflow::channels::pact::Pipeline,
                    "Losses",
                    move |(input, _)| {
                        input.for_each(|_, data| {
                            if let Ok(mut all) = losses.lock() {
                                all.extend(
                                    data.drain(..).filter(|m| m.kind == MetricKind::LearnerLoss),
                                );
                            }
                        });
                    },
                );
                streams.publications.sink(
                    timely::dataflow::channels::pact::Pipeline,
                    "Publications",
                    move |(input, _)| {
                        input.for_each(|_, data| {
                            if let Ok(mut all) = published.lock() {
                                all.append(data);
                            }
                        });
                    },
                );
                (records_in, models_in, control_in)
            });
        let mut epoch: Epoch = 1;
        for i in (index..TASKS).step_by(peers) {
            let kind = if i % 2 == 0 { "slow" } else { "fast" };
            let mut task = Task::new(format!("t{i}"), kind, ResourceRequest::cpu(100, 10));
            task.tenant = Name::from("alice");
            task.submitted_at_us = now_micros();
            records_in.send(SourceRecord {
                body: RecordBody::Task(Box::new(task)),
                ack: AckToken {
                    origin_worker: index as u32,
                    source: 0,
                    tag: 0,
                },
                source_name: Name::from("test"),
                received_at_us: 0,
                trace: None,
            });
            if i % 20 < peers {
                epoch += 1;
                records_in.advance_to(epoch);
                models_in.advance_to(epoch);
                control_in.advance_to(epoch);
                worker.step();
            }
        }
        // Let the loop carry the last versions around, then close.
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            epoch += 1;
            records_in.advance_to(epoch);
            models_in.advance_to(epoch);
            control_in.advance_to(epoch);
            while probe.less_than(&epoch) && Instant::now() < deadline {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
            // Done once every worker has adopted the last version of both
            // models (200 tasks in batches of 10: version 20).
            let done = adopted_w.lock().is_ok_and(|seen| {
                (0..peers).all(|w| {
                    [ModelTarget::RunTime, ModelTarget::Failure]
                        .iter()
                        .all(|t| seen.contains(&(w, *t, (TASKS / 10) as u64)))
                })
            });
            if done {
                break;
            }
        }
        drop((records_in, models_in, control_in));
        while !probe.done() {
            worker.step_or_park(Some(Duration::from_millis(1)));
        }
    })
    .expect("workers start");
    for result in guards.join() {
        result.expect("worker finished");
    }

    let published = published.lock().expect("publications");
    let run_time: Vec<&Publication> = published
        .iter()
        .filter(|p| p.update.target == ModelTarget::RunTime)
        .collect();
    assert_eq!(run_time.len(), TASKS / 10, "one version per batch of 10");
    let last = run_time.last().expect("a run-time model");
    assert_eq!(last.update.version, (TASKS / 10) as u64);
    assert_eq!(last.update.trained_samples, TASKS as u64);
    assert!(last.metrics.contains_key("median_abs_log_error"));
    let on_gpu = last.metrics.get("on_gpu").copied();
    let expected_executor = match device {
        DeviceChoice::Cpu => "cpu",
        DeviceChoice::Cuda(_) => "gpu",
        // Auto: whatever the learner found, as long as metrics agree.
        DeviceChoice::Auto if on_gpu == Some(1.0) => "gpu",
        DeviceChoice::Auto => "cpu",
    };
    assert_eq!(
        on_gpu,
        Some(f64::from(u8::from(expected_executor == "gpu"))),
        "trained on {expected_executor}"
    );
    eprintln!("learning loop trained on {expected_executor} ({device})");

    // Each version's batch loss is reported as a `learner_loss` metric.
    let losses = losses.lock().expect("losses");
    assert_eq!(losses.len(), published.len(), "one loss per version");
    for target in ["run_time", "failure"] {
        let n = losses.iter().filter(|m| m.task_kind == target).count();
        assert_eq!(n, TASKS / 10, "{target} losses");
    }
    assert!(losses
        .iter()
        .all(|m| m.value.is_finite() && m.value >= 0.0 && m.executor == expected_executor));

    let adopted = adopted.lock().expect("adopted");
    for worker in 0..WORKERS {
        for target in [ModelTarget::RunTime, ModelTarget::Failure] {
            let versions: Vec<u64> = adopted
                .iter()
                .filter(|(w, t, _)| *w == worker && *t == target)
                .map(|(_, _, v)| *v)
                .collect();
            assert!(
                versions.windows(2).all(|w| w[0] < w[1]),
                "worker {worker} {target:?}: versions adopted in order, {versions:?}"
            );
            assert_eq!(
                versions.last().copied(),
                Some((TASKS / 10) as u64),
                "worker {worker} {target:?} adopted the newest version"
            );
        }
    }
}
