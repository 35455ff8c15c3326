//! The bridge from async sources into the timely workers.
//!
//! Sources (HTTP, files, brokers, the in-process API) hand records to an
//! [`Ingress`], which spreads them round-robin over this process's worker
//! channels and wakes the worker. Each worker drains its channel into its
//! dataflow input.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;

use crossbeam_channel::{Receiver, Sender};

use tidewater_operators::model::{
    now_micros, AckToken, ControlCommand, ModelUpdate, Name, RecordBody, SourceRecord, TraceParent,
};

/// A message for one worker.
#[derive(Debug)]
pub enum WorkerMessage {
    /// A source record.
    Record(SourceRecord),
    /// A new model version to broadcast to the coordinators.
    Model(ModelUpdate),
    /// A control command to broadcast to the coordinators.
    Control(ControlCommand),
}

/// Why a record was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IngressError {
    /// The pipeline is shutting down and takes no more input.
    #[error("the pipeline is shutting down")]
    Closed,
}

struct Shared {
    senders: Vec<Sender<WorkerMessage>>,
    threads: Mutex<Vec<Option<Thread>>>,
    next: AtomicUsize,
    closed: AtomicBool,
    /// Records sent into the dataflow (each comes out as one outcome).
    records: AtomicU64,
    first_worker: usize,
    control_observer: OnceLock<ControlObserver>,
    /// `limits.max_queued` and the counters of what came out.
    queue_bound: OnceLock<(usize, Arc<crate::stats::PipelineStats>)>,
}

/// Called with each control command as it is submitted.
pub type ControlObserver = Box<dyn Fn(&ControlCommand) + Send + Sync>;

/// A cloneable handle that feeds records to this process's workers.
#[derive(Clone)]
pub struct Ingress {
    shared: Arc<Shared>,
}

/// One worker's end of the ingress.
pub struct WorkerInbox {
    /// Messages for this worker.
    pub receiver: Receiver<WorkerMessage>,
    shared: Arc<Shared>,
    local_index: usize,
}

impl Ingress {
    /// An ingress for `workers` local workers whose global indices start at
    /// `first_worker`, with one inbox per worker.
    pub fn new(workers: usize, first_worker: usize) -> (Ingress, Vec<WorkerInbox>) {
        let (senders, receivers): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| crossbeam_channel::unbounded()).unzip();
        let shared = Arc::new(Shared {
            senders,
            threads: Mutex::new(vec![None; workers]),
            next: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            records: AtomicU64::new(0),
            first_worker,
            control_observer: OnceLock::new(),
            queue_bound: OnceLock::new(),
        });
        let inboxes = receivers
            .into_iter()
            .enumerate()
            .map(|(local_index, receiver)| WorkerInbox {
                receiver,
                shared: Arc::clone(&shared),
                local_index,
            })
            .collect();
        (Ingress { shared }, inboxes)
    }

    /// Submits raw JSON bytes from `source`, to be decoded and validated in
    /// the dataflow.
    pub fn submit_json(
        &self,
        source: &str,
        bytes: Vec<u8>,
        ack_source: u16,
        tag: u64,
    ) -> Result<(), IngressError> {
        self.send_record(source, RecordBody::Json(bytes), ack_source, tag, None)
    }

    /// As [`submit_json`](Self::submit_json), for a delivery that carried
    /// the W3C trace context `trace`: the task's span becomes its child.
    pub fn submit_json_traced(
        &self,
        source: &str,
        bytes: Vec<u8>,
        ack_source: u16,
        tag: u64,
        trace: Option<TraceParent>,
    ) -> Result<(), IngressError> {
        self.send_record(source, RecordBody::Json(bytes), ack_source, tag, trace)
    }

    /// Submits an already decoded task.
    pub fn submit_task(
        &self,
        source: &str,
        task: tidewater_operators::model::Task,
    ) -> Result<(), IngressError> {
        self.send_record(source, RecordBody::Task(Box::new(task)), 0, 0, None)
    }

    fn send_record(
        &self,
        source: &str,
        body: RecordBody,
        ack_source: u16,
        tag: u64,
        trace: Option<TraceParent>,
    ) -> Result<(), IngressError> {
        let local = self.shared.next.fetch_add(1, Ordering::Relaxed) % self.shared.senders.len();
        // Even records that need no acknowledgement name their worker, so
        // that their results are recorded where they were ingested.
        let ack = AckToken {
            origin_worker: (self.shared.first_worker + local) as u32,
            source: ack_source,
            tag,
        };
        let record = SourceRecord {
            body,
            ack,
            source_name: Name::from(source),
            received_at_us: now_micros(),
            trace,
        };
        self.send_to(local, WorkerMessage::Record(record))?;
        self.shared.records.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    /// Bounds the records in the pipeline (sent in, not yet out as a final
    /// outcome or a rejection, as `stats` counts them) to `max_queued`
    /// (0: no bound). Set once; later calls change nothing.
    pub fn bound_queue(&self, max_queued: usize, stats: Arc<crate::stats::PipelineStats>) {
        let _ = self.shared.queue_bound.set((max_queued, stats));
    }

    /// Records in the pipeline now: sent in and not yet out.
    pub fn in_flight(&self) -> u64 {
        let sent = self.records_sent();
        self.shared
            .queue_bound
            .get()
            .map_or(0, |(_, stats)| sent.saturating_sub(stats.outcomes()))
    }

    /// Whether `more` records would take the pipeline past its bound.
    pub fn would_saturate(&self, more: usize) -> bool {
        match self.shared.queue_bound.get() {
            Some((max, _)) if *max > 0 => self.in_flight() + more as u64 > *max as u64,
            _ => false,
        }
    }

    /// Whether the pipeline holds as many records as its bound allows:
    /// sources that can wait (brokers) pause until it drains.
    pub fn is_saturated(&self) -> bool {
        self.would_saturate(1)
    }

    /// Records sent into the dataflow so far; each ends as one final
    /// outcome or one rejection in this process's sinks.
    pub fn records_sent(&self) -> u64 {
        self.shared.records.load(Ordering::Acquire)
    }

    /// Sends a model update (to the first local worker; the dataflow
    /// broadcasts it).
    pub fn submit_model(&self, update: ModelUpdate) -> Result<(), IngressError> {
        self.send_to(0, WorkerMessage::Model(update))
    }

    /// Sends a control command (cancel, executor join/heartbeat/leave,
    /// reservation); the dataflow broadcasts it to every coordinator.
    pub fn submit_control(&self, command: ControlCommand) -> Result<(), IngressError> {
        if let (Some(observe), false) = (
            self.shared.control_observer.get(),
            self.shared.closed.load(Ordering::Acquire),
        ) {
            observe(&command);
        }
        self.send_to(0, WorkerMessage::Control(command))
    }

    /// Sets the function that sees every control command submitted (once;
    /// a later call is ignored). The executor book uses it to follow joins,
    /// heartbeats and leaves from every source.
    pub fn observe_control(&self, observer: ControlObserver) {
        if self.shared.control_observer.set(observer).is_err() {
            tracing::warn!("a control observer was already set");
        }
    }

    fn send_to(&self, local: usize, message: WorkerMessage) -> Result<(), IngressError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(IngressError::Closed);
        }
        self.shared.senders[local]
            .send(message)
            .map_err(|_| IngressError::Closed)?;
        if let Ok(threads) = self.shared.threads.lock() {
            if let Some(Some(thread)) = threads.get(local) {
                thread.unpark();
            }
        }
        Ok(())
    }

    /// Stops taking input; workers drain what was sent and then close.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        if let Ok(threads) = self.shared.threads.lock() {
            threads.iter().flatten().for_each(Thread::unpark);
        }
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}

impl WorkerInbox {
    /// Registers the calling thread to be woken when messages arrive.
    pub fn register_current_thread(&self) {
        if let Ok(mut threads) = self.shared.threads.lock() {
            threads[self.local_index] = Some(std::thread::current());
        }
    }

    /// Whether the ingress was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }
}
