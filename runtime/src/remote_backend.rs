//! Routing assignments between local executor slots and remote agents.
//!
//! ```text
//!  Execute ─► RoutingBackend::start ─┬─ executor joined over the broker? ─► AgentLink ─► agent
//!                                    ├─ executor joined over HTTP? ─► HttpWorkBoard ◄─ claim ─ agent
//!                                    └─ otherwise ─► LocalBackend (handlers on tokio)
//!  agent completions (broker, or HTTP outcome) ─► AgentHub (by worker) ─► RoutingBackend::poll ─► Execute
//! ```
//!
//! [`AgentHub`] is shared by a process's workers: it learns which executors
//! are agents (they joined through the broker), and passes each agent's
//! completion to the worker that issued the assignment, waking it. Aborts
//! of remote attempts: a cancellation is forwarded to the agent (its
//! cancelled completion follows); an executor declared lost is presumed
//! gone, so the backend completes the attempt as failed itself and ignores
//! anything the agent may still send for it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use crossbeam_channel::{Receiver, Sender};
use timely::scheduling::SyncActivator;

use tidewater_connectors::rabbitmq::agent_protocol::{AgentWork, RemoteCompletion};
use tidewater_connectors::rabbitmq::{undeliverable, AgentEvents, AgentLink};
use tidewater_operators::dataflow::ExecutionBackend;
use tidewater_operators::model::{AbortReason, Assignment, Completion, ExecutorId, Lease};

use crate::backend::LocalBackend;
use crate::http_agents::HttpWorkBoard;

/// One worker's mailbox for agent completions.
struct WorkerMailbox {
    sender: Sender<RemoteCompletion>,
    activator: Option<Arc<SyncActivator>>,
}

/// What a process's workers share about remote agents.
#[derive(Default)]
pub struct AgentHub {
    agents: RwLock<HashSet<ExecutorId>>,
    /// Executors that joined over HTTP and pull their work.
    http: HttpWorkBoard,
    mailboxes: Mutex<HashMap<u32, WorkerMailbox>>,
    link: OnceLock<AgentLink>,
}

impl AgentHub {
    /// Connects the hub to the broker link (once).
    pub fn set_link(&self, link: AgentLink) {
        if self.link.set(link).is_err() {
            tracing::warn!("the agent link was already set");
        }
    }

    /// Whether `executor` is a remote agent (over the broker or HTTP).
    pub fn is_agent(&self, executor: &ExecutorId) -> bool {
        self.agents
            .read()
            .map(|agents| agents.contains(executor))
            .unwrap_or(false)
            || self.http.is_registered(executor)
    }

    /// The board of executors that joined over HTTP.
    pub fn http_board(&self) -> &HttpWorkBoard {
        &self.http
    }

    /// The remote half of worker `worker`'s backend.
    pub fn worker_link(self: &Arc<Self>, worker: u32) -> RemoteSide {
        let (sender, receiver) = crossbeam_channel::unbounded();
        if let Ok(mut mailboxes) = self.mailboxes.lock() {
            mailboxes.insert(
                worker,
                WorkerMailbox {
                    sender,
                    activator: None,
                },
            );
        }
        RemoteSide {
            hub: Arc::clone(self),
            worker,
            receiver,
            running: HashMap::new(),
            synthesized: Vec::new(),
        }
    }

    fn set_activator(&self, worker: u32, activator: Arc<SyncActivator>) {
        if let Ok(mut mailboxes) = self.mailboxes.lock() {
            if let Some(mailbox) = mailboxes.get_mut(&worker) {
                mailbox.activator = Some(activator);
            }
        }
    }

    fn send(&self, work: AgentWork) {
        if self.http.push(work.clone()) {
            return;
        }
        let delivered = self.link.get().is_some_and(|link| link.send(work.clone()));
        if !delivered {
            if let Some(c) = undeliverable(&work, "the agent link is not running") {
                self.completed(c);
            }
        }
    }

    fn reply_to(&self) -> String {
        self.link
            .get()
            .map(|link| link.reply_to().to_string())
            .unwrap_or_default()
    }
}

impl AgentEvents for AgentHub {
    fn joined(&self, executor: &ExecutorId) {
        if let Ok(mut agents) = self.agents.write() {
            agents.insert(executor.clone());
        }
    }

    fn completed(&self, completion: RemoteCompletion) {
        let Ok(mailboxes) = self.mailboxes.lock() else {
            return;
        };
        match mailboxes.get(&completion.worker) {
            Some(mailbox) => {
                // The worker is gone only at shutdown.
                let _ = mailbox.sender.send(completion);
                if let Some(activator) = &mailbox.activator {
                    let _ = activator.activate();
                }
            }
            None => tracing::warn!(
                worker = completion.worker,
                "an agent completion names a worker not in this process"
            ),
        }
    }
}

/// One worker's remote attempts.
pub struct RemoteSide {
    hub: Arc<AgentHub>,
    worker: u32,
    receiver: Receiver<RemoteCompletion>,
    running: HashMap<Lease, Assignment>,
    synthesized: Vec<Completion>,
}

impl RemoteSide {
    fn completion(assignment: Assignment, remote: RemoteCompletion) -> Completion {
        Completion {
            executor: assignment.executor,
            shard: assignment.shard,
            lease: assignment.lease,
            outcome: remote.outcome,
            started_at_us: remote.started_at_us,
            finished_at_us: remote.finished_at_us,
            exit_code: remote.exit_code,
            output_bytes: remote.output_bytes,
            is_final: false,
            result: remote.result,
            task: assignment.task,
        }
    }
}

/// Runs assignments locally, or on remote agents for executors that joined
/// through the broker.
pub struct RoutingBackend {
    local: LocalBackend,
    remote: Option<RemoteSide>,
}

impl RoutingBackend {
    /// A backend with a local side and, when agents are enabled, a remote one.
    pub fn new(local: LocalBackend, remote: Option<RemoteSide>) -> Self {
        RoutingBackend { local, remote }
    }
}

impl ExecutionBackend for RoutingBackend {
    fn set_activator(&mut self, activator: SyncActivator) {
        let activator = Arc::new(activator);
        if let Some(remote) = &self.remote {
            remote
                .hub
                .set_activator(remote.worker, Arc::clone(&activator));
        }
        self.local.set_shared_activator(activator);
    }

    fn start(&mut self, assignment: Assignment, done: &mut Vec<Completion>) {
        match &mut self.remote {
            Some(remote) if remote.hub.is_agent(&assignment.executor) => {
                remote.running.insert(assignment.lease, assignment.clone());
                remote.hub.send(AgentWork::Run {
                    assignment,
                    worker: remote.worker,
                    reply_to: remote.hub.reply_to(),
                });
            }
            _ => self.local.start(assignment, done),
        }
    }

    fn abort(&mut self, lease: Lease, reason: AbortReason) {
        let Some(remote) = self
            .remote
            .as_mut()
            .filter(|remote| remote.running.contains_key(&lease))
        else {
            self.local.abort(lease, reason);
            return;
        };
        match reason {
            AbortReason::Cancelled => {
                if let Some(assignment) = remote.running.get(&lease) {
                    let work = AgentWork::Abort {
                        executor: assignment.executor.clone(),
                        lease,
                        worker: remote.worker,
                        reason,
                    };
                    remote.hub.send(work);
                }
            }
            AbortReason::ExecutorLost => {
                if let Some(assignment) = remote.running.remove(&lease) {
                    remote
                        .hub
                        .http
                        .forget(&assignment.executor, remote.worker, lease);
                    let started_at_us = assignment.assigned_at_us;
                    let c = RemoteSide::completion(
                        assignment,
                        RemoteCompletion::failed(
                            ExecutorId::default(),
                            remote.worker,
                            lease,
                            started_at_us,
                            "stopped: its executor was declared lost".into(),
                        ),
                    );
                    remote.synthesized.push(c);
                }
            }
        }
    }

    fn poll(&mut self, done: &mut Vec<Completion>) {
        self.local.poll(done);
        if let Some(remote) = &mut self.remote {
            done.append(&mut remote.synthesized);
            for completion in remote.receiver.try_iter() {
                // Unknown leases: completions for attempts already given up
                // (the agent was declared lost) or sent twice.
                if let Some(assignment) = remote.running.remove(&completion.lease) {
                    done.push(RemoteSide::completion(assignment, completion));
                }
            }
        }
    }

    fn in_flight(&self) -> usize {
        self.local.in_flight()
            + self
                .remote
                .as_ref()
                .map_or(0, |r| r.running.len() + r.synthesized.len())
    }
}
