//! Stored records and the transitions both stores apply to them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use tidewater_operators::model::{Completion, ModelUpdate, Outcome, Rejection, Task, TaskResult};

/// A task's state.
///
/// Stores record `queued` and the final states; `running` and `retrying`
/// are live states that the runtime overlays while an attempt runs or waits
/// for its retry (they are never written to a store).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    /// Accepted, no final outcome yet.
    Queued,
    /// An attempt runs now.
    Running,
    /// An attempt failed; the next one waits for its backoff.
    Retrying,
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
    /// Every state, in lifecycle order.
    pub const ALL: [TaskState; 8] = [
        TaskState::Queued,
        TaskState::Running,
        TaskState::Retrying,
        TaskState::Succeeded,
        TaskState::Failed,
        TaskState::TimedOut,
        TaskState::Cancelled,
        TaskState::Rejected,
    ];

    /// Whether this is a final state.
    pub fn is_final(self) -> bool {
        !matches!(
            self,
            TaskState::Queued | TaskState::Running | TaskState::Retrying
        )
    }

    /// The state's word, as in the API (`timed_out`...).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Queued => "queued",
            TaskState::Running => "running",
            TaskState::Retrying => "retrying",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::TimedOut => "timed_out",
            TaskState::Cancelled => "cancelled",
            TaskState::Rejected => "rejected",
        }
    }
}

impl std::str::FromStr for TaskState {
    type Err = String;

    fn from_str(word: &str) -> Result<Self, Self::Err> {
        TaskState::ALL
            .into_iter()
            .find(|s| s.as_str() == word)
            .ok_or_else(|| {
                let words: Vec<&str> = TaskState::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state {word:?} (one of {})", words.join(", "))
            })
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
    /// When the next attempt may start, while the task is `retrying`.
    #[serde(default)]
    pub next_attempt_at_us: Option<u64>,
    /// What the final attempt's handler returned.
    #[serde(default)]
    pub result: Option<TaskResult>,
}

/// A record with the task itself, kept until the task finishes so that it
/// can be resumed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredTask {
    /// The record.
    pub record: TaskRecord,
    /// The task, while it has no final outcome.
    pub task: Option<Task>,
    /// [`fingerprint`] of the submitted task, to tell a repeated submission
    /// from a different one reusing its id.
    #[serde(default)]
    pub fingerprint: u64,
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
                next_attempt_at_us: None,
                result: None,
            },
            task: Some(task.clone()),
            fingerprint: fingerprint(task),
        }
    }

    /// The entry for a rejection naming a task that was never accepted
    /// (for example an HTTP submission refused at once), so that the id
    /// can be looked up like any other.
    pub fn rejected(rejection: &Rejection, id: &str) -> StoredTask {
        StoredTask {
            record: TaskRecord {
                id: id.to_string(),
                state: TaskState::Rejected,
                kind: String::new(),
                tenant: rejection
                    .tenant
                    .as_ref()
                    .map_or_else(String::new, |t| t.to_string()),
                attempts: 0,
                executor: None,
                submitted_at_us: rejection.at_us,
                started_at_us: None,
                finished_at_us: Some(rejection.at_us),
                exit_code: None,
                output_bytes: 0,
                reason: Some(rejection.reason.to_string()),
                next_attempt_at_us: None,
                result: None,
            },
            task: None,
            fingerprint: 0,
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
        r.result = c.result.clone();
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

    /// What admitting `task` finds over this entry (`None`: no entry): an
    /// entry holding only a rejection is replaced, any other is kept.
    pub fn admission(existing: Option<&StoredTask>, task: &Task) -> super::Admission {
        match existing {
            Some(entry) if entry.record.state != TaskState::Rejected => {
                super::Admission::Existing {
                    record: Box::new(entry.record.clone()),
                    same_body: entry.fingerprint == fingerprint(task),
                }
            }
            _ => super::Admission::New,
        }
    }

    /// The entry for a completion of a task never recorded as accepted.
    pub fn from_completion(c: &Completion) -> StoredTask {
        let mut entry = StoredTask::accepted(&c.task);
        entry.finish(c);
        entry
    }
}

/// A stable 64-bit hash (FNV-1a) of what a submission asks for: every
/// field of the task except those the pipeline assigns (attempt, ack token,
/// acceptance time). Two submissions with the same fingerprint are the same
/// request. Stable across processes and releases, since it is stored.
pub fn fingerprint(task: &Task) -> u64 {
    #[derive(Serialize)]
    struct Submitted<'a> {
        kind: &'a str,
        payload: Option<&'a str>,
        resources: &'a tidewater_operators::model::ResourceRequest,
        qos: &'a tidewater_operators::model::QosClass,
        priority: i32,
        deadline_ms: Option<u64>,
        tenant: &'a str,
        max_attempts: u16,
        timeout_ms: u64,
        requested_runtime_s: Option<u32>,
    }
    let submitted = Submitted {
        kind: &task.kind,
        payload: task.payload.as_deref(),
        resources: &task.resources,
        qos: &task.qos,
        priority: task.priority,
        deadline_ms: task.deadline_ms,
        tenant: &task.tenant,
        max_attempts: task.max_attempts,
        timeout_ms: task.timeout_ms,
        requested_runtime_s: task.requested_runtime_s,
    };
    // Serialising plain data with derived impls cannot fail.
    let bytes = serde_json::to_vec(&submitted).unwrap_or_default();
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(PRIME)
    })
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
        if let Some(counter) = self.counter(state) {
            *counter += 1;
        }
    }

    /// Uncounts one record (it moved to another state).
    pub fn remove(&mut self, state: TaskState) {
        if let Some(counter) = self.counter(state) {
            *counter = counter.saturating_sub(1);
        }
    }

    /// Applies a transition from `before` (`None`: a new record) to `after`.
    pub fn moved(&mut self, before: Option<TaskState>, after: TaskState) {
        if let Some(before) = before {
            self.remove(before);
        }
        self.add(after);
    }

    fn counter(&mut self, state: TaskState) -> Option<&mut u64> {
        match state {
            TaskState::Queued | TaskState::Running | TaskState::Retrying => Some(&mut self.queued),
            TaskState::Succeeded => Some(&mut self.succeeded),
            TaskState::Failed => Some(&mut self.failed),
            TaskState::TimedOut => Some(&mut self.timed_out),
            TaskState::Cancelled => Some(&mut self.cancelled),
            // Counted with the dead letters.
            TaskState::Rejected => None,
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
