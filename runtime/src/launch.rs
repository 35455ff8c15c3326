//! Worker launch: timely workers (threads, processes, hosts) running the task
//! pipeline, each draining its inbox into the dataflow and recording results.
//!
//! ```text
//!  Ingress ──► WorkerInbox ──► records input ─► task_pipeline ─► finals ──► store sinks, store, results file, acks
//!                          ├─► models input  ─┤                ├► rejections ─► store, dead letters, acks
//!                          └─► control input ─┘                └► retried attempts ─► lineage graph (with `[lineage]`)
//!                              (with `[learner]`: finals ─► learner ─► models loop,
//!                               versions ─► store's model registry)
//! ```

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use timely::dataflow::operators::{Input, Probe};
use timely::dataflow::ProbeHandle;
use timely::worker::Worker;

use tidewater_connectors::store::{ModelRecord, TaskStore};
use tidewater_dataflows::learner::{learning_pipeline, LearnerParts};
use tidewater_dataflows::pipeline::PipelineParts;
use tidewater_dataflows::sinks::sink_batches;
use tidewater_operators::allocate::{FeasibilityIndex, ShardAllocator};
use tidewater_operators::dataflow::CoordinatorState;
use tidewater_operators::learn::learner::{Learner, Publication};
use tidewater_operators::model::{
    Completion, ControlCommand, Epoch, ModelUpdate, Rejection, SourceRecord,
};
use tidewater_operators::validate::Validator;

use crate::acks::AckRegistry;
use crate::backend::LocalBackend;
use crate::config::Config;
use crate::handlers::HandlerRegistry;
use crate::ingress::{WorkerInbox, WorkerMessage};
use crate::live::{LiveTasks, TrackingBackend};
use crate::monitoring::Exporter;
use crate::remote_backend::{AgentHub, RoutingBackend};
use crate::reservations::ReservationBook;
use crate::stats::PipelineStats;
use tidewater_dataflows::monitor::{continuous_queries, QueryResults};

/// Most messages moved from an inbox into the dataflow per step.
const INBOX_BATCH: usize = 1 << 14;

/// Append-only JSON-lines files for results and dead letters.
#[derive(Default)]
pub struct FileSinks {
    results: Option<Mutex<BufWriter<File>>>,
    dead_letters: Option<Mutex<BufWriter<File>>>,
}

impl FileSinks {
    /// Opens the configured files for appending.
    pub fn open(results: Option<&Path>, dead_letters: Option<&Path>) -> std::io::Result<Self> {
        let open = |path: &Path| -> std::io::Result<Mutex<BufWriter<File>>> {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)?;
            }
            Ok(Mutex::new(BufWriter::new(
                File::options().create(true).append(true).open(path)?,
            )))
        };
        Ok(FileSinks {
            results: results.map(open).transpose()?,
            dead_letters: dead_letters.map(open).transpose()?,
        })
    }

    fn write<T: serde::Serialize>(file: &Option<Mutex<BufWriter<File>>>, records: &[T]) {
        let Some(file) = file else { return };
        let Ok(mut file) = file.lock() else { return };
        for record in records {
            if let Err(e) = serde_json::to_writer(&mut *file, record)
                .map_err(std::io::Error::from)
                .and_then(|()| file.write_all(b"\n"))
            {
                tracing::error!(error = %e, "writing to a sink file");
                return;
            }
        }
        if let Err(e) = file.flush() {
            tracing::error!(error = %e, "flushing a sink file");
        }
    }
}

/// What every worker of a process shares.
pub struct WorkerContext {
    /// The configuration.
    pub config: Arc<Config>,
    /// Handlers by task kind.
    pub handlers: Arc<HandlerRegistry>,
    /// The tokio runtime beside the workers.
    pub runtime: tokio::runtime::Handle,
    /// Task records and results.
    pub store: Arc<dyn TaskStore>,
    /// Counters.
    pub stats: Arc<PipelineStats>,
    /// One inbox per local worker, taken by the worker at start.
    pub inboxes: Mutex<Vec<Option<WorkerInbox>>>,
    /// Global index of this process's first worker.
    pub first_worker: usize,
    /// When the process started, for generated task ids.
    pub started_at_us: u64,
    /// Optional JSON-lines sinks.
    pub files: Arc<FileSinks>,
    /// Acknowledgement callbacks.
    pub acks: AckRegistry,
    /// Reservation statuses for the API.
    pub reservations: ReservationBook,
    /// Continuous query results.
    pub queries: QueryResults,
    /// The Prometheus exporter.
    pub exporter: Arc<Exporter>,
    /// Remote executor agents, when the config enables them.
    pub agents: Option<Arc<AgentHub>>,
    /// The export and lineage graph final completions must reach first.
    pub store_sinks: Arc<crate::store_sinks::StoreSinks>,
    /// What runs now and what waits for a retry.
    pub live: LiveTasks,
    /// Set when shutdown gives up on in-flight work: workers then stop
    /// without waiting for it (it stays queued in the store).
    pub abandon: Arc<std::sync::atomic::AtomicBool>,
    /// Task spans for OpenTelemetry, when `[telemetry]` is set.
    pub task_spans: Option<crate::telemetry::TaskSpans>,
}

/// The per-worker pieces of the task pipeline: executors are sharded over
/// workers round-robin in config order (executor `i` belongs to worker
/// `i % peers`), and every shard knows the whole cluster for feasibility.
pub fn pipeline_parts(
    config: &Config,
    index: usize,
    peers: usize,
    handlers: &Arc<HandlerRegistry>,
    runtime: &tokio::runtime::Handle,
    started_at_us: u64,
) -> Result<PipelineParts<LocalBackend>, String> {
    let specs = config.executor_specs();
    let feasibility = FeasibilityIndex::new(
        peers,
        specs
            .iter()
            .enumerate()
            .map(|(i, s)| ((i % peers) as u32, s.clone())),
    );
    let local = specs
        .into_iter()
        .enumerate()
        .filter(|(i, _)| i % peers == index)
        .map(|(_, s)| s)
        .collect();
    let allocator = ShardAllocator::new(index as u32, local, feasibility, &config.allocator)?;
    let coordinator = CoordinatorState::new(allocator, config.retry.clone(), config.metrics)
        .on_model_adopted(Box::new(move |update| {
            tracing::debug!(
                shard = index,
                target_model = ?update.target,
                version = update.version,
                "coordinator adopted a model version"
            );
        }));
    // The lineage graph records every attempt, retried ones included.
    let coordinator = if config.lineage.as_ref().is_some_and(|l| l.enabled) {
        coordinator.with_attempt_records()
    } else {
        coordinator
    };
    Ok(PipelineParts {
        // What can never run is refused at intake, from every source, by
        // the same check as HTTP submissions.
        validator: Validator::new(config.limits.clone(), index, started_at_us).with_admission({
            let handlers = Arc::clone(handlers);
            let remote_agents = config.rabbitmq.as_ref().is_some_and(|r| r.agents);
            Arc::new(move |task| handlers.check(task, remote_agents))
        }),
        coordinator,
        backend: LocalBackend::new(
            Arc::clone(handlers),
            runtime.clone(),
            config.limits.max_result_bytes,
        ),
        emit_metrics: config.metrics,
        screen: None,
    })
}

/// The learner's pieces on worker `index` when `[learner]` is enabled: the
/// learner itself on worker 0 (on the configured device), the executor
/// classes everywhere.
pub fn learner_parts(config: &Config, index: usize) -> Result<Option<LearnerParts>, String> {
    if !config.learner.enabled {
        return Ok(None);
    }
    let learner = if index == 0 {
        let learner = Learner::new(&config.learner).map_err(|e| e.to_string())?;
        tracing::info!(device = %learner.device(), "learner started");
        Some(learner)
    } else {
        None
    };
    Ok(Some(LearnerParts {
        learner,
        executor_classes: config
            .executor_specs()
            .iter()
            .map(|s| (s.id.clone(), s.class().to_string()))
            .collect(),
    }))
}

/// Runs one timely worker until its inbox is closed and its work is done.
pub fn run_worker(worker: &mut Worker, ctx: &WorkerContext) -> Result<(), String> {
    let index = worker.index();
    let peers = worker.peers();
    let inbox = ctx
        .inboxes
        .lock()
        .map_err(|_| "inbox lock poisoned".to_string())?
        .get_mut(index - ctx.first_worker)
        .and_then(Option::take)
        .ok_or_else(|| format!("no inbox for worker {index}"))?;
    inbox.register_current_thread();

    let parts = pipeline_parts(
        &ctx.config,
        index,
        peers,
        &ctx.handlers,
        &ctx.runtime,
        ctx.started_at_us,
    )?;

    // Assignments for agents that joined through the broker go there; the
    // live table hears of every attempt either way.
    let parts = PipelineParts {
        backend: TrackingBackend::new(
            RoutingBackend::new(
                parts.backend,
                ctx.agents.as_ref().map(|hub| hub.worker_link(index as u32)),
            ),
            ctx.live.clone(),
            ctx.config.retry.clone(),
        ),
        validator: parts.validator,
        coordinator: parts.coordinator,
        emit_metrics: parts.emit_metrics,
        // Broker deliveries are admitted before they run; a different task
        // under a taken id is dead-lettered as a duplicate.
        screen: Some(crate::screen::duplicate_screen(Arc::clone(&ctx.store))),
    };

    let learning = learner_parts(&ctx.config, index)?;
    let probe = ProbeHandle::new();
    let (mut records_in, mut models_in, mut control_in) = worker.dataflow::<Epoch, _, _>(|scope| {
        let (records_in, records) = scope.new_input::<Vec<SourceRecord>>();
        let (models_in, models) = scope.new_input::<Vec<ModelUpdate>>();
        let (control_in, control) = scope.new_input::<Vec<ControlCommand>>();
        let learning_streams = learning_pipeline(records, models, control, parts, learning);
        let streams = learning_streams.pipeline;
        let store = Arc::clone(&ctx.store);
        sink_batches(learning_streams.publications, "ModelRegistry", move |published: &mut Vec<Publication>| {
            for p in published.drain(..) {
                let record = ModelRecord {
                    created_at_ms: now_ms(),
                    update: p.update,
                    metrics: p.metrics,
                };
                if let Err(e) = store.put_model(&record) {
                    tracing::error!(error = %e, version = record.update.version, "storing a model version failed");
                }
            }
        });

        let exporter = Arc::clone(&ctx.exporter);
        let (store, stats, acks) = (Arc::clone(&ctx.store), Arc::clone(&ctx.stats), ctx.acks.clone());
        let (files, store_sinks) = (Arc::clone(&ctx.files), Arc::clone(&ctx.store_sinks));
        let (live, task_spans) = (ctx.live.clone(), ctx.task_spans.clone());
        sink_batches(streams.finals.probe_with(&probe), "RecordResults", move |finals: &mut Vec<Completion>| {
            // The configured export and graph writes land before anything is acknowledged.
            if let Err(e) = store_sinks.record(finals) {
                tracing::error!(error = %e, count = finals.len(), "store sinks failed; sources will redeliver");
                finals.clear();
                return;
            }
            match store.record_finished(finals) {
                Ok(fresh) => {
                    live.finished(finals.iter().map(|c| c.task.id.as_str()));
                    // A redelivered or resumed task that had already finished
                    // is acknowledged again but not reported twice.
                    if files.results.is_some() {
                        let newly: Vec<&Completion> =
                            finals.iter().zip(&fresh).filter(|(_, new)| **new).map(|(c, _)| c).collect();
                        FileSinks::write(&files.results, &newly);
                    }
                    stats.record_finals(finals);
                    exporter.record_finals(finals);
                    if let Some(spans) = &task_spans {
                        spans.record_finals(finals);
                    }
                    acks.finished(finals, &fresh);
                }
                Err(e) => tracing::error!(error = %e, count = finals.len(), "recording results failed; sources will redeliver"),
            }
            finals.clear();
        });
        // Retried attempts go to the lineage graph (finals reach it above);
        // the worker waits while the graph is down, as for finals.
        let store_sinks = Arc::clone(&ctx.store_sinks);
        sink_batches(streams.retried.probe_with(&probe), "RecordAttempts", move |retried: &mut Vec<Completion>| {
            if let Err(e) = store_sinks.record_attempts(retried) {
                tracing::error!(error = %e, count = retried.len(), "lineage graph: retried attempts not recorded");
            }
            retried.clear();
        });
        let (store, stats, acks) = (Arc::clone(&ctx.store), Arc::clone(&ctx.stats), ctx.acks.clone());
        let files = Arc::clone(&ctx.files);
        let (live, task_spans) = (ctx.live.clone(), ctx.task_spans.clone());
        sink_batches(streams.rejections.probe_with(&probe), "DeadLetter", move |rejections: &mut Vec<Rejection>| {
            match store.record_rejections(rejections) {
                Ok(()) => {
                    live.finished(rejections.iter().filter_map(|r| r.task_id.as_deref()));
                    FileSinks::write(&files.dead_letters, rejections);
                    stats.record_rejections(rejections.len());
                    if let Some(spans) = &task_spans {
                        spans.record_rejections(rejections);
                    }
                    acks.rejected(rejections);
                }
                Err(e) => tracing::error!(error = %e, count = rejections.len(), "recording rejections failed"),
            }
            rejections.clear();
        });
        if !ctx.config.queries.is_empty() {
            continuous_queries(streams.metrics.clone(), &ctx.config.queries, ctx.queries.clone());
        }
        let exporter = Arc::clone(&ctx.exporter);
        sink_batches(streams.metrics, "Metrics", move |metrics| {
            exporter.observe(metrics);
            metrics.clear();
        });
        let book = ctx.reservations.clone();
        sink_batches(streams.reservations, "Reservations", move |statuses| {
            book.record(statuses);
            statuses.clear();
        });
        (records_in, models_in, control_in)
    });

    let mut epoch = now_ms();
    records_in.advance_to(epoch);
    models_in.advance_to(epoch);
    control_in.advance_to(epoch);
    loop {
        let mut moved = 0;
        for message in inbox.receiver.try_iter().take(INBOX_BATCH) {
            match message {
                WorkerMessage::Record(record) => records_in.send(record),
                WorkerMessage::Model(update) => models_in.send(update),
                WorkerMessage::Control(command) => control_in.send(command),
            }
            moved += 1;
        }
        let now = now_ms();
        if now > epoch {
            epoch = now;
            records_in.advance_to(epoch);
            models_in.advance_to(epoch);
            control_in.advance_to(epoch);
        }
        if moved == 0 {
            if inbox.is_closed() && inbox.receiver.is_empty() {
                break;
            }
            worker.step_or_park(Some(Duration::from_millis(5)));
        } else {
            worker.step();
        }
    }
    drop(records_in);
    drop(models_in);
    drop(control_in);
    while !probe.done() {
        if ctx.abandon.load(std::sync::atomic::Ordering::Acquire) {
            // Shutdown gave up on in-flight work: drop the dataflow so the
            // worker stops now; its tasks stay queued in the store.
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
            break;
        }
        worker.step_or_park(Some(Duration::from_millis(5)));
    }
    Ok(())
}

fn now_ms() -> Epoch {
    tidewater_operators::model::now_micros() / 1000
}
