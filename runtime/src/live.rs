//! Live task states: what runs now and what waits for a retry.
//!
//! Stores record a task when it is accepted and when it ends; in between,
//! this table says what is happening. Each worker's execution backend is
//! wrapped in a [`TrackingBackend`], which marks a task `running` (with its
//! executor, attempt and start time) when an attempt starts and `retrying`
//! (with the next attempt's time, from the retry policy) when a retryable
//! attempt fails; an attempt after which no retry follows drops its entry,
//! as do the result sinks once a final outcome is recorded, so the store
//! answers from then on. A `retrying` entry whose next attempt time has
//! passed (the task waits for capacity, or its next attempt runs in
//! another process) reads as queued again. The HTTP API overlays these
//! entries on the stored records.
//!
//! ```text
//!  Execute ──start──► TrackingBackend ──► LiveTasks ◄── RecordResults / DeadLetter (final: remove)
//!                         │  ▲                 │
//!                         ▼  │ completions     └──► GET /v1/tasks, /v1/executors
//!                     RoutingBackend
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use timely::scheduling::SyncActivator;

use tidewater_connectors::store::{TaskRecord, TaskState};
use tidewater_operators::dataflow::{ExecutionBackend, RetryPolicy};
use tidewater_operators::model::{
    now_micros, AbortReason, Assignment, Completion, Lease, ResourceRequest, Task,
};

/// How long past its next attempt time a `retrying` entry still counts.
const RETRY_GRACE_US: u64 = 1_000_000;

/// Which live phase a task is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LivePhase {
    /// An attempt runs now.
    Running,
    /// The last attempt failed; the next one waits for its backoff.
    Retrying,
}

impl LivePhase {
    /// The task state this phase shows as.
    pub fn state(self) -> TaskState {
        match self {
            LivePhase::Running => TaskState::Running,
            LivePhase::Retrying => TaskState::Retrying,
        }
    }
}

/// One task between acceptance and its final outcome, as this process sees it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LiveTask {
    /// Task id.
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Kind.
    pub kind: String,
    /// Running or retrying.
    pub phase: LivePhase,
    /// The executor of the current (or last) attempt.
    pub executor: String,
    /// The attempt number.
    pub attempt: u16,
    /// When that attempt started, microseconds since the Unix epoch.
    pub started_at_us: u64,
    /// When the next attempt may start, while retrying.
    pub next_attempt_at_us: Option<u64>,
    /// Why the last attempt failed, while retrying.
    pub last_reason: Option<String>,
    /// When the task was accepted.
    pub submitted_at_us: u64,
    /// What it holds on its executor.
    pub resources: ResourceRequest,
}

impl LiveTask {
    /// Whether this entry still says something true at `now_us`.
    fn is_current(&self, now_us: u64) -> bool {
        match self.next_attempt_at_us {
            Some(next) if self.phase == LivePhase::Retrying => now_us <= next + RETRY_GRACE_US,
            _ => true,
        }
    }

    /// `record` (a stored, not yet final record) as it stands now.
    pub fn overlay(&self, record: &mut TaskRecord) {
        if record.state.is_final() {
            return;
        }
        record.state = self.phase.state();
        record.executor = Some(self.executor.clone());
        record.attempts = self.attempt;
        record.started_at_us = Some(self.started_at_us);
        record.next_attempt_at_us = self.next_attempt_at_us;
        if self.phase == LivePhase::Retrying {
            record.reason = self.last_reason.clone();
        }
    }

    /// A record for a task this process runs but whose record lives in
    /// another process's store.
    pub fn to_record(&self) -> TaskRecord {
        let mut record = TaskRecord {
            id: self.id.clone(),
            state: TaskState::Queued,
            kind: self.kind.clone(),
            tenant: self.tenant.clone(),
            attempts: 0,
            executor: None,
            submitted_at_us: self.submitted_at_us,
            started_at_us: None,
            finished_at_us: None,
            exit_code: None,
            output_bytes: 0,
            reason: None,
            next_attempt_at_us: None,
            result: None,
        };
        self.overlay(&mut record);
        record
    }
}

/// The live table of one process, shared by its workers and its API.
#[derive(Clone, Default)]
pub struct LiveTasks {
    inner: Arc<Mutex<HashMap<String, LiveTask>>>,
}

impl LiveTasks {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, LiveTask>> {
        // The table holds plain data; a panic elsewhere cannot leave it torn.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The live entry of task `id`.
    pub fn get(&self, id: &str) -> Option<LiveTask> {
        let now = now_micros();
        self.lock().get(id).filter(|t| t.is_current(now)).cloned()
    }

    /// Every task running or waiting to retry here, by acceptance time.
    /// Entries that no longer say anything true are dropped on the way.
    pub fn all(&self) -> Vec<LiveTask> {
        let now = now_micros();
        let mut table = self.lock();
        table.retain(|_, t| t.is_current(now));
        let mut tasks: Vec<LiveTask> = table.values().cloned().collect();
        drop(table);
        tasks.sort_by(|a, b| (a.submitted_at_us, &a.id).cmp(&(b.submitted_at_us, &b.id)));
        tasks
    }

    /// How many tasks run now, and how many wait for a retry.
    pub fn counts(&self) -> (u64, u64) {
        self.all()
            .iter()
            .fold((0, 0), |(run, retry), t| match t.phase {
                LivePhase::Running => (run + 1, retry),
                LivePhase::Retrying => (run, retry + 1),
            })
    }

    /// Marks an attempt as started.
    pub fn started(&self, assignment: &Assignment, now_us: u64) {
        let task: &Task = &assignment.task;
        self.lock().insert(
            task.id.to_string(),
            LiveTask {
                id: task.id.to_string(),
                tenant: task.tenant.to_string(),
                kind: task.kind.to_string(),
                phase: LivePhase::Running,
                executor: assignment.executor.to_string(),
                attempt: task.attempt,
                started_at_us: now_us,
                next_attempt_at_us: None,
                last_reason: None,
                submitted_at_us: task.submitted_at_us,
                resources: task.resources.clone(),
            },
        );
    }

    /// Records how an attempt ended: a retryable failure with attempts left
    /// waits for its retry; after any other the entry goes (the final
    /// outcome is recorded in the store of the process that took the task,
    /// which may be another one).
    pub fn attempt_ended(&self, completion: &Completion, retry: &RetryPolicy) {
        let task = &completion.task;
        let mut table = self.lock();
        if !(completion.outcome.is_retryable() && task.attempt < task.max_attempts) {
            table.remove(task.id.as_str());
            return;
        }
        if let Some(entry) = table.get_mut(task.id.as_str()) {
            let backoff = retry.backoff(task.attempt + 1).as_micros() as u64;
            entry.phase = LivePhase::Retrying;
            entry.started_at_us = completion.started_at_us;
            entry.next_attempt_at_us = Some(completion.finished_at_us + backoff);
            entry.last_reason = match &completion.outcome {
                tidewater_operators::model::Outcome::Failed { reason } => Some(reason.clone()),
                other => Some(other.status().to_string()),
            };
        }
    }

    /// Drops the entries of tasks whose final outcome is recorded.
    pub fn finished<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut table = self.lock();
        for id in ids {
            table.remove(id);
        }
    }
}

/// An execution backend that keeps [`LiveTasks`] up to date around another.
pub struct TrackingBackend<B> {
    inner: B,
    live: LiveTasks,
    retry: RetryPolicy,
}

impl<B: ExecutionBackend> TrackingBackend<B> {
    /// Wraps `inner`, reporting into `live`; `retry` gives retry times.
    pub fn new(inner: B, live: LiveTasks, retry: RetryPolicy) -> Self {
        TrackingBackend { inner, live, retry }
    }

    fn ended(&self, done: &[Completion]) {
        for completion in done {
            self.live.attempt_ended(completion, &self.retry);
        }
    }
}

impl<B: ExecutionBackend> ExecutionBackend for TrackingBackend<B> {
    fn set_activator(&mut self, activator: SyncActivator) {
        self.inner.set_activator(activator);
    }

    fn start(&mut self, assignment: Assignment, done: &mut Vec<Completion>) {
        self.live
            .started(&assignment, tidewater_operators::model::now_micros());
        let before = done.len();
        self.inner.start(assignment, done);
        self.ended(&done[before..]);
    }

    fn abort(&mut self, lease: Lease, reason: AbortReason) {
        self.inner.abort(lease, reason);
    }

    fn poll(&mut self, done: &mut Vec<Completion>) {
        let before = done.len();
        self.inner.poll(done);
        self.ended(&done[before..]);
    }

    fn in_flight(&self) -> usize {
        self.inner.in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_operators::model::{Name, Outcome};

    fn assignment(attempt: u16, max_attempts: u16) -> Assignment {
        let mut task = Task::new("t1", "sleep", ResourceRequest::cpu(100, 16));
        task.attempt = attempt;
        task.max_attempts = max_attempts;
        task.submitted_at_us = 5;
        Assignment {
            task,
            executor: Name::from("e0"),
            shard: 0,
            lease: Lease(1),
            gpu_devices: Vec::new(),
            assigned_at_us: 10,
        }
    }

    fn ended(a: &Assignment, outcome: Outcome) -> Completion {
        Completion {
            task: a.task.clone(),
            executor: a.executor.clone(),
            shard: 0,
            lease: a.lease,
            outcome,
            started_at_us: 20,
            finished_at_us: 1_000,
            exit_code: None,
            output_bytes: 0,
            is_final: false,
            result: None,
        }
    }

    #[test]
    fn phases_follow_attempts() {
        let live = LiveTasks::new();
        let retry = RetryPolicy::default();
        let first = assignment(1, 2);
        live.started(&first, 20);
        let entry = live.get("t1").expect("running");
        assert_eq!(
            (entry.phase, entry.attempt, entry.executor.as_str()),
            (LivePhase::Running, 1, "e0")
        );

        let mut failed = ended(
            &first,
            Outcome::Failed {
                reason: "boom".into(),
            },
        );
        failed.finished_at_us = now_micros();
        live.attempt_ended(&failed, &retry);
        let entry = live.get("t1").expect("retrying");
        assert_eq!(entry.phase, LivePhase::Retrying);
        assert_eq!(
            entry.next_attempt_at_us,
            Some(failed.finished_at_us + 100_000)
        );
        assert_eq!(entry.last_reason.as_deref(), Some("boom"));
        assert_eq!(live.counts(), (0, 1));

        // The last attempt ending drops the entry: the store answers now.
        let second = assignment(2, 2);
        live.started(&second, 200_000);
        assert_eq!(live.get("t1").map(|e| e.phase), Some(LivePhase::Running));
        live.attempt_ended(
            &ended(
                &second,
                Outcome::Failed {
                    reason: "again".into(),
                },
            ),
            &retry,
        );
        assert!(live.get("t1").is_none());
        // The process that took the task drops it when its outcome is recorded.
        live.started(&second, 200_000);
        live.finished(["t1"]);
        assert!(live.get("t1").is_none());
    }

    #[test]
    fn a_retry_long_due_reads_as_queued() {
        let live = LiveTasks::new();
        let first = assignment(1, 3);
        live.started(&first, 20);
        // Its attempt ended long ago (timestamps near the epoch).
        live.attempt_ended(&ended(&first, Outcome::TimedOut), &RetryPolicy::default());
        assert!(live.get("t1").is_none());
        assert!(live.all().is_empty());
    }

    #[test]
    fn overlay_leaves_final_records_alone() {
        let live = LiveTasks::new();
        live.started(&assignment(1, 1), 20);
        let entry = live.get("t1").expect("running");
        let mut record = entry.to_record();
        assert_eq!(
            (record.state, record.executor.as_deref()),
            (TaskState::Running, Some("e0"))
        );
        record.state = TaskState::Succeeded;
        record.executor = None;
        entry.overlay(&mut record);
        assert_eq!(
            (record.state, record.executor),
            (TaskState::Succeeded, None)
        );
    }
}
