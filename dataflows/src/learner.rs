//! The learning loop: final completions train the models, whose new
//! versions are fed back to every coordinator.
//!
//! ```text
//!  records ─► task_pipeline ─► finals ─► Experience ─► (exchange to worker 0) ─► Learn ─┬─► publications (store sink)
//!               ▲  models                                                              │
//!  models ──────┤◄──────────── ModelUpdate (feedback, +1 epoch; broadcast inside) ◄─────┤
//!  metrics ◄── learner_loss (batch loss per version) ◄──────────────────────────────────┘
//! ```
//!
//! [`learning_pipeline`] wraps [`task_pipeline`]: the external models
//! stream (models submitted through the ingress) is concatenated with the
//! learner's publications, fed back one epoch later, and broadcast to the
//! coordinators by the task pipeline, which keep the newest version per
//! target. One learner runs, on worker 0; the others forward their
//! experiences to it. Training happens whenever a mini-batch is full, or
//! when an experience arrives after the oldest pending one has waited
//! `max_batch_delay_ms`; with no further completions a partial batch waits
//! (the operator holds no capability between batches, so the loop never
//! delays shutdown).

use std::collections::HashMap;

use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::core::Feedback as LoopFeedback;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::{Concat, ConnectLoop, ToStream};

use tidewater_operators::dataflow::{ExecutionBackend, TimedStream};
use tidewater_operators::learn::learner::{experience_from_completion, Learner, Publication};
use tidewater_operators::model::{
    now_micros, Completion, ControlCommand, Experience, MetricEvent, MetricKind, ModelTarget,
    ModelUpdate, Name, SourceRecord,
};

use crate::pipeline::{task_pipeline, PipelineParts, PipelineStreams};

/// What the learning loop needs on each worker.
pub struct LearnerParts {
    /// The learner: `Some` on worker 0 (where experiences are sent), `None`
    /// elsewhere.
    pub learner: Option<Learner>,
    /// Executor classes by executor id (unknown executors: `default`).
    pub executor_classes: HashMap<Name, String>,
}

/// The task pipeline's outputs, with the learner's publications.
pub struct LearningStreams<'scope> {
    /// The task pipeline's streams.
    pub pipeline: PipelineStreams<'scope>,
    /// Every model version the learner published, with its training
    /// metrics, on worker 0 (for the model registry).
    pub publications: TimedStream<'scope, Publication>,
}

/// The task pipeline with a learner in the loop when `learning` is given
/// (it must be given on every worker or on none); without it, the plain
/// task pipeline and an empty publications stream.
pub fn learning_pipeline<'scope, B: ExecutionBackend + 'static>(
    records: TimedStream<'scope, SourceRecord>,
    models: TimedStream<'scope, ModelUpdate>,
    control: TimedStream<'scope, ControlCommand>,
    parts: PipelineParts<B>,
    learning: Option<LearnerParts>,
) -> LearningStreams<'scope> {
    let scope = records.scope();
    let Some(LearnerParts {
        mut learner,
        executor_classes,
    }) = learning
    else {
        let publications = Vec::<Publication>::new().to_stream(scope);
        return LearningStreams {
            pipeline: task_pipeline(records, models, control, parts),
            publications,
        };
    };
    let (loop_handle, learned) = scope.feedback::<Vec<ModelUpdate>>(1);
    let pipeline = task_pipeline(records, models.concat(learned), control, parts);
    let experiences = pipeline.finals.clone().map(move |c: Completion| {
        let class = executor_classes
            .get(&c.executor)
            .map_or("default", String::as_str);
        experience_from_completion(&c, class)
    });
    let publications = experiences.unary(
        Exchange::new(|_: &Experience| 0u64),
        "Learn",
        move |_capability, _info| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let mut session = output.session(&cap);
                    for experience in data.flat_map(|d| d.drain(..)) {
                        let Some(learner) = learner.as_mut() else {
                            continue;
                        };
                        match learner.observe_at(experience, now_micros() / 1000) {
                            Ok(published) => {
                                for p in &published {
                                    tracing::debug!(
                                        target_model = ?p.update.target,
                                        version = p.update.version,
                                        samples = p.update.trained_samples,
                                        "learner published a model version"
                                    );
                                }
                                session.give_iterator(published.into_iter());
                            }
                            Err(e) => tracing::error!(error = %e, "learner step failed"),
                        }
                    }
                });
            }
        },
    );
    publications
        .clone()
        .map(|p: Publication| p.update)
        .connect_loop(loop_handle);
    // The learner reports each version's batch loss as a metric, so that
    // continuous queries and alerts can watch training.
    let losses = publications
        .clone()
        .flat_map(|p: Publication| loss_metric(&p));
    let mut pipeline = pipeline;
    pipeline.metrics = pipeline.metrics.concat(losses);
    LearningStreams {
        pipeline,
        publications,
    }
}

/// The `learner_loss` metric of a published version: its batch loss, with
/// the model (`run_time` or `failure`) as the task kind and the device
/// (`cpu` or `gpu`) as the executor.
fn loss_metric(publication: &Publication) -> Option<MetricEvent> {
    let loss = *publication.metrics.get("batch_loss")?;
    let model = match publication.update.target {
        ModelTarget::RunTime => "run_time",
        ModelTarget::Failure => "failure",
    };
    let on_gpu = publication.metrics.get("on_gpu").is_some_and(|g| *g > 0.0);
    Some(MetricEvent {
        kind: MetricKind::LearnerLoss,
        task_kind: Name::const_new(model),
        tenant: Name::default(),
        executor: Name::const_new(if on_gpu { "gpu" } else { "cpu" }),
        status: Name::default(),
        qos: Default::default(),
        value: loss,
        at_ms: now_micros() / 1000,
    })
}
