//! Executors that joined over HTTP and pull their work: the board between
//! the workers that place attempts on them and the HTTP endpoints they
//! claim from and report to.
//!
//! ```text
//!  POST /v1/executors ─► register ─┐
//!  Execute ─► RoutingBackend::start ─► AgentHub::send ─► HttpWorkBoard::push (pending, wake claimers)
//!  POST /v1/executors/{id}/claim ◄─ long-poll ─ take pending (now claimed) ◄─┘
//!  POST /v1/executors/{id}/tasks/{task}/outcome ─► settle (claimed → done) ─► AgentHub::completed ─► worker
//!  executor lost ─► RoutingBackend completes the attempt as failed ─► forget the lease here
//! ```
//!
//! The board holds, per executor, the work not yet claimed and the runs
//! claimed but not yet reported. An outcome is taken only for a run that
//! was claimed by that executor and is still open, so a report for an
//! attempt given up (the executor was declared lost and the task retried
//! elsewhere) or sent twice is refused. Everything lives in this process:
//! in a cluster an executor must claim from the process whose workers place
//! work on it (see README, "Remote executors over HTTP").

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use tidewater_connectors::rabbitmq::agent_protocol::AgentWork;
use tidewater_operators::model::{ExecutorId, Lease};

/// One executor's mailbox.
#[derive(Default)]
struct Mailbox {
    /// Work not yet claimed, in order.
    pending: VecDeque<AgentWork>,
    /// Runs claimed and not yet reported: (worker, lease) → task id.
    claimed: HashMap<(u32, Lease), String>,
    /// Wakes a claim waiting for work.
    ready: Arc<Notify>,
}

/// Why an outcome was not taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutcomeRefused {
    /// The executor never joined over HTTP (or was forgotten).
    #[error("executor {0:?} did not join over HTTP")]
    UnknownExecutor(String),
    /// No open run of that lease: never claimed, already reported, or
    /// given up because the executor was declared lost.
    #[error("executor {executor:?} has no open run of task {task:?} with lease {lease}")]
    NoOpenRun {
        /// The executor.
        executor: String,
        /// The task named in the request.
        task: String,
        /// The lease named in the outcome.
        lease: u64,
    },
}

/// The executors that joined over HTTP and their work.
#[derive(Clone, Default)]
pub struct HttpWorkBoard {
    mailboxes: Arc<Mutex<HashMap<ExecutorId, Mailbox>>>,
}

impl HttpWorkBoard {
    /// Registers `executor` as one that pulls its work over HTTP (again:
    /// open runs of an earlier session are kept, pending work too).
    pub fn register(&self, executor: &ExecutorId) {
        if let Ok(mut boxes) = self.mailboxes.lock() {
            boxes.entry(executor.clone()).or_default();
        }
    }

    /// Whether `executor` joined over HTTP.
    pub fn is_registered(&self, executor: &ExecutorId) -> bool {
        self.mailboxes
            .lock()
            .map(|boxes| boxes.contains_key(executor))
            .unwrap_or(false)
    }

    /// Queues `work` for its executor; `false` if that executor is not
    /// registered here.
    pub fn push(&self, work: AgentWork) -> bool {
        let Ok(mut boxes) = self.mailboxes.lock() else {
            return false;
        };
        let Some(mailbox) = boxes.get_mut(work.executor()) else {
            return false;
        };
        mailbox.pending.push_back(work);
        mailbox.ready.notify_one();
        true
    }

    /// Forgets the run of `lease` issued by `worker` to `executor`: its
    /// attempt was given up (the executor was declared lost).
    pub fn forget(&self, executor: &ExecutorId, worker: u32, lease: Lease) {
        if let Ok(mut boxes) = self.mailboxes.lock() {
            if let Some(mailbox) = boxes.get_mut(executor) {
                mailbox.claimed.remove(&(worker, lease));
                mailbox.pending.retain(|w| match w {
                    AgentWork::Run {
                        assignment,
                        worker: w,
                        ..
                    } => !(assignment.lease == lease && *w == worker),
                    AgentWork::Abort {
                        lease: l,
                        worker: w,
                        ..
                    } => !(*l == lease && *w == worker),
                    AgentWork::Refused { .. } => true,
                });
            }
        }
    }

    /// Takes up to `max` pending items of `executor`, waiting up to `wait`
    /// for the first; `None` if the executor is not registered.
    pub async fn claim(
        &self,
        executor: &ExecutorId,
        max: usize,
        wait: Duration,
    ) -> Option<Vec<AgentWork>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let ready = {
                let mut boxes = self.mailboxes.lock().ok()?;
                let mailbox = boxes.get_mut(executor)?;
                if !mailbox.pending.is_empty() {
                    let n = max.max(1).min(mailbox.pending.len());
                    let taken: Vec<AgentWork> = mailbox.pending.drain(..n).collect();
                    for work in &taken {
                        if let AgentWork::Run {
                            assignment, worker, ..
                        } = work
                        {
                            mailbox.claimed.insert(
                                (*worker, assignment.lease),
                                assignment.task.id.to_string(),
                            );
                        }
                    }
                    return Some(taken);
                }
                Arc::clone(&mailbox.ready)
            };
            if tokio::time::timeout_at(deadline, ready.notified())
                .await
                .is_err()
            {
                return Some(Vec::new());
            }
        }
    }

    /// Closes the claimed run of `lease` (issued by `worker`) for `task`
    /// on `executor`, so that its outcome may be delivered.
    pub fn settle(
        &self,
        executor: &ExecutorId,
        task: &str,
        worker: u32,
        lease: Lease,
    ) -> Result<(), OutcomeRefused> {
        let mut boxes = self
            .mailboxes
            .lock()
            .map_err(|_| OutcomeRefused::UnknownExecutor(executor.to_string()))?;
        let mailbox = boxes
            .get_mut(executor)
            .ok_or_else(|| OutcomeRefused::UnknownExecutor(executor.to_string()))?;
        match mailbox.claimed.get(&(worker, lease)) {
            Some(claimed) if claimed == task => {
                mailbox.claimed.remove(&(worker, lease));
                Ok(())
            }
            _ => Err(OutcomeRefused::NoOpenRun {
                executor: executor.to_string(),
                task: task.to_string(),
                lease: lease.0,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_operators::model::{AbortReason, Assignment, Name, ResourceRequest, Task};

    fn run(executor: &str, task: &str, lease: u64) -> AgentWork {
        AgentWork::Run {
            assignment: Assignment {
                task: Task::new(task, "noop", ResourceRequest::cpu(100, 10)),
                executor: Name::from(executor),
                shard: 0,
                lease: Lease(lease),
                gpu_devices: Vec::new(),
                assigned_at_us: 0,
            },
            worker: 0,
            reply_to: String::new(),
        }
    }

    #[tokio::test]
    async fn claims_wait_for_work_and_outcomes_close_only_open_runs() {
        let board = HttpWorkBoard::default();
        let a = Name::from("a");
        assert!(!board.push(run("a", "t1", 1)), "a has not joined");
        board.register(&a);
        assert_eq!(
            board.claim(&a, 8, Duration::from_millis(20)).await,
            Some(Vec::new())
        );
        let waiting = {
            let board = board.clone();
            tokio::spawn(async move {
                board
                    .claim(&Name::from("a"), 8, Duration::from_secs(5))
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(board.push(run("a", "t1", 1)));
        let claimed = waiting.await.expect("claim").expect("registered");
        assert_eq!(claimed, vec![run("a", "t1", 1)]);
        assert!(board.settle(&a, "other", 0, Lease(1)).is_err());
        assert_eq!(board.settle(&a, "t1", 0, Lease(1)), Ok(()));
        assert!(board.settle(&a, "t1", 0, Lease(1)).is_err(), "only once");
        // A run given up before it was claimed is withdrawn.
        board.push(run("a", "t2", 2));
        board.push(AgentWork::Abort {
            executor: a.clone(),
            lease: Lease(2),
            worker: 0,
            reason: AbortReason::Cancelled,
        });
        board.forget(&a, 0, Lease(2));
        assert_eq!(
            board.claim(&a, 8, Duration::from_millis(10)).await,
            Some(Vec::new())
        );
        assert_eq!(
            board
                .claim(&Name::from("b"), 8, Duration::from_millis(10))
                .await,
            None
        );
    }
}
