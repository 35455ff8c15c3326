//! Completions: what happened when an assignment ran.

use serde::{Deserialize, Serialize};

use super::{ExecutorId, Lease, Task};

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The handler finished successfully.
    Succeeded,
    /// The handler failed, or the task could not be run.
    Failed {
        /// Why, in words a user can act on.
        reason: String,
    },
    /// The attempt ran past the task's timeout and was stopped.
    TimedOut,
    /// The task was cancelled.
    Cancelled,
}

impl Outcome {
    /// The status word used in records and metrics.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed { .. } => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// Whether another attempt may be made after this outcome.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Failed { .. } | Outcome::TimedOut)
    }
}

/// The result of one attempt of a task on an executor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The task, as it was assigned (with its attempt number and ack token).
    pub task: Task,
    /// Where it ran.
    pub executor: ExecutorId,
    /// Global index of the worker whose shard owns the executor.
    pub shard: u32,
    /// The placement's lease, released when this completion reaches the shard.
    pub lease: Lease,
    /// How it ended.
    pub outcome: Outcome,
    /// When the attempt started, microseconds since the Unix epoch.
    pub started_at_us: u64,
    /// When the attempt finished, microseconds since the Unix epoch.
    pub finished_at_us: u64,
    /// Exit code, for command handlers.
    pub exit_code: Option<i32>,
    /// Size of the handler's output in bytes.
    pub output_bytes: u64,
    /// Whether this is the task's last word (no retry follows).
    pub is_final: bool,
    /// What the handler returned, when it returned anything: kept with the
    /// task's record and returned to whoever asks for the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
}

/// A handler's output, bounded by `limits.max_result_bytes`.
///
/// An in-process handler returns a JSON `value`; a command leaves the tails
/// of its `stdout` and `stderr`. When the output was longer than the bound,
/// the kept part is its end and `truncated` says so.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TaskResult {
    /// The value an in-process handler returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// The end of a command's standard output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// The end of a command's standard error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Whether some of the output was cut to stay within the bound.
    #[serde(default)]
    pub truncated: bool,
}

impl TaskResult {
    /// A result holding a handler's JSON value.
    pub fn value(value: serde_json::Value) -> Self {
        TaskResult {
            value: Some(value),
            ..TaskResult::default()
        }
    }

    /// Bytes this result takes: the value's JSON text and both tails.
    pub fn size(&self) -> usize {
        let value = self.value.as_ref().map_or(0, |v| v.to_string().len());
        value
            + self.stdout.as_ref().map_or(0, String::len)
            + self.stderr.as_ref().map_or(0, String::len)
    }

    /// This result cut to at most `limit` bytes: a value too large is
    /// replaced by the start of its JSON text (as a string), the tails keep
    /// their ends (stderr first, as it usually says why), and `truncated`
    /// is set when anything was cut.
    pub fn bounded(mut self, limit: usize) -> Self {
        if self.size() <= limit {
            return self;
        }
        self.truncated = true;
        if let Some(value) = self.value.take() {
            let mut text = value.to_string();
            let mut end = limit.min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
            self.value = Some(serde_json::Value::String(text));
            self.stdout = None;
            self.stderr = None;
            return self;
        }
        let stderr_budget = limit.min(self.stderr.as_ref().map_or(0, String::len));
        if let Some(stderr) = self.stderr.take() {
            self.stderr = Some(TaskResult::tail(stderr.as_bytes(), stderr_budget).0);
        }
        if let Some(stdout) = self.stdout.take() {
            self.stdout = Some(TaskResult::tail(stdout.as_bytes(), limit - stderr_budget).0);
        }
        self
    }

    /// The last `limit` bytes of `bytes` as text (cut at a character
    /// boundary, invalid UTF-8 replaced), and whether anything was cut.
    pub fn tail(bytes: &[u8], limit: usize) -> (String, bool) {
        if bytes.len() <= limit {
            return (String::from_utf8_lossy(bytes).into_owned(), false);
        }
        let mut start = bytes.len() - limit;
        // Skip continuation bytes so the tail starts on a character.
        while start < bytes.len() && (bytes[start] & 0b1100_0000) == 0b1000_0000 {
            start += 1;
        }
        (String::from_utf8_lossy(&bytes[start..]).into_owned(), true)
    }
}

impl Completion {
    /// Run time of the attempt in microseconds.
    pub fn run_time_us(&self) -> u64 {
        self.finished_at_us.saturating_sub(self.started_at_us)
    }

    /// Submit-to-finish latency in microseconds.
    pub fn latency_us(&self) -> u64 {
        self.finished_at_us
            .saturating_sub(self.task.submitted_at_us)
    }
}
