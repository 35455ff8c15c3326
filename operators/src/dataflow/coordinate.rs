//! The `Coordinate` operator: the coordinator and resource manager of one shard.
//!
//! ```text
//!  tasks ───────────────┐
//!  feedback (exchanged  ├─► CoordinatorState ─┬─► assignments
//!   to the owning shard)│   (ShardAllocator,  ├─► final completions
//!  model updates ───────┘    retries, models) ├─► rejections
//!                                             ├─► forwards (back into feedback)
//!                                             └─► metrics
//! ```
//!
//! Completions release their lease in the round they arrive; a failed or
//! timed-out attempt with attempts left is re-queued after an exponential
//! backoff, otherwise it leaves as a final completion.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::progress::frontier::AntichainRef;

use crate::allocate::{Decision, ShardAllocator};
use crate::model::{
    now_micros, Assignment, Completion, Epoch, Lease, MetricEvent, MetricKind, ModelTarget,
    ModelUpdate, Name, Outcome, RejectReason, Rejection, Task,
};

use super::TimedStream;

/// What flows around the coordinator's feedback loop, each addressed to a shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Feedback {
    /// An attempt finished; release its lease in `completion.shard`.
    Completed(Completion),
    /// A task that only `shard` can hold.
    Forwarded {
        /// The shard to place it.
        shard: u32,
        /// The task.
        task: Task,
    },
}

impl Feedback {
    /// The shard this feedback is addressed to.
    pub fn shard(&self) -> u32 {
        match self {
            Feedback::Completed(c) => c.shard,
            Feedback::Forwarded { shard, .. } => *shard,
        }
    }
}

/// Exponential backoff between attempts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Delay before the second attempt, in milliseconds.
    pub initial_backoff_ms: u64,
    /// Each further delay is multiplied by this.
    pub multiplier: f64,
    /// Upper bound on any delay, in milliseconds.
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff_ms: 100,
            multiplier: 2.0,
            max_backoff_ms: 30_000,
        }
    }
}

impl RetryPolicy {
    /// Delay before attempt `next_attempt` (2 for the first retry).
    pub fn backoff(&self, next_attempt: u16) -> Duration {
        let exponent = i32::from(next_attempt.saturating_sub(2));
        let ms = self.initial_backoff_ms as f64 * self.multiplier.powi(exponent);
        Duration::from_millis(ms.min(self.max_backoff_ms as f64) as u64)
    }
}

/// Everything one coordinator round produced.
#[derive(Default, Debug)]
pub struct CoordinatorOutputs {
    /// Tasks placed on this shard's executors.
    pub assignments: Vec<Assignment>,
    /// Final completions (no retry follows).
    pub finals: Vec<Completion>,
    /// Tasks that can never run.
    pub rejections: Vec<Rejection>,
    /// Tasks for other shards.
    pub forwards: Vec<Feedback>,
    /// Assigned, retried, completed and rejected metric events.
    pub metrics: Vec<MetricEvent>,
}

/// The sequential logic of one shard's coordinator, independent of timely so
/// that it can be tested against a reference directly.
pub struct CoordinatorState {
    allocator: ShardAllocator,
    retry: RetryPolicy,
    delayed: BTreeMap<(u64, u64), Task>,
    delayed_seq: u64,
    models: HashMap<ModelTarget, ModelUpdate>,
    emit_metrics: bool,
    decisions: Vec<Decision>,
}

impl CoordinatorState {
    /// A coordinator over `allocator`'s shard.
    pub fn new(allocator: ShardAllocator, retry: RetryPolicy, emit_metrics: bool) -> Self {
        CoordinatorState {
            allocator,
            retry,
            delayed: BTreeMap::new(),
            delayed_seq: 0,
            models: HashMap::new(),
            emit_metrics,
            decisions: Vec::new(),
        }
    }

    /// The shard's allocator.
    pub fn allocator(&self) -> &ShardAllocator {
        &self.allocator
    }

    /// The latest model received for `target`.
    pub fn model(&self, target: ModelTarget) -> Option<&ModelUpdate> {
        self.models.get(&target)
    }

    /// Whether nothing is queued, running or waiting to retry.
    pub fn is_idle(&self) -> bool {
        self.allocator.queued() == 0 && self.allocator.running() == 0 && self.delayed.is_empty()
    }

    /// When the next delayed retry is due, microseconds since the Unix epoch.
    pub fn next_wakeup_us(&self) -> Option<u64> {
        self.delayed.keys().next().map(|(due, _)| *due)
    }

    /// Offers a new or forwarded task.
    pub fn on_task(&mut self, task: Task, now_us: u64, out: &mut CoordinatorOutputs) {
        self.allocator.submit(task, now_us, &mut self.decisions);
        self.drain_decisions(now_us, out);
    }

    /// Handles a feedback record addressed to this shard.
    pub fn on_feedback(&mut self, feedback: Feedback, now_us: u64, out: &mut CoordinatorOutputs) {
        match feedback {
            Feedback::Forwarded { task, .. } => self.on_task(task, now_us, out),
            Feedback::Completed(completion) => self.on_completion(completion, now_us, out),
        }
    }

    /// Records a new model version, keeping only the newest per target.
    pub fn on_model(&mut self, update: ModelUpdate) {
        match self.models.get(&update.target) {
            Some(current) if current.version >= update.version => {}
            _ => {
                self.models.insert(update.target, update);
            }
        }
    }

    fn on_completion(
        &mut self,
        mut completion: Completion,
        now_us: u64,
        out: &mut CoordinatorOutputs,
    ) {
        if completion.lease != Lease(0) && self.allocator.release(completion.lease).is_none() {
            tracing::warn!(task = %completion.task.id, lease = completion.lease.0, "completion for a lease not held; ignored");
            return;
        }
        if self.emit_metrics {
            out.metrics.push(super::metric_for_completion(&completion));
        }
        let task = &completion.task;
        if completion.outcome.is_retryable() && task.attempt < task.max_attempts {
            let mut retry = completion.task;
            retry.attempt += 1;
            let due = now_us + self.retry.backoff(retry.attempt).as_micros() as u64;
            if self.emit_metrics {
                out.metrics.push(event(
                    MetricKind::Retried,
                    &retry,
                    &completion.executor,
                    1.0,
                    now_us,
                ));
            }
            self.delayed_seq += 1;
            self.delayed.insert((due, self.delayed_seq), retry);
        } else {
            completion.is_final = true;
            out.finals.push(completion);
        }
    }

    /// Re-queues retries that are due and places what now fits.
    pub fn tick(&mut self, now_us: u64, out: &mut CoordinatorOutputs) {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now_us {
                break;
            }
            let task = entry.remove();
            self.allocator.requeue(task);
        }
        self.allocator.schedule(now_us, &mut self.decisions);
        self.drain_decisions(now_us, out);
    }

    fn drain_decisions(&mut self, now_us: u64, out: &mut CoordinatorOutputs) {
        let shard = self.allocator.shard();
        for decision in self.decisions.drain(..) {
            match decision {
                Decision::Assign(assignment) => {
                    if self.emit_metrics {
                        let wait_s =
                            now_us.saturating_sub(assignment.task.submitted_at_us) as f64 / 1e6;
                        out.metrics.push(event(
                            MetricKind::Assigned,
                            &assignment.task,
                            &assignment.executor,
                            wait_s,
                            now_us,
                        ));
                    }
                    out.assignments.push(assignment);
                }
                Decision::Forward { task, shard } => {
                    out.forwards.push(Feedback::Forwarded { shard, task })
                }
                Decision::Reject {
                    task,
                    reason: reason @ RejectReason::DeadlinePassed { .. },
                } => {
                    let completion = Completion {
                        outcome: Outcome::Failed {
                            reason: reason.to_string(),
                        },
                        executor: Name::default(),
                        shard,
                        lease: Lease(0),
                        started_at_us: now_us,
                        finished_at_us: now_us,
                        exit_code: None,
                        output_bytes: 0,
                        is_final: true,
                        task,
                    };
                    if self.emit_metrics {
                        out.metrics.push(super::metric_for_completion(&completion));
                    }
                    out.finals.push(completion);
                }
                Decision::Reject { task, reason } => {
                    let rejection = Rejection {
                        reason,
                        task_id: Some(task.id.clone()),
                        source_name: Name::const_new("coordinator"),
                        excerpt: String::new(),
                        ack: task.ack,
                        at_us: now_us,
                    };
                    if self.emit_metrics {
                        out.metrics.push(super::metric_for_rejection(&rejection));
                    }
                    out.rejections.push(rejection);
                }
            }
        }
    }
}

fn event(kind: MetricKind, task: &Task, executor: &Name, value: f64, now_us: u64) -> MetricEvent {
    MetricEvent {
        kind,
        task_kind: task.kind.clone(),
        tenant: task.tenant.clone(),
        executor: executor.clone(),
        status: Name::default(),
        qos: task.qos,
        value,
        at_ms: now_us / 1000,
    }
}

/// The coordinator operator's output streams.
pub struct CoordinatorStreams<'scope> {
    /// Tasks placed on executors of this worker's shard.
    pub assignments: TimedStream<'scope, Assignment>,
    /// Final completions.
    pub finals: TimedStream<'scope, Completion>,
    /// Tasks that can never run.
    pub rejections: TimedStream<'scope, Rejection>,
    /// Tasks for other shards; connect into the feedback loop.
    pub forwards: TimedStream<'scope, Feedback>,
    /// Metric events.
    pub metrics: TimedStream<'scope, MetricEvent>,
}

/// Places tasks on this worker's shard of executors.
pub trait Coordinate<'scope> {
    /// Runs `state` over this stream of tasks, the `feedback` loop (exchanged
    /// here to the shard each record addresses) and broadcast `models`.
    fn coordinate(
        self,
        feedback: TimedStream<'scope, Feedback>,
        models: TimedStream<'scope, ModelUpdate>,
        state: CoordinatorState,
    ) -> CoordinatorStreams<'scope>;
}

type Out<D> = OutputBuilder<Epoch, CapacityContainerBuilder<Vec<D>>>;

impl<'scope> Coordinate<'scope> for TimedStream<'scope, Task> {
    fn coordinate(
        self,
        feedback: TimedStream<'scope, Feedback>,
        models: TimedStream<'scope, ModelUpdate>,
        mut state: CoordinatorState,
    ) -> CoordinatorStreams<'scope> {
        let scope = self.scope();
        let mut builder = OperatorBuilder::new("Coordinate".to_owned(), scope);
        let activator = scope.activator_for(builder.operator_info().address);
        let mut tasks_in = builder.new_input(self, Pipeline);
        let mut feedback_in =
            builder.new_input(feedback, Exchange::new(|f: &Feedback| u64::from(f.shard())));
        let mut models_in = builder.new_input(models, Pipeline);
        let (a, assignments) = builder.new_output();
        let (f, finals) = builder.new_output();
        let (r, rejections) = builder.new_output();
        let (w, forwards) = builder.new_output();
        let (m, metrics) = builder.new_output();
        let (mut a, mut f, mut r, mut w, mut m): (Out<_>, Out<_>, Out<_>, Out<_>, Out<_>) = (
            OutputBuilder::from(a),
            OutputBuilder::from(f),
            OutputBuilder::from(r),
            OutputBuilder::from(w),
            OutputBuilder::from(m),
        );

        builder.build(move |capabilities| {
            let mut caps: Option<Vec<Capability<Epoch>>> = Some(capabilities);
            let mut out = CoordinatorOutputs::default();
            move |frontiers| {
                let now_us = now_micros();
                tasks_in.for_each(|_cap, data| {
                    for task in data.drain(..) {
                        state.on_task(task, now_us, &mut out);
                    }
                });
                feedback_in.for_each(|cap, data| {
                    // Work forwarded or completed after this shard went idle
                    // arrives with the capability to answer it.
                    if caps.is_none() {
                        caps = (0..5).map(|port| cap.retain_least(port)).collect();
                    }
                    for fb in data.drain(..) {
                        state.on_feedback(fb, now_us, &mut out);
                    }
                });
                models_in.for_each(|_cap, data| {
                    for update in data.drain(..) {
                        state.on_model(update);
                    }
                });
                state.tick(now_us, &mut out);

                // Hold capabilities while the shard has work or its task input is open.
                if let Some(held) = caps.as_mut() {
                    let time = *held[0].time();
                    emit(&mut a, &held[0], &mut out.assignments);
                    emit(&mut f, &held[1], &mut out.finals);
                    emit(&mut r, &held[2], &mut out.rejections);
                    emit(&mut w, &held[3], &mut out.forwards);
                    emit(&mut m, &held[4], &mut out.metrics);
                    let tasks_frontier: AntichainRef<Epoch> = frontiers[0].frontier();
                    match tasks_frontier.first() {
                        Some(&t) if t > time => held.iter_mut().for_each(|c| c.downgrade(&t)),
                        Some(_) => {}
                        None if state.is_idle() => {
                            tracing::debug!(
                                shard = state.allocator.shard(),
                                "coordinator idle; releasing capabilities"
                            );
                            caps = None
                        }
                        None => tracing::debug!(
                            shard = state.allocator.shard(),
                            queued = state.allocator.queued(),
                            running = state.allocator.running(),
                            delayed = state.delayed.len(),
                            "input closed; holding capabilities until work drains"
                        ),
                    }
                }
                if let Some(due) = state.next_wakeup_us() {
                    activator
                        .activate_after(Duration::from_micros(due.saturating_sub(now_micros())));
                }
            }
        });
        CoordinatorStreams {
            assignments,
            finals,
            rejections,
            forwards,
            metrics,
        }
    }
}

fn emit<D: Clone + 'static>(output: &mut Out<D>, cap: &Capability<Epoch>, data: &mut Vec<D>) {
    if !data.is_empty() {
        output.activate().session(cap).give_container(data);
        data.clear();
    }
}
