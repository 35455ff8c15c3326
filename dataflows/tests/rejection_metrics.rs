//! One `rejected` metric event per rejection, wherever the rejection is
//! made: at intake (a record that does not decode or validate) or by a
//! coordinator (a request no executor could ever hold). The coordinator's
//! rejections were once counted twice, once by the coordinator and once
//! more where the pipeline joins the rejection streams; the cluster
//! equivalence test's query check found it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Input;
use timely::dataflow::operators::Probe;
use timely::dataflow::ProbeHandle;
use timely::scheduling::SyncActivator;

use tidewater_dataflows::pipeline::{task_pipeline, PipelineParts};
use tidewater_operators::allocate::{AllocatorConfig, FeasibilityIndex, ShardAllocator};
use tidewater_operators::dataflow::{CoordinatorState, ExecutionBackend, RetryPolicy};
use tidewater_operators::model::{
    now_micros, AbortReason, AckToken, Assignment, Completion, ControlCommand, Epoch, ExecutorSpec,
    Lease, MetricEvent, MetricKind, ModelUpdate, Name, Outcome, RecordBody, Rejection,
    SourceRecord,
};
use tidewater_operators::validate::{ValidationLimits, Validator};

/// Finishes every assignment at once.
struct InstantBackend;

impl ExecutionBackend for InstantBackend {
    fn set_activator(&mut self, _activator: SyncActivator) {}

    fn start(&mut self, a: Assignment, done: &mut Vec<Completion>) {
        let now = now_micros();
        done.push(Completion {
            executor: a.executor,
            shard: a.shard,
            lease: a.lease,
            outcome: Outcome::Succeeded,
            started_at_us: now,
            finished_at_us: now,
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

#[test]
fn every_rejection_is_counted_once_in_the_rejected_metric() {
    // Three that run, two refused at intake (a negative request, malformed
    // JSON) and three that no executor could hold (refused by the
    // coordinator), on two workers.
    let records = [
        r#"{"id":"ok-1","kind":"noop"}"#,
        r#"{"id":"ok-2","kind":"noop","resources":{"cpu_milli":500}}"#,
        r#"{"id":"ok-3","kind":"noop"}"#,
        r#"{"id":"bad-1","kind":"noop","resources":{"cpu_milli":-5}}"#,
        r#"{"id":"bad-2","kind":"#,
        r#"{"id":"big-1","kind":"noop","resources":{"cpu_milli":64000}}"#,
        r#"{"id":"big-2","kind":"noop","resources":{"cpu_milli":99000}}"#,
        r#"{"id":"big-3","kind":"noop","resources":{"gpu_milli":1000}}"#,
    ];
    let rejections: Arc<Mutex<Vec<Rejection>>> = Arc::default();
    let metrics: Arc<Mutex<Vec<MetricEvent>>> = Arc::default();
    let (rejections_w, metrics_w) = (Arc::clone(&rejections), Arc::clone(&metrics));
    let guards = timely::execute(timely::Config::process(2), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let specs: Vec<ExecutorSpec> = (0..peers)
            .map(|i| ExecutorSpec::cpu(format!("e{i}"), 4_000, 4_096))
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
        let parts = PipelineParts {
            validator: Validator::new(ValidationLimits::default(), index, 1),
            coordinator: CoordinatorState::new(allocator, RetryPolicy::default(), true),
            backend: InstantBackend,
            emit_metrics: true,
            screen: None,
        };
        let probe = ProbeHandle::new();
        let (rejections, metrics) = (Arc::clone(&rejections_w), Arc::clone(&metrics_w));
        let (mut records_in, mut models_in, mut control_in) =
            worker.dataflow::<Epoch, _, _>(|scope| {
                let (records_in, records) = scope.new_input::<Vec<SourceRecord>>();
                let (models_in, models) = scope.new_input::<Vec<ModelUpdate>>();
                let (control_in, control) = scope.new_input::<Vec<ControlCommand>>();
                let streams = task_pipeline(records, models, control, parts);
                streams.finals.probe_with(&probe);
                streams.rejections.probe_with(&probe).sink(
                    timely::dataflow::channels::pact::Pipeline,
                    "Rejections",
                    move |(input, _)| {
                        input.for_each(|_, data| {
                            rejections.lock().expect("rejections").append(data);
                        });
                    },
                );
                streams.metrics.probe_with(&probe).sink(
                    timely::dataflow::channels::pact::Pipeline,
                    "Metrics",
                    move |(input, _)| {
                        input.for_each(|_, data| {
                            metrics.lock().expect("metrics").append(data);
                        });
                    },
                );
                (records_in, models_in, control_in)
            });
        for (i, line) in records.iter().enumerate().skip(index).step_by(peers) {
            records_in.send(SourceRecord {
                body: RecordBody::Json(line.as_bytes().to_vec()),
                ack: AckToken {
                    origin_worker: index as u32,
                    source: 0,
                    tag: i as u64,
                },
                source_name: Name::from("test"),
                received_at_us: now_micros(),
                trace: None,
            });
        }
        // Step a few epochs so that the feedback loop settles, then close.
        let deadline = Instant::now() + Duration::from_secs(10);
        for epoch in 1..=20 {
            records_in.advance_to(epoch);
            models_in.advance_to(epoch);
            control_in.advance_to(epoch);
            while probe.less_than(&epoch) && Instant::now() < deadline {
                worker.step_or_park(Some(Duration::from_millis(1)));
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

    let rejections = rejections.lock().expect("rejections");
    let mut codes: Vec<&str> = rejections.iter().map(|r| r.reason.code()).collect();
    codes.sort_unstable();
    assert_eq!(
        codes,
        [
            "infeasible",
            "infeasible",
            "infeasible",
            "invalid_value",
            "malformed"
        ],
        "{rejections:?}"
    );
    let metrics = metrics.lock().expect("metrics");
    let mut counted: Vec<&str> = metrics
        .iter()
        .filter(|m| m.kind == MetricKind::Rejected)
        .map(|m| m.status.as_str())
        .collect();
    counted.sort_unstable();
    assert_eq!(counted, codes, "one rejected metric per rejection");
    let completed = metrics
        .iter()
        .filter(|m| m.kind == MetricKind::Completed)
        .count();
    assert_eq!(completed, 3, "one completed metric per attempt");
}
