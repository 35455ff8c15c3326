//! The coordinator's state machine for one shard: the [`ShardAllocator`],
//! retries, models, cancellations and reservation timers, driven by the
//! `Coordinate` operator ([`super::Coordinate`]) with each input and the
//! time, and answering into [`CoordinatorOutputs`].
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
use std::time::Duration;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::allocate::{Decision, ForwardNote, ShardAllocator};
use crate::model::{
    AbortReason, Completion, ControlCommand, ExecutorWork, Lease, MetricEvent, MetricKind,
    ModelTarget, ModelUpdate, Name, Outcome, RejectReason, Rejection, ReservationStatus, Task,
    TaskId,
};

use super::Feedback;

/// How long a cancellation for a task not (yet) seen is remembered.
const PENDING_CANCEL_US: u64 = 10 * 60 * 1_000_000;

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
    /// Attempts that ended and will be retried, without their results
    /// (empty unless [`CoordinatorState::with_attempt_records`]): with
    /// `finals`, every attempt of every task, once each.
    pub retried: Vec<Completion>,
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
    /// Whether retried attempts are reported in `retried`.
    emit_attempts: bool,
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
            emit_attempts: false,
            decisions: Vec::new(),
            cancelling: FxHashMap::default(),
            pending_cancels: FxHashMap::default(),
            summarized_at_ms: 0,
            sampled_at_ms: 0,
            model_listener: None,
        }
    }

    /// Also reports every attempt that will be retried
    /// ([`CoordinatorOutputs::retried`]), for sinks that record each
    /// attempt (the lineage graph's `EXECUTED` relationships).
    pub fn with_attempt_records(mut self) -> Self {
        self.emit_attempts = true;
        self
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

    /// Attempts waiting out their retry backoff.
    pub fn retries_waiting(&self) -> usize {
        self.delayed.len()
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
            if self.emit_attempts {
                out.retried.push(Completion {
                    task: completion.task.clone(),
                    executor: completion.executor.clone(),
                    outcome: completion.outcome.clone(),
                    result: None,
                    is_final: false,
                    ..completion
                });
            }
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
                        tenant: Some(task.tenant.clone()),
                        source_name: Name::const_new("coordinator"),
                        excerpt: String::new(),
                        ack: task.ack,
                        at_us: now_us,
                        trace: task.trace,
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
