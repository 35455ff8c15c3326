//! Local executor slots: runs assignments' handlers inline or on tokio.
//!
//! The timely `Execute` operator calls [`LocalBackend::start`] for each
//! assignment. Inline handlers complete at once; async handlers are spawned
//! on the tokio runtime with the task's timeout, and their completions come
//! back over a channel, waking the operator through its activator. An
//! abort (cancellation, executor loss) drops the handler's future — a
//! command's process is killed with it — and completes the attempt with an
//! outcome saying why.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use timely::scheduling::SyncActivator;

use tidewater_operators::dataflow::ExecutionBackend;
use tidewater_operators::model::{now_micros, AbortReason, Assignment, Completion, Lease, Outcome};

use crate::handlers::{Handler, HandlerFailure, HandlerRegistry, HandlerResult};

/// Runs assignments with the registered handlers.
pub struct LocalBackend {
    handlers: Arc<HandlerRegistry>,
    runtime: tokio::runtime::Handle,
    done_tx: Sender<Completion>,
    done_rx: Receiver<Completion>,
    /// Most bytes of a result kept (`limits.max_result_bytes`).
    max_result_bytes: usize,
    activator: Option<Arc<SyncActivator>>,
    in_flight: usize,
    /// How to stop each running asynchronous attempt, by lease.
    aborts: HashMap<Lease, tokio::sync::oneshot::Sender<AbortReason>>,
}

impl LocalBackend {
    /// A backend spawning async handlers on `runtime`, keeping results up
    /// to `max_result_bytes`.
    pub fn new(
        handlers: Arc<HandlerRegistry>,
        runtime: tokio::runtime::Handle,
        max_result_bytes: usize,
    ) -> Self {
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        LocalBackend {
            handlers,
            runtime,
            done_tx,
            done_rx,
            max_result_bytes,
            activator: None,
            in_flight: 0,
            aborts: HashMap::new(),
        }
    }
}

fn completion(
    assignment: Assignment,
    started_at_us: u64,
    result: HandlerResult,
    max_result_bytes: usize,
) -> Completion {
    let finished_at_us = now_micros();
    let (outcome, exit_code, output_bytes, result) = match result {
        Ok(out) => (
            Outcome::Succeeded,
            out.exit_code,
            out.output_bytes,
            out.result,
        ),
        Err(HandlerFailure {
            reason,
            exit_code,
            output_bytes,
            result,
        }) => (
            Outcome::Failed { reason },
            exit_code,
            output_bytes,
            result.map(|r| *r),
        ),
    };
    Completion {
        executor: assignment.executor,
        shard: assignment.shard,
        lease: assignment.lease,
        outcome,
        started_at_us,
        finished_at_us,
        exit_code,
        output_bytes,
        is_final: false,
        result: result.map(|r| r.bounded(max_result_bytes)),
        task: assignment.task,
    }
}

impl LocalBackend {
    /// Uses an activator shared with another backend of the same operator.
    pub fn set_shared_activator(&mut self, activator: Arc<SyncActivator>) {
        self.activator = Some(activator);
    }
}

impl ExecutionBackend for LocalBackend {
    fn set_activator(&mut self, activator: SyncActivator) {
        self.activator = Some(Arc::new(activator));
    }

    fn start(&mut self, assignment: Assignment, done: &mut Vec<Completion>) {
        let started_at_us = now_micros();
        match self.handlers.get(&assignment.task.kind) {
            Some(Handler::Inline(handler)) => {
                let result = handler(&assignment.task);
                done.push(completion(
                    assignment,
                    started_at_us,
                    result,
                    self.max_result_bytes,
                ));
            }
            Some(Handler::Async(handler)) => {
                self.in_flight += 1;
                let future = handler(assignment.task.clone());
                let timeout = Duration::from_millis(assignment.task.timeout_ms);
                let tx = self.done_tx.clone();
                let activator = self.activator.clone();
                let max_result_bytes = self.max_result_bytes;
                let (abort_tx, abort_rx) = tokio::sync::oneshot::channel();
                self.aborts.insert(assignment.lease, abort_tx);
                self.runtime.spawn(async move {
                    let stopped = |assignment, outcome| {
                        let mut c = completion(assignment, started_at_us, Ok(Default::default()), 0);
                        c.outcome = outcome;
                        c
                    };
                    let finished = tokio::select! {
                        result = tokio::time::timeout(timeout, future) => match result {
                            Ok(result) => completion(assignment, started_at_us, result, max_result_bytes),
                            Err(_elapsed) => stopped(assignment, Outcome::TimedOut),
                        },
                        Ok(reason) = abort_rx => stopped(assignment, match reason {
                            AbortReason::Cancelled => Outcome::Cancelled,
                            AbortReason::ExecutorLost => Outcome::Failed {
                                reason: "stopped: its executor was declared lost".into(),
                            },
                        }),
                    };
                    // The receiver lives as long as the dataflow; if it is gone
                    // the pipeline is shutting down and the result is moot.
                    let _ = tx.send(finished);
                    if let Some(activator) = activator {
                        let _ = activator.activate();
                    }
                });
            }
            None => {
                let reason = format!(
                    "no handler registered for kind {:?} (registered: {})",
                    assignment.task.kind.as_str(),
                    self.handlers.kinds().join(", ")
                );
                done.push(completion(assignment, started_at_us, Err(reason.into()), 0));
            }
        }
    }

    fn abort(&mut self, lease: Lease, reason: AbortReason) {
        if let Some(abort) = self.aborts.remove(&lease) {
            // The attempt may have just finished; then there is nothing to stop.
            let _ = abort.send(reason);
        }
    }

    fn poll(&mut self, done: &mut Vec<Completion>) {
        for c in self.done_rx.try_iter() {
            self.in_flight -= 1;
            self.aborts.remove(&c.lease);
            done.push(c);
        }
    }

    fn in_flight(&self) -> usize {
        self.in_flight
    }
}
