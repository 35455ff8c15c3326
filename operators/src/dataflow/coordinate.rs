//! The `Coordinate` operator: the coordinator and resource manager of one shard.
//!
//! ```text
//!  tasks ───────────────┐
//!  feedback (exchanged  │                     ┌─► work (run / abort) ──► Execute
//!   to the owning shard)├─► CoordinatorState ─┼─► final completions
//!  model updates ───────┤   (ShardAllocator,  ├─► rejections
//!  control (broadcast) ─┘    retries, models, ├─► feedback (forwards, quota releases,
//!                            cancellations)   │   reservations) back into the loop
//!                                             └─► metrics
//! ```
//!
//! Completions release their lease in the round they arrive; a failed or
//! timed-out attempt with attempts left is re-queued after an exponential
//! backoff, otherwise it leaves as a final completion. An attempt whose
//! executor was declared lost counts as failed (its lease was released when
//! the executor was lost). A cancelled task leaves at once if it was queued
//! or waiting to retry; if it runs, its executor is told to stop it and its
//! completion is final whatever it says. Control commands are seen by every
//! shard: joins, heartbeats and leaves keep each shard's registry of the
//! cluster, and the shard that holds a cancelled task acts on it.

use std::collections::{BTreeMap, HashMap};

use rustc_hash::FxHashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::progress::frontier::AntichainRef;

use crate::allocate::{CapacitySummary, Decision, ForwardNote, ShardAllocator};
use crate::model::{
    now_micros, AbortReason, Completion, ControlCommand, Epoch, ExecutorWork, Lease, MetricEvent,
    MetricKind, ModelTarget, ModelUpdate, Name, Outcome, RejectReason, Rejection,
    ReservationRequest, ReservationStatus, Task, TaskId,
};

/// How long a cancellation for a task not (yet) seen is remembered.
const PENDING_CANCEL_US: u64 = 10 * 60 * 1_000_000;

use super::TimedStream;

/// What flows around the coordinator's feedback loop, each addressed to a shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Feedback {
    /// An attempt finished; release its lease in `completion.shard`.
    Completed(Completion),
    /// A task for `shard` to place.
    Forwarded {
        /// The shard to place it.
        shard: u32,
        /// The task.
        task: Task,
        /// What the sending shard noted about it.
        note: ForwardNote,
    },
    /// A task that home shard `shard` admitted against a quota is done.
    QuotaReleased {
        /// The home shard.
        shard: u32,
        /// The task.
        task: TaskId,
    },
    /// Shard `from`'s free capacity, for `shard`.
    Summary {
        /// The receiving shard.
        shard: u32,
        /// The summarized shard.
        from: u32,
        /// Its free capacity.
        summary: CapacitySummary,
    },
    /// A reservation for `shard` to try.
    Reserve {
        /// The shard.
        shard: u32,
        /// The reservation.
        request: ReservationRequest,
        /// Shards tried before.
        hops: u32,
    },
}

impl Feedback {
    /// The shard this feedback is addressed to.
    pub fn shard(&self) -> u32 {
        match self {
            Feedback::Completed(c) => c.shard,
            Feedback::Forwarded { shard, .. }
            | Feedback::QuotaReleased { shard, .. }
            | Feedback::Summary { shard, .. }
            | Feedback::Reserve { shard, .. } => *shard,
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
    /// Attempts to start or stop on this shard's executors.
    pub work: Vec<ExecutorWork>,
    /// Final completions (no retry follows).
    pub finals: Vec<Completion>,
    /// Tasks that can never run.
    pub rejections: Vec<Rejection>,
    /// Tasks, quota releases and reservations for other shards.
    pub forwards: Vec<Feedback>,
    /// Assigned, retried, completed and rejected metric events.
    pub metrics: Vec<MetricEvent>,
    /// What became of reservations (also logged).
    pub reservations: Vec<ReservationStatus>,
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
    /// Leases of running attempts being cancelled.
    cancelling: FxHashMap<u64, ()>,
    /// Cancellations of tasks not seen yet, with when they are forgotten.
    pending_cancels: FxHashMap<TaskId, u64>,
    /// The epoch (ms) in which this shard last published its summary.
    summarized_at_ms: u64,
    /// When utilization and queue depth were last sampled, ms.
    sampled_at_ms: u64,
    /// Told of each model version this shard adopts.
    model_listener: Option<ModelListener>,
}

/// Called with each model version a coordinator adopts (for logging and
/// tests; see [`CoordinatorState::on_model_adopted`]).
pub type ModelListener = Box<dyn FnMut(&ModelUpdate) + Send>;

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
            cancelling: FxHashMap::default(),
            pending_cancels: FxHashMap::default(),
            summarized_at_ms: 0,
            sampled_at_ms: 0,
            model_listener: None,
        }
    }

    /// Calls `listener` with each model version this shard adopts (newer
    /// than the one it holds for the target).
    pub fn on_model_adopted(mut self, listener: ModelListener) -> Self {
        self.model_listener = Some(listener);
        self
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

    /// When something is next due (a retry, a reservation's expiry, an
    /// executor's heartbeat deadline), microseconds since the Unix epoch.
    pub fn next_wakeup_us(&self) -> Option<u64> {
        [
            self.delayed.keys().next().map(|(due, _)| *due),
            self.allocator.next_expiry_us(),
            self.allocator.registry().next_expiry_us(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Offers a new task.
    pub fn on_task(&mut self, task: Task, now_us: u64, out: &mut CoordinatorOutputs) {
        self.offer(task, ForwardNote::default(), now_us, out);
    }

    fn offer(&mut self, task: Task, note: ForwardNote, now_us: u64, out: &mut CoordinatorOutputs) {
        if !self.pending_cancels.is_empty() && self.pending_cancels.remove(&task.id).is_some() {
            if let Some(home) = note.quota_home {
                self.decisions.push(Decision::QuotaRelease {
                    shard: home,
                    task: task.id.clone(),
                });
            }
            self.finish_unrun(task, Outcome::Cancelled, now_us, out);
        } else {
            self.allocator
                .submit_forwarded(task, note, now_us, &mut self.decisions);
        }
        self.drain_decisions(now_us, out);
    }

    /// Handles a feedback record addressed to this shard.
    pub fn on_feedback(&mut self, feedback: Feedback, now_us: u64, out: &mut CoordinatorOutputs) {
        match feedback {
            Feedback::Forwarded { task, note, .. } => self.offer(task, note, now_us, out),
            Feedback::Completed(completion) => self.on_completion(completion, now_us, out),
            Feedback::QuotaReleased { task, .. } => self.allocator.quota_released(&task),
            Feedback::Summary { from, summary, .. } => self.allocator.peer_summary(from, summary),
            Feedback::Reserve { request, hops, .. } => {
                self.allocator
                    .reserve(request, hops, now_us, &mut self.decisions);
                self.drain_decisions(now_us, out);
            }
        }
    }

    /// Applies a control command (every shard sees every command).
    pub fn on_control(
        &mut self,
        command: ControlCommand,
        now_us: u64,
        out: &mut CoordinatorOutputs,
    ) {
        match command {
            ControlCommand::Cancel { task } => self.cancel(task, now_us, out),
            ControlCommand::Join {
                executor,
                heartbeat_ttl_ms,
            } => self
                .allocator
                .join(executor, heartbeat_ttl_ms.map(|ms| ms * 1000), now_us),
            ControlCommand::Heartbeat { executor } => {
                if !self.allocator.heartbeat(&executor, now_us) {
                    tracing::debug!(executor = %executor, "heartbeat from an unknown executor; it must join first");
                }
            }
            ControlCommand::Leave { executor } => self.allocator.leave(&executor),
            ControlCommand::Reserve(request) => {
                let home = crate::allocate::home_shard(&request.id, self.allocator.shard_count());
                if home == self.allocator.shard() {
                    self.allocator
                        .reserve(request, 0, now_us, &mut self.decisions);
                }
            }
            ControlCommand::Unreserve { id } => {
                self.allocator.unreserve(&id, now_us, &mut self.decisions);
            }
        }
        self.drain_decisions(now_us, out);
    }

    fn cancel(&mut self, task: TaskId, now_us: u64, out: &mut CoordinatorOutputs) {
        let queued = self.allocator.extract_queued(|t| t.id == task);
        let delayed: Vec<(u64, u64)> = self
            .delayed
            .iter()
            .filter(|(_, t)| t.id == task)
            .map(|(k, _)| *k)
            .collect();
        let waiting: Vec<Task> = queued
            .into_iter()
            .chain(delayed.iter().filter_map(|k| self.delayed.remove(k)))
            .collect();
        let found = !waiting.is_empty();
        for t in waiting {
            self.finish_unrun(t, Outcome::Cancelled, now_us, out);
        }
        if let Some(lease) = self.allocator.lease_of(&task) {
            self.cancelling.insert(lease.0, ());
            out.work.push(ExecutorWork::Abort {
                lease,
                reason: AbortReason::Cancelled,
            });
        } else if !found {
            // Not here: on another shard, or not arrived yet.
            if self.pending_cancels.len() > 100_000 {
                self.pending_cancels.retain(|_, until| *until > now_us);
            }
            self.pending_cancels
                .insert(task, now_us + PENDING_CANCEL_US);
        }
    }

    /// A final completion for a task that did not run (cancelled while
    /// waiting, or past its deadline).
    fn finish_unrun(
        &mut self,
        task: Task,
        outcome: Outcome,
        now_us: u64,
        out: &mut CoordinatorOutputs,
    ) {
        self.allocator.finished(&task, &mut self.decisions);
        let completion = Completion {
            outcome,
            executor: Name::default(),
            shard: self.allocator.shard(),
            lease: Lease(0),
            started_at_us: now_us,
            finished_at_us: now_us,
            exit_code: None,
            output_bytes: 0,
            is_final: true,
            result: None,
            task,
        };
        if self.emit_metrics {
            out.metrics.push(super::metric_for_completion(&completion));
        }
        out.finals.push(completion);
    }

    /// Records a new model version, keeping only the newest per target.
    pub fn on_model(&mut self, update: ModelUpdate) {
        match self.models.get(&update.target) {
            Some(current) if current.version >= update.version => {}
            _ => {
                if let Some(listener) = self.model_listener.as_mut() {
                    listener(&update);
                }
                if update.target == ModelTarget::RunTime {
                    if let Err(e) = self.allocator.set_run_time_model(&update) {
                        tracing::warn!(version = update.version, error = %e, "run-time model refused; keeping the previous one");
                    }
                }
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
            if !self.allocator.take_lost(completion.lease) {
                tracing::warn!(task = %completion.task.id, lease = completion.lease.0, "completion for a lease not held; ignored");
                return;
            }
            if completion.outcome != Outcome::Succeeded {
                completion.outcome = Outcome::Failed {
                    reason: format!("executor {} was lost", completion.executor),
                };
            }
        }
        let cancelled =
            !self.cancelling.is_empty() && self.cancelling.remove(&completion.lease.0).is_some();
        if self.emit_metrics {
            out.metrics.push(super::metric_for_completion(&completion));
        }
        let task = &completion.task;
        if !cancelled && completion.outcome.is_retryable() && task.attempt < task.max_attempts {
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
            self.allocator
                .finished(&completion.task, &mut self.decisions);
            out.finals.push(completion);
            self.drain_decisions(now_us, out);
        }
    }

    /// Declares silent executors lost, lets reservations lapse, re-queues
    /// retries that are due and places what now fits.
    pub fn tick(&mut self, now_us: u64, out: &mut CoordinatorOutputs) {
        self.allocator.expire(now_us, &mut self.decisions);
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now_us {
                break;
            }
            let task = entry.remove();
            self.allocator.requeue(task);
        }
        self.allocator.schedule(now_us, &mut self.decisions);
        self.drain_decisions(now_us, out);
        self.publish_summary(now_us, out);
        self.sample(now_us, out);
    }

    /// Every second: each executor's utilization and the queue's depth.
    fn sample(&mut self, now_us: u64, out: &mut CoordinatorOutputs) {
        let now_ms = now_us / 1000;
        if !self.emit_metrics || now_ms < self.sampled_at_ms + 1000 {
            return;
        }
        self.sampled_at_ms = now_ms;
        let sample = |kind, executor: Name, value| MetricEvent {
            kind,
            task_kind: Name::default(),
            tenant: Name::default(),
            executor,
            status: Name::default(),
            qos: Default::default(),
            value,
            at_ms: now_ms,
        };
        for e in self.allocator.executors().iter().filter(|e| e.accepting) {
            out.metrics.push(sample(
                MetricKind::Utilization,
                e.spec.id.clone(),
                e.utilization(),
            ));
        }
        let shard = Name::from(format!("shard-{}", self.allocator.shard()));
        out.metrics.push(sample(
            MetricKind::QueueDepth,
            shard,
            self.allocator.queued() as f64,
        ));
    }

    /// Sends this shard's capacity summary to every other shard, at most
    /// once per epoch and only when its free capacity changed.
    fn publish_summary(&mut self, now_us: u64, out: &mut CoordinatorOutputs) {
        let shards = self.allocator.shard_count() as u32;
        let now_ms = now_us / 1000;
        if shards < 2 || now_ms <= self.summarized_at_ms {
            return;
        }
        let Some(summary) = self.allocator.summary_if_changed() else {
            return;
        };
        self.summarized_at_ms = now_ms;
        let from = self.allocator.shard();
        for shard in (0..shards).filter(|&s| s != from) {
            out.forwards.push(Feedback::Summary {
                shard,
                from,
                summary: summary.clone(),
            });
        }
    }

    fn drain_decisions(&mut self, now_us: u64, out: &mut CoordinatorOutputs) {
        let shard = self.allocator.shard();
        for decision in self.decisions.drain(..) {
            match decision {
                Decision::Abort { lease, reason } => {
                    out.work.push(ExecutorWork::Abort { lease, reason })
                }
                Decision::QuotaRelease { shard, task } => {
                    out.forwards.push(Feedback::QuotaReleased { shard, task })
                }
                Decision::ForwardReservation {
                    shard,
                    request,
                    hops,
                } => out.forwards.push(Feedback::Reserve {
                    shard,
                    request,
                    hops,
                }),
                Decision::ReservationEvent(status) => {
                    tracing::info!(reservation = %status.id, shard, state = ?status.state, "reservation: {}", status.detail);
                    out.reservations.push(status);
                }
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
                    out.work.push(ExecutorWork::Run(assignment));
                }
                Decision::Forward { task, shard, note } => {
                    out.forwards.push(Feedback::Forwarded { shard, task, note })
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
                        result: None,
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
    /// Attempts to start or stop on executors of this worker's shard.
    pub work: TimedStream<'scope, ExecutorWork>,
    /// Final completions.
    pub finals: TimedStream<'scope, Completion>,
    /// Tasks that can never run.
    pub rejections: TimedStream<'scope, Rejection>,
    /// Tasks for other shards; connect into the feedback loop.
    pub forwards: TimedStream<'scope, Feedback>,
    /// Metric events.
    pub metrics: TimedStream<'scope, MetricEvent>,
    /// What became of reservations handled by this shard.
    pub reservations: TimedStream<'scope, ReservationStatus>,
}

/// Places tasks on this worker's shard of executors.
pub trait Coordinate<'scope> {
    /// Runs `state` over this stream of tasks, the `feedback` loop (exchanged
    /// here to the shard each record addresses), and broadcast `models` and
    /// `control` commands.
    fn coordinate(
        self,
        feedback: TimedStream<'scope, Feedback>,
        models: TimedStream<'scope, ModelUpdate>,
        control: TimedStream<'scope, ControlCommand>,
        state: CoordinatorState,
    ) -> CoordinatorStreams<'scope>;
}

/// Number of the operator's outputs (capabilities held per input batch).
const OUTPUTS: usize = 6;

type Out<D> = OutputBuilder<Epoch, CapacityContainerBuilder<Vec<D>>>;

impl<'scope> Coordinate<'scope> for TimedStream<'scope, Task> {
    fn coordinate(
        self,
        feedback: TimedStream<'scope, Feedback>,
        models: TimedStream<'scope, ModelUpdate>,
        control: TimedStream<'scope, ControlCommand>,
        mut state: CoordinatorState,
    ) -> CoordinatorStreams<'scope> {
        let scope = self.scope();
        let mut builder = OperatorBuilder::new("Coordinate".to_owned(), scope);
        let activator = scope.activator_for(builder.operator_info().address);
        let mut tasks_in = builder.new_input(self, Pipeline);
        let mut feedback_in =
            builder.new_input(feedback, Exchange::new(|f: &Feedback| u64::from(f.shard())));
        let mut models_in = builder.new_input(models, Pipeline);
        let mut control_in = builder.new_input(control, Pipeline);
        let (a, work) = builder.new_output();
        let (f, finals) = builder.new_output();
        let (r, rejections) = builder.new_output();
        let (w, forwards) = builder.new_output();
        let (m, metrics) = builder.new_output();
        let (v, reservations) = builder.new_output();
        let (mut a, mut f, mut r, mut w, mut m, mut v): (
            Out<_>,
            Out<_>,
            Out<_>,
            Out<_>,
            Out<_>,
            Out<_>,
        ) = (
            OutputBuilder::from(a),
            OutputBuilder::from(f),
            OutputBuilder::from(r),
            OutputBuilder::from(w),
            OutputBuilder::from(m),
            OutputBuilder::from(v),
        );

        builder.build(move |capabilities| {
            let mut caps: Option<Vec<Capability<Epoch>>> = Some(capabilities);
            let mut out = CoordinatorOutputs::default();
            move |frontiers| {
                let now_us = now_micros();
                // The latest epoch of any input this round: outputs are
                // stamped no earlier, even when the frontier (which waits on
                // every worker) still lags behind it.
                let mut latest: Epoch = 0;
                // Control first, so that an executor joining in the same
                // epoch as the tasks meant for it is known when they arrive.
                control_in.for_each(|cap, data| {
                    latest = latest.max(cap.least().copied().unwrap_or(0));
                    if caps.is_none() {
                        caps = (0..OUTPUTS).map(|port| cap.retain_least(port)).collect();
                    }
                    for command in data.drain(..) {
                        state.on_control(command, now_us, &mut out);
                    }
                });
                tasks_in.for_each(|cap, data| {
                    latest = latest.max(cap.least().copied().unwrap_or(0));
                    for task in data.drain(..) {
                        state.on_task(task, now_us, &mut out);
                    }
                });
                feedback_in.for_each(|cap, data| {
                    latest = latest.max(cap.least().copied().unwrap_or(0));
                    // Work forwarded or completed after this shard went idle
                    // arrives with the capability to answer it.
                    if caps.is_none() {
                        caps = (0..OUTPUTS).map(|port| cap.retain_least(port)).collect();
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

                // Hold capabilities while the shard has work or its task or
                // control input is open, following the earlier of the two.
                if let Some(held) = caps.as_mut() {
                    let time = *held[0].time();
                    let inputs_frontier = [0, 3]
                        .into_iter()
                        .filter_map(|port| {
                            let frontier: AntichainRef<Epoch> = frontiers[port].frontier();
                            frontier.first().copied()
                        })
                        .min();
                    // Catch up with the inputs before emitting, so that what
                    // this round produced is stamped with the current epoch
                    // rather than the one the shard last held (metric
                    // windows and results are timed by these stamps).
                    if let Some(t) = inputs_frontier.filter(|t| *t > time) {
                        held.iter_mut().for_each(|c| c.downgrade(&t));
                    }
                    let stamp = latest.max(*held[0].time());
                    emit(&mut a, &held[0], stamp, &mut out.work);
                    emit(&mut f, &held[1], stamp, &mut out.finals);
                    emit(&mut r, &held[2], stamp, &mut out.rejections);
                    emit(&mut w, &held[3], stamp, &mut out.forwards);
                    emit(&mut m, &held[4], stamp, &mut out.metrics);
                    emit(&mut v, &held[5], stamp, &mut out.reservations);
                    match inputs_frontier {
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
            reservations,
            work,
            finals,
            rejections,
            forwards,
            metrics,
        }
    }
}

/// Sends `data` at `stamp` (no earlier than `cap`'s time).
fn emit<D: Clone + 'static>(
    output: &mut Out<D>,
    cap: &Capability<Epoch>,
    stamp: Epoch,
    data: &mut Vec<D>,
) {
    if !data.is_empty() {
        let at = cap.delayed(&stamp);
        output.activate().session(&at).give_container(data);
        data.clear();
    }
}
