//! Handlers through the library API: Rust closures (async and inline), the
//! `command` handler's exit code and output size, timeouts, retries with
//! backoff, and unknown kinds.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tidewater::config::{Config, StoreKind};
use tidewater::{HandlerFailure, HandlerOutput, Pipeline, SubmitError};
use tidewater_connectors::store::{MemoryStore, TaskState, TaskStore};
use tidewater_operators::model::{ResourceRequest, Task};

fn config() -> Config {
    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    config.handlers.command_allowlist = vec!["sh".into()];
    config.retry.initial_backoff_ms = 5;
    config
}

fn task(id: &str, kind: &str, payload: Option<&str>) -> Task {
    let mut task = Task::new(id, kind, ResourceRequest::cpu(100, 0));
    task.payload = payload.map(Into::into);
    task
}

#[test]
fn closures_commands_timeouts_and_retries() {
    let store = Arc::new(MemoryStore::new());
    let calls = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&calls);
    let pipeline = Pipeline::builder(config())
        .store(store.clone())
        .handler("double", |task| async move {
            let n: u64 = task
                .payload
                .as_deref()
                .unwrap_or("0")
                .parse()
                .map_err(|e| format!("{e}"))?;
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok(HandlerOutput::value((n * 2).into()))
        })
        .inline_handler("fails-twice", move |task| {
            counted.fetch_add(1, Ordering::SeqCst);
            if task.attempt < 3 {
                Err(HandlerFailure::from(format!(
                    "attempt {} fails",
                    task.attempt
                )))
            } else {
                Ok(HandlerOutput::default())
            }
        })
        .start()
        .expect("start");

    pipeline
        .submit(task("closure", "double", Some("21")))
        .expect("submit");
    pipeline
        .submit(task(
            "echo",
            "command",
            Some(r#"{"program":"sh","args":["-c","printf hello"]}"#),
        ))
        .expect("submit");
    pipeline
        .submit(task(
            "exit3",
            "command",
            Some(r#"{"program":"sh","args":["-c","printf oops >&2; exit 3"]}"#),
        ))
        .expect("submit");
    // What no handler could ever run is refused at submission, naming the field.
    let refused = |task| match pipeline.submit(task) {
        Err(SubmitError::Refused(reason)) => reason.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert!(refused(task(
        "forbidden",
        "command",
        Some(r#"{"program":"rm","args":["-rf","/tmp/x"]}"#),
    ))
    .contains("`payload.program`: program \"rm\" is not in handlers.command_allowlist"));
    assert!(refused(task("nobody", "no-such-kind", None))
        .contains("no handler for kind \"no-such-kind\""));
    assert!(
        refused(task("bad-sleep", "sleep", Some(r#"{"seconds":1}"#)))
            .contains("sleep payload must be")
    );
    let mut slow = task("slow", "sleep", Some(r#"{"ms":5000}"#));
    slow.timeout_ms = 50;
    pipeline.submit(slow).expect("submit");
    let mut flaky = task("flaky", "fails-twice", None);
    flaky.max_attempts = 3;
    pipeline.submit(flaky).expect("submit");

    let summary = pipeline.shutdown().expect("shutdown");
    assert_eq!(summary.finished, 5, "{summary:?}");

    let record = |id: &str| store.get(id).expect("get").expect(id);
    let closure = record("closure");
    assert_eq!(
        (closure.state, closure.output_bytes),
        (TaskState::Succeeded, 2)
    );
    assert_eq!(
        closure.result.and_then(|r| r.value),
        Some(serde_json::json!(42))
    );
    let echo = record("echo");
    assert_eq!(
        (echo.state, echo.exit_code, echo.output_bytes),
        (TaskState::Succeeded, Some(0), 5)
    );
    assert_eq!(echo.result.and_then(|r| r.stdout).as_deref(), Some("hello"));
    let exit3 = record("exit3");
    assert_eq!(
        (exit3.state, exit3.exit_code, exit3.output_bytes),
        (TaskState::Failed, Some(3), 4)
    );
    assert_eq!(
        exit3.result.as_ref().and_then(|r| r.stderr.as_deref()),
        Some("oops")
    );
    assert!(exit3
        .reason
        .unwrap_or_default()
        .contains("exited with code 3"));
    assert_eq!(record("slow").state, TaskState::TimedOut);
    let flaky = record("flaky");
    assert_eq!((flaky.state, flaky.attempts), (TaskState::Succeeded, 3));
    assert_eq!(calls.load(Ordering::SeqCst), 3);
}
