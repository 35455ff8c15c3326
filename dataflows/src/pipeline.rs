//! The task pipeline: sources to results, with the release feedback loop.
//!
//! ```text
//!  records ─► Decode ─┬─► tasks ─► (Screen) ─► Coordinate ─► work (run/abort) ─► Execute ─┐
//!                     │              ▲ ▲ │  ▲                               │
//!                     │  models ─────┘ │ │  └── feedback (+1 epoch) ◄───────┤ completions
//!                     │  control ──────┘ │     (broadcast: cancel, join, heartbeat,
//!                     │                  │      leave, reserve)
//!                     │ (broadcast)      │       ◄── forwards           │
//!                     ▼                  ▼                              │
//!                 rejections ◄─── rejections      finals ──► (to origin worker)
//!                     └──► (to origin worker)     metrics ◄─────────────┘
//!                                                 retried attempts (when recorded)
//! ```
//!
//! Final completions and rejections are exchanged to the worker that
//! ingested the record (its [`AckToken`](tidewater_operators::model::AckToken)
//! names it), where the runtime's sinks record them and acknowledge the
//! source.

use timely::dataflow::operators::core::{Exchange, Feedback as LoopFeedback};
use timely::dataflow::operators::vec::{Broadcast, Map};
use timely::dataflow::operators::{Concat, ConnectLoop};

use tidewater_operators::dataflow::{
    metric_for_rejection, Coordinate, CoordinatorState, Decode, Execute, ExecutionBackend,
    Feedback, TimedStream,
};
use tidewater_operators::model::{
    Completion, ControlCommand, MetricEvent, MetricKind, ModelUpdate, Name, Rejection,
    ReservationStatus, SourceRecord,
};
use tidewater_operators::validate::Validator;

/// What the pipeline needs from the runtime on each worker.
pub struct PipelineParts<B> {
    /// Decodes this worker's records.
    pub validator: Validator,
    /// This worker's shard of the coordinator.
    pub coordinator: CoordinatorState,
    /// Runs this worker's assignments.
    pub backend: B,
    /// Whether to produce metric events.
    pub emit_metrics: bool,
    /// Checks decoded tasks before coordination (the runtime's duplicate
    /// check for broker deliveries); `None` lets every task through.
    pub screen: Option<crate::screen::Screen>,
}

/// The pipeline's outputs on one worker.
pub struct PipelineStreams<'scope> {
    /// Final completions of tasks this worker ingested.
    pub finals: TimedStream<'scope, Completion>,
    /// Rejections of records this worker ingested.
    pub rejections: TimedStream<'scope, Rejection>,
    /// Metric events (empty unless enabled).
    pub metrics: TimedStream<'scope, MetricEvent>,
    /// What became of reservations, broadcast to every worker so that any
    /// process's API can answer for them.
    pub reservations: TimedStream<'scope, ReservationStatus>,
    /// Attempts that ended and will be retried, on the worker whose shard
    /// ran them (empty unless the coordinator records attempts).
    pub retried: TimedStream<'scope, Completion>,
}

/// Builds the task pipeline over `records`, `models` (model updates from
/// any worker) and `control` commands (from any worker); models and
/// commands are broadcast to every coordinator here.
pub fn task_pipeline<'scope, B: ExecutionBackend + 'static>(
    records: TimedStream<'scope, SourceRecord>,
    models: TimedStream<'scope, ModelUpdate>,
    control: TimedStream<'scope, ControlCommand>,
    parts: PipelineParts<B>,
) -> PipelineStreams<'scope> {
    let scope = records.scope();
    let emit_metrics = parts.emit_metrics;
    let (tasks, decode_rejections) = records.decode(parts.validator);
    let (tasks, decode_rejections) = match parts.screen {
        Some(screen) => {
            let (tasks, refused) = crate::screen::screened(tasks, screen);
            (tasks, decode_rejections.concat(refused))
        }
        None => (tasks, decode_rejections),
    };
    let (loop_handle, feedback) = scope.feedback::<Vec<Feedback>>(1);
    let coordinated = tasks.clone().coordinate(
        feedback,
        models.broadcast(),
        control.broadcast(),
        parts.coordinator,
    );
    let completions = coordinated.work.execute(parts.backend);
    completions
        .map(Feedback::Completed)
        .concat(coordinated.forwards)
        .connect_loop(loop_handle);

    // One `rejected` metric per rejection: the coordinator's own
    // (infeasible, deadline passed) are in `coordinated.metrics` already,
    // so only the intake's are derived here.
    let intake_rejected =
        emit_metrics.then(|| decode_rejections.clone().map(|r| metric_for_rejection(&r)));
    let rejections = decode_rejections.concat(coordinated.rejections);
    let metrics = if let Some(rejected) = intake_rejected {
        let submitted = tasks.map(|task| MetricEvent {
            kind: MetricKind::Submitted,
            task_kind: task.kind,
            tenant: task.tenant,
            executor: Name::default(),
            status: Name::default(),
            qos: task.qos,
            value: 1.0,
            at_ms: task.submitted_at_us / 1000,
        });
        submitted.concat(rejected).concat(coordinated.metrics)
    } else {
        coordinated.metrics
    };
    PipelineStreams {
        finals: coordinated
            .finals
            .exchange(|c: &Completion| u64::from(c.task.ack.origin_worker)),
        rejections: rejections.exchange(|r: &Rejection| u64::from(r.ack.origin_worker)),
        metrics,
        reservations: coordinated.reservations.broadcast(),
        retried: coordinated.retried,
    }
}
