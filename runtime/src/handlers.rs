//! Task handlers: built-in `noop`, `sleep` and `command`, and user closures.
//!
//! A handler is either *inline* (cheap, non-blocking: it runs on the timely
//! worker thread and completes in the same round) or *async* (it runs on the
//! tokio runtime beside the workers and completes later). The backend
//! applies each task's timeout to async handlers.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncReadExt;

use tidewater_operators::model::Task;

use crate::config::HandlersConfig;

/// What a successful handler reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HandlerOutput {
    /// Exit code, for process handlers.
    pub exit_code: Option<i32>,
    /// Size of the output produced, in bytes.
    pub output_bytes: u64,
}

/// A handler failure: the reason, and the exit code when a process ran.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerFailure {
    /// Why, in words a user can act on.
    pub reason: String,
    /// Exit code, when a process ran.
    pub exit_code: Option<i32>,
    /// Output produced before failing.
    pub output_bytes: u64,
}

impl From<String> for HandlerFailure {
    fn from(reason: String) -> Self {
        HandlerFailure {
            reason,
            exit_code: None,
            output_bytes: 0,
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
}

impl HandlerRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// A registry with `noop`, `sleep` and `command`.
    pub fn with_builtins(config: &HandlersConfig) -> Self {
        let mut registry = Self::new();
        registry.register_inline("noop", |_task| Ok(HandlerOutput::default()));
        let max_sleep_ms = config.max_sleep_ms;
        registry.register_async("sleep", move |task| Box::pin(sleep(task, max_sleep_ms)));
        let allowlist = Arc::new(config.command_allowlist.clone());
        registry.register_async("command", move |task| {
            Box::pin(command(task, Arc::clone(&allowlist)))
        });
        registry
    }

    /// Registers an inline handler for `kind`, replacing any other.
    pub fn register_inline<F>(&mut self, kind: &str, handler: F)
    where
        F: Fn(&Task) -> HandlerResult + Send + Sync + 'static,
    {
        self.handlers
            .insert(kind.to_string(), Handler::Inline(Arc::new(handler)));
    }

    /// Registers an async handler for `kind`, replacing any other.
    pub fn register_async<F>(&mut self, kind: &str, handler: F)
    where
        F: Fn(Task) -> HandlerFuture + Send + Sync + 'static,
    {
        self.handlers
            .insert(kind.to_string(), Handler::Async(Arc::new(handler)));
    }

    /// The handler for `kind`.
    pub fn get(&self, kind: &str) -> Option<&Handler> {
        self.handlers.get(kind)
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
async fn command(task: Task, allowlist: Arc<Vec<String>>) -> HandlerResult {
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
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut stdout = child.stdout.take().ok_or("no stdout pipe".to_string())?;
    let mut stderr = child.stderr.take().ok_or("no stderr pipe".to_string())?;
    let (r1, r2, status) = tokio::join!(
        stdout.read_to_end(&mut out),
        stderr.read_to_end(&mut err),
        child.wait()
    );
    let output_bytes = (r1.unwrap_or(0) + r2.unwrap_or(0)) as u64;
    let status = status.map_err(|e| format!("waiting for {:?}: {e}", spec.program))?;
    match status.code() {
        Some(0) => Ok(HandlerOutput {
            exit_code: Some(0),
            output_bytes,
        }),
        code => Err(HandlerFailure {
            reason: match code {
                Some(code) => format!("{} exited with code {code}", spec.program),
                None => format!("{} was killed by a signal", spec.program),
            },
            exit_code: code,
            output_bytes,
        }),
    }
}
