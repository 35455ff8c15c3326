//! Task handlers: built-in `noop`, `sleep` and `command`, and user closures.
//!
//! A handler is either *inline* (cheap, non-blocking: it runs on the timely
//! worker thread and completes in the same round) or *async* (it runs on the
//! tokio runtime beside the workers and completes later). The backend
//! applies each task's timeout to async handlers.
//!
//! What a handler returns beside its exit code is the task's result
//! ([`TaskResult`]): an in-process handler's JSON value, or the tails of a
//! command's stdout and stderr. The command handler reads its pipes keeping
//! only the last `limits.max_result_bytes`, so a chatty program cannot
//! exhaust memory; the backend bounds every other handler's result the same
//! way.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt;

use tidewater_operators::model::{now_micros, RejectReason, Task, TaskResult};

use crate::config::HandlersConfig;

/// What a successful handler reports.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HandlerOutput {
    /// Exit code, for process handlers.
    pub exit_code: Option<i32>,
    /// Size of the output produced, in bytes.
    pub output_bytes: u64,
    /// What it returned, kept as the task's result.
    pub result: Option<TaskResult>,
}

impl HandlerOutput {
    /// A successful output carrying `value` as the task's result.
    pub fn value(value: serde_json::Value) -> Self {
        let output_bytes = value.to_string().len() as u64;
        HandlerOutput {
            exit_code: None,
            output_bytes,
            result: Some(TaskResult::value(value)),
        }
    }
}

/// A handler failure: the reason, and the exit code when a process ran.
#[derive(Clone, Debug, PartialEq)]
pub struct HandlerFailure {
    /// Why, in words a user can act on.
    pub reason: String,
    /// Exit code, when a process ran.
    pub exit_code: Option<i32>,
    /// Output produced before failing.
    pub output_bytes: u64,
    /// What it left behind (a command's output tails), kept with the record.
    pub result: Option<Box<TaskResult>>,
}

impl From<String> for HandlerFailure {
    fn from(reason: String) -> Self {
        HandlerFailure {
            reason,
            exit_code: None,
            output_bytes: 0,
            result: None,
        }
    }
}

/// The result of running a handler.
pub type HandlerResult = Result<HandlerOutput, HandlerFailure>;

/// A boxed future returned by async handlers.
pub type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;

/// A registered handler.
#[derive(Clone)]
pub enum Handler {
    /// Runs on the worker thread; must not block.
    Inline(Arc<dyn Fn(&Task) -> HandlerResult + Send + Sync>),
    /// Runs on the tokio runtime.
    Async(Arc<dyn Fn(Task) -> HandlerFuture + Send + Sync>),
}

/// Handlers by task kind.
#[derive(Clone, Default)]
pub struct HandlerRegistry {
    handlers: HashMap<String, Handler>,
    /// The built-ins' settings, to check their payloads at submission.
    builtins: Option<HandlersConfig>,
    /// Built-in kinds a user handler replaced (their checks no longer apply).
    replaced: HashSet<String>,
}

impl HandlerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with `noop`, `sleep` and `command`; a command's output
    /// tails are kept up to `max_result_bytes` together.
    pub fn with_builtins(config: &HandlersConfig, max_result_bytes: usize) -> Self {
        let mut registry = Self::new();
        registry.register_inline("noop", |_task| Ok(HandlerOutput::default()));
        let max_sleep_ms = config.max_sleep_ms;
        registry.register_async("sleep", move |task| Box::pin(sleep(task, max_sleep_ms)));
        let allowlist = Arc::new(config.command_allowlist.clone());
        registry.register_async("command", move |task| {
            Box::pin(command(task, Arc::clone(&allowlist), max_result_bytes))
        });
        registry.builtins = Some(config.clone());
        registry
    }

    /// Registers an inline handler for `kind`, replacing any other.
    pub fn register_inline<F>(&mut self, kind: &str, handler: F)
    where
        F: Fn(&Task) -> HandlerResult + Send + Sync + 'static,
    {
        self.mark_replaced(kind);
        self.handlers
            .insert(kind.to_string(), Handler::Inline(Arc::new(handler)));
    }

    /// Registers an async handler for `kind`, replacing any other.
    pub fn register_async<F>(&mut self, kind: &str, handler: F)
    where
        F: Fn(Task) -> HandlerFuture + Send + Sync + 'static,
    {
        self.mark_replaced(kind);
        self.handlers
            .insert(kind.to_string(), Handler::Async(Arc::new(handler)));
    }

    /// The handler for `kind`.
    pub fn get(&self, kind: &str) -> Option<&Handler> {
        self.handlers.get(kind)
    }

    /// Checks at submission what would make `task` fail however often it
    /// ran: a kind without a handler, a built-in's payload of the wrong
    /// shape, a sleep over the limit, a program not on the allowlist (unless
    /// `remote_agents` may run it with their own allowlist), a deadline
    /// already past. The reason names the field.
    pub fn check(&self, task: &Task, remote_agents: bool) -> Result<(), RejectReason> {
        if let Some(deadline_ms) = task.deadline_ms {
            if deadline_ms < now_micros() / 1000 {
                return Err(RejectReason::DeadlinePassed { deadline_ms });
            }
        }
        if !self.handlers.contains_key(task.kind.as_str()) {
            return Err(RejectReason::InvalidValue {
                path: "kind".into(),
                detail: format!(
                    "no handler for kind {:?} (registered: {})",
                    task.kind.as_str(),
                    self.kinds().join(", ")
                ),
            });
        }
        let Some(builtins) = &self.builtins else {
            return Ok(());
        };
        fn payload<T: serde::de::DeserializeOwned>(
            task: &Task,
            shape: &str,
        ) -> Result<T, RejectReason> {
            let text = task
                .payload
                .as_deref()
                .ok_or_else(|| RejectReason::MissingField {
                    field: "payload".into(),
                    path: String::new(),
                })?;
            serde_json::from_str(text).map_err(|e| RejectReason::WrongType {
                path: "payload".into(),
                detail: format!("{} payload must be {shape}: {e}", task.kind.as_str()),
            })
        }
        match task.kind.as_str() {
            "sleep" if self.is_builtin("sleep") => {
                let SleepPayload { ms } = payload(task, "{\"ms\": N}")?;
                if ms > builtins.max_sleep_ms {
                    return Err(RejectReason::InvalidValue {
                        path: "payload.ms".into(),
                        detail: format!(
                            "{ms} is over handlers.max_sleep_ms ({})",
                            builtins.max_sleep_ms
                        ),
                    });
                }
            }
            "command" if self.is_builtin("command") => {
                let spec: CommandPayload =
                    payload(task, "{\"program\": ..., \"args\": [...], \"stdin\": ...}")?;
                if !remote_agents
                    && !builtins
                        .command_allowlist
                        .iter()
                        .any(|p| p == &spec.program)
                {
                    return Err(RejectReason::InvalidValue {
                        path: "payload.program".into(),
                        detail: format!(
                            "program {:?} is not in handlers.command_allowlist ({} entries)",
                            spec.program,
                            builtins.command_allowlist.len()
                        ),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Whether `kind` still runs the built-in handler (not a replacement).
    fn is_builtin(&self, kind: &str) -> bool {
        self.builtins.is_some() && !self.replaced.contains(kind)
    }

    fn mark_replaced(&mut self, kind: &str) {
        if self.builtins.is_some() {
            self.replaced.insert(kind.to_string());
        }
    }

    /// Registered kinds, sorted.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.handlers.keys().cloned().collect();
        kinds.sort();
        kinds
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SleepPayload {
    ms: u64,
}

async fn sleep(task: Task, max_sleep_ms: u64) -> HandlerResult {
    let payload = task
        .payload
        .as_deref()
        .ok_or_else(|| "sleep needs a payload {\"ms\": N}".to_string())?;
    let SleepPayload { ms } = serde_json::from_str(payload)
        .map_err(|e| format!("sleep payload must be {{\"ms\": N}}: {e}"))?;
    if ms > max_sleep_ms {
        return Err(format!("sleep of {ms} ms is over the limit of {max_sleep_ms} ms").into());
    }
    tokio::time::sleep(Duration::from_millis(ms)).await;
    Ok(HandlerOutput::default())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandPayload {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    stdin: Option<String>,
}

/// Runs a program from the allowlist; the backend's timeout drops this
/// future, and `kill_on_drop` then kills the process.
async fn command(
    task: Task,
    allowlist: Arc<Vec<String>>,
    max_result_bytes: usize,
) -> HandlerResult {
    let payload = task
        .payload
        .as_deref()
        .ok_or_else(|| "command needs a payload {\"program\": ..., \"args\": [...]}".to_string())?;
    let spec: CommandPayload =
        serde_json::from_str(payload).map_err(|e| format!("command payload: {e}"))?;
    if !allowlist.iter().any(|allowed| allowed == &spec.program) {
        return Err(format!(
            "program {:?} is not in handlers.command_allowlist ({} entries)",
            spec.program,
            allowlist.len()
        )
        .into());
    }
    let mut child = tokio::process::Command::new(&spec.program)
        .args(&spec.args)
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", spec.program))?;
    if let (Some(input), Some(mut pipe)) = (spec.stdin, child.stdin.take()) {
        use tokio::io::AsyncWriteExt;
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|e| format!("writing stdin: {e}"))?;
    }
    let stdout = child.stdout.take().ok_or("no stdout pipe".to_string())?;
    let stderr = child.stderr.take().ok_or("no stderr pipe".to_string())?;
    // Each stream keeps up to the whole bound; `bounded` then shares it.
    let (out, err, status) = tokio::join!(
        read_tail(stdout, max_result_bytes),
        read_tail(stderr, max_result_bytes),
        child.wait()
    );
    let output_bytes = out.total + err.total;
    let result = Some(
        TaskResult {
            value: None,
            stdout: Some(String::from_utf8_lossy(&out.tail).into_owned()),
            stderr: Some(String::from_utf8_lossy(&err.tail).into_owned()),
            truncated: out.cut || err.cut,
        }
        .bounded(max_result_bytes),
    );
    let status = status.map_err(|e| format!("waiting for {:?}: {e}", spec.program))?;
    match status.code() {
        Some(0) => Ok(HandlerOutput {
            exit_code: Some(0),
            output_bytes,
            result,
        }),
        code => Err(HandlerFailure {
            reason: match code {
                Some(code) => format!("{} exited with code {code}", spec.program),
                None => format!("{} was killed by a signal", spec.program),
            },
            exit_code: code,
            output_bytes,
            result: result.map(Box::new),
        }),
    }
}

/// The end of a stream: its last bytes, how many it had, whether any were
/// dropped.
struct StreamTail {
    tail: Vec<u8>,
    total: u64,
    cut: bool,
}

/// Reads `reader` to its end keeping only the last `keep` bytes (cut at a
/// character boundary). A read error ends the stream where it happened.
async fn read_tail(mut reader: impl tokio::io::AsyncRead + Unpin, keep: usize) -> StreamTail {
    let mut tail = Vec::new();
    let mut total = 0u64;
    let mut chunk = [0u8; 8192];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                total += n as u64;
                tail.extend_from_slice(&chunk[..n]);
                // Drop the front in large steps so the copy stays amortised.
                if tail.len() > keep.saturating_mul(2).max(chunk.len()) {
                    tail.drain(..tail.len() - keep);
                }
            }
        }
    }
    let cut = total > keep as u64;
    let (text, _) = TaskResult::tail(&tail, keep);
    StreamTail {
        tail: text.into_bytes(),
        total,
        cut,
    }
}
