//! Stored records and the transitions both stores apply to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use tidewater_operators::model::{Completion, ModelUpdate, Outcome, Task};

/// A task's state as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Accepted, no final outcome yet.
    Queued,
    /// Finished successfully.
    Succeeded,
    /// Failed (after its last attempt).
    Failed,
    /// Timed out (on its last attempt).
    TimedOut,
    /// Cancelled.
    Cancelled,
    /// Accepted by a source but rejected by the pipeline (for example
    /// infeasible); the rejection is in the dead letters.
    Rejected,
}

impl TaskState {
    /// Whether this is a final state.
    pub fn is_final(self) -> bool {
        self != TaskState::Queued
    }
}

/// What the store knows about one task; the HTTP API's answer to
/// `GET /v1/tasks/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Task id.
    pub id: String,
    /// Current state.
    pub state: TaskState,
    /// Task kind.
    pub kind: String,
    /// Tenant.
    pub tenant: String,
    /// Attempts made (the attempt number of the final outcome).
    pub attempts: u16,
    /// Executor of the final attempt.
    pub executor: Option<String>,
    /// When accepted, microseconds since the Unix epoch.
    pub submitted_at_us: u64,
    /// When the final attempt started.
    pub started_at_us: Option<u64>,
    /// When the final attempt finished.
    pub finished_at_us: Option<u64>,
    /// Exit code of a command.
    pub exit_code: Option<i32>,
    /// Output size in bytes.
    pub output_bytes: u64,
    /// Why it failed, if it did.
    pub reason: Option<String>,
}

/// A record with the task itself, kept until the task finishes so that it
/// can be resumed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredTask {
    /// The record.
    pub record: TaskRecord,
    /// The task, while it has no final outcome.
    pub task: Option<Task>,
}

impl StoredTask {
    /// The entry for a newly accepted task.
    pub fn accepted(task: &Task) -> StoredTask {
        StoredTask {
            record: TaskRecord {
                id: task.id.to_string(),
                state: TaskState::Queued,
                kind: task.kind.to_string(),
                tenant: task.tenant.to_string(),
                attempts: 0,
                executor: None,
                submitted_at_us: task.submitted_at_us,
                started_at_us: None,
                finished_at_us: None,
                exit_code: None,
                output_bytes: 0,
                reason: None,
            },
            task: Some(task.clone()),
        }
    }

    /// Applies a final outcome. Returns false (and changes nothing) if the
    /// task already has one.
    pub fn finish(&mut self, c: &Completion) -> bool {
        if self.record.state.is_final() {
            return false;
        }
        let (state, reason) = match &c.outcome {
            Outcome::Succeeded => (TaskState::Succeeded, None),
            Outcome::Failed { reason } => (TaskState::Failed, Some(reason.clone())),
            Outcome::TimedOut => (TaskState::TimedOut, Some("timed out".to_string())),
            Outcome::Cancelled => (TaskState::Cancelled, None),
        };
        let r = &mut self.record;
        r.state = state;
        r.reason = reason;
        r.attempts = c.task.attempt;
        r.executor = (!c.executor.is_empty()).then(|| c.executor.to_string());
        r.started_at_us = Some(c.started_at_us);
        r.finished_at_us = Some(c.finished_at_us);
        r.exit_code = c.exit_code;
        r.output_bytes = c.output_bytes;
        self.task = None;
        true
    }

    /// Marks an accepted task as rejected. Returns false if it already has a
    /// final state.
    pub fn reject(&mut self, reason: String) -> bool {
        if self.record.state.is_final() {
            return false;
        }
        self.record.state = TaskState::Rejected;
        self.record.reason = Some(reason);
        self.task = None;
        true
    }

    /// The entry for a completion of a task never recorded as accepted.
    pub fn from_completion(c: &Completion) -> StoredTask {
        let mut entry = StoredTask::accepted(&c.task);
        entry.finish(c);
        entry
    }
}

/// Tasks by state, and rejections.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateCounts {
    /// Accepted, not finished.
    pub queued: u64,
    /// Succeeded.
    pub succeeded: u64,
    /// Failed.
    pub failed: u64,
    /// Timed out.
    pub timed_out: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Rejections dead-lettered (whether or not their task was recorded).
    pub rejected: u64,
}

impl StateCounts {
    /// Counts one record.
    pub fn add(&mut self, state: TaskState) {
        match state {
            TaskState::Queued => self.queued += 1,
            TaskState::Succeeded => self.succeeded += 1,
            TaskState::Failed => self.failed += 1,
            TaskState::TimedOut => self.timed_out += 1,
            TaskState::Cancelled => self.cancelled += 1,
            // Counted with the dead letters.
            TaskState::Rejected => {}
        }
    }
}

/// A model version with its training metrics: the model registry's entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// The model.
    pub update: ModelUpdate,
    /// Training metrics (loss, samples, error...).
    pub metrics: BTreeMap<String, f64>,
    /// When it was stored, milliseconds since the Unix epoch.
    pub created_at_ms: u64,
}
