//! The library API: build a pipeline from a config and handlers, start it,
//! submit tasks in process, and shut it down cleanly.
//!
//! ```no_run
//! use tidewater::{Config, HandlerOutput, Pipeline};
//! use tidewater_operators::model::{ResourceRequest, Task};
//!
//! let mut config = Config::default();
//! config.http.enabled = false;
//! let pipeline = Pipeline::builder(config)
//!     .handler("greet", |task| async move {
//!         println!("hello from {}", task.id);
//!         Ok(HandlerOutput::default())
//!     })
//!     .start()?;
//! pipeline.submit(Task::new("t-1", "greet", ResourceRequest::cpu(100, 0)))?;
//! let summary = pipeline.shutdown()?;
//! assert_eq!(summary.finished, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tidewater_connectors::store::{
    Admission, EmbeddedStore, MemoryStore, MongoStore, MongoStoreConfig, TaskRecord, TaskStore,
};
use tidewater_operators::model::{now_micros, ControlCommand, Name, RejectReason, Task};
use tidewater_operators::validate::check_task;

use crate::acks::AckRegistry;
use crate::api::{ApiContext, HttpServer};
use crate::brokers::Brokers;
use crate::config::{Config, StoreKind};
use crate::error::RuntimeError;
use crate::executor_book::ExecutorBook;
use crate::handlers::{HandlerRegistry, HandlerResult};
use crate::ingress::{Ingress, IngressError};
use crate::launch::{run_worker, FileSinks, WorkerContext};
use crate::live::LiveTasks;
use crate::metric_snapshots::MetricSnapshots;
use crate::monitoring::{spawn_alerts, AlertBoard, Exporter, MonitoringApi};
use crate::remote_backend::AgentHub;
use crate::reservations::ReservationBook;
use crate::stats::{PipelineStats, StatsSnapshot};
use crate::telemetry::Telemetry;
use tidewater_dataflows::monitor::{QueryResult, QueryResults};

/// Entry point of the library API.
pub struct Pipeline;

impl Pipeline {
    /// Starts building a pipeline with `config` and the built-in handlers.
    pub fn builder(config: Config) -> PipelineBuilder {
        let handlers =
            HandlerRegistry::with_builtins(&config.handlers, config.limits.max_result_bytes);
        PipelineBuilder {
            config,
            handlers,
            store: None,
            telemetry: None,
        }
    }
}

/// Collects handlers and options before [`start`](PipelineBuilder::start).
pub struct PipelineBuilder {
    config: Config,
    handlers: HandlerRegistry,
    store: Option<Arc<dyn TaskStore>>,
    telemetry: Option<Telemetry>,
}

impl PipelineBuilder {
    /// Registers an async handler (a Rust closure returning a future) for
    /// tasks of `kind`. It runs on the tokio runtime with the task's timeout.
    pub fn handler<F, Fut>(mut self, kind: &str, handler: F) -> Self
    where
        F: Fn(Task) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.handlers
            .register_async(kind, move |task| Box::pin(handler(task)));
        self
    }

    /// Registers an inline handler: cheap, non-blocking work run on the
    /// dataflow worker thread itself.
    pub fn inline_handler<F>(mut self, kind: &str, handler: F) -> Self
    where
        F: Fn(&Task) -> HandlerResult + Send + Sync + 'static,
    {
        self.handlers.register_inline(kind, handler);
        self
    }

    /// Exports task spans through `telemetry` (already started, for example
    /// so that the caller's tracing subscriber has its
    /// [`layer`](Telemetry::layer) from the start) instead of starting an
    /// exporter from `[telemetry]`.
    pub fn telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    /// Uses `store` instead of the one the config names.
    pub fn store(mut self, store: Arc<dyn TaskStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// Starts the workers, the tokio runtime and (if enabled) the HTTP API,
    /// and resumes tasks the store holds as accepted but unfinished.
    pub fn start(self) -> Result<RunningPipeline, RuntimeError> {
        let config = self.config;
        config.validate()?;
        let (timely_config, first_worker, local_workers) = timely_config(&config)?;
        let telemetry = match self.telemetry {
            Some(telemetry) => Some(telemetry),
            None => config
                .telemetry
                .as_ref()
                .map(Telemetry::start)
                .transpose()?,
        };
        let task_spans = telemetry.as_ref().map(Telemetry::task_spans);
        let store = match self.store {
            Some(store) => store,
            None => open_store(&config)?,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tidewater-io")
            .enable_all()
            .build()
            .map_err(|source| RuntimeError::Io {
                context: "starting the tokio runtime".into(),
                source,
            })?;
        let files = FileSinks::open(
            config.sinks.results_file.as_deref(),
            config.sinks.dead_letter_file.as_deref(),
        )
        .map_err(|source| RuntimeError::Io {
            context: "opening sink files".into(),
            source,
        })?;
        let (ingress, inboxes) = Ingress::new(local_workers, first_worker);
        let executors = ExecutorBook::new(config.executor_specs(), now_micros());
        let observed = executors.clone();
        ingress.observe_control(Box::new(move |c| observed.observe(c, now_micros())));
        let alert_board = AlertBoard::new();
        let stats = Arc::new(PipelineStats::default());
        ingress.bound_queue(config.limits.max_queued, Arc::clone(&stats));
        let acks = AckRegistry::default();
        let reservations = ReservationBook::new();
        let queries = QueryResults::new(&config.queries);
        let exporter = Arc::new(Exporter::new(&config.queries, queries.clone())?);
        let config = Arc::new(config);
        let handlers = Arc::new(self.handlers);
        let live = LiveTasks::new();
        let abandon = Arc::new(AtomicBool::new(false));
        let draining = Arc::new(AtomicBool::new(false));
        // Remote executors: agents over the broker, and executors that
        // join over HTTP and pull their work.
        let agents = (config.http.enabled || config.rabbitmq.as_ref().is_some_and(|r| r.agents))
            .then(|| Arc::new(AgentHub::default()));
        let run_name = match &config.cluster {
            Some(cluster) => format!("{}-p{}", now_micros() / 1000, cluster.process),
            None => format!("{}", now_micros() / 1000),
        };
        let store_sinks = Arc::new(
            crate::store_sinks::StoreSinks::open(&config, runtime.handle(), &run_name)
                .map_err(|e| RuntimeError::Store(e.to_string()))?,
        );
        let metric_snapshots = match &config.export {
            Some(export) => MetricSnapshots::start(
                Duration::from_millis(export.metrics_interval_ms),
                queries.clone(),
                Arc::clone(&exporter),
                Arc::clone(&store_sinks),
            )
            .map_err(|source| RuntimeError::Io {
                context: "starting the metric snapshot thread".into(),
                source,
            })?,
            None => None,
        };
        let context = Arc::new(WorkerContext {
            config: Arc::clone(&config),
            handlers: Arc::clone(&handlers),
            runtime: runtime.handle().clone(),
            store: Arc::clone(&store),
            stats: Arc::clone(&stats),
            inboxes: Mutex::new(inboxes.into_iter().map(Some).collect()),
            first_worker,
            started_at_us: now_micros(),
            files: Arc::new(files),
            acks: acks.clone(),
            reservations: reservations.clone(),
            queries: queries.clone(),
            exporter: Arc::clone(&exporter),
            agents: agents.clone(),
            store_sinks: Arc::clone(&store_sinks),
            live: live.clone(),
            abandon: Arc::clone(&abandon),
            task_spans: task_spans.clone(),
        });
        let guards = timely::execute(timely_config, move |worker| {
            let result = run_worker(worker, &context);
            if let Err(e) = &result {
                tracing::error!(worker = worker.index(), error = %e, "worker stopped");
            }
            result
        })
        .map_err(RuntimeError::Workers)?;

        let resumed = store
            .unfinished()
            .map_err(|e| RuntimeError::Store(e.to_string()))?;
        // Broker deliveries are left to the broker, which redelivers what
        // was not acknowledged; the rest resume from the store.
        let brokers = config.rabbitmq.is_some() || config.kafka.is_some();
        let resumed: Vec<_> = resumed
            .into_iter()
            .filter(|task| crate::screen::resumable(task, brokers))
            .map(|mut task| {
                task.ack = tidewater_operators::model::AckToken::NONE;
                task
            })
            .collect();
        if !resumed.is_empty() {
            tracing::info!(
                count = resumed.len(),
                "resuming accepted tasks that had not finished"
            );
        }
        for task in resumed {
            ingress
                .submit_task("resume", task)
                .map_err(|e| RuntimeError::Workers(e.to_string()))?;
        }

        let brokers = Brokers::start(
            &config,
            runtime.handle(),
            &ingress,
            &acks,
            &store,
            agents.as_ref(),
        )?;

        let http = if config.http.enabled {
            Some(HttpServer::start(
                &runtime,
                &config,
                ApiContext {
                    ingress: ingress.clone(),
                    store: Arc::clone(&store),
                    stats: Arc::clone(&stats),
                    live: live.clone(),
                    draining: Arc::clone(&draining),
                    handlers: Arc::clone(&handlers),
                    reservations: reservations.clone(),
                    executors,
                    agents: agents.clone(),
                    task_spans,
                    monitoring: MonitoringApi {
                        queries: queries.clone(),
                        exporter: Arc::clone(&exporter),
                        alerts: alert_board.clone(),
                    },
                },
            )?)
        } else {
            None
        };
        let alerts = (!config.alerts.is_empty()).then(|| {
            spawn_alerts(
                runtime.handle(),
                config.alerts.clone(),
                queries.clone(),
                Arc::clone(&exporter),
                brokers.alert_sinks(),
                alert_board,
            )
        });
        Ok(RunningPipeline {
            store_sinks,
            metric_snapshots,
            queries,
            exporter,
            alerts,
            config,
            ingress,
            store,
            stats,
            acks,
            guards: Some(guards),
            brokers,
            http,
            runtime: Some(runtime),
            handlers,
            live,
            abandon,
            draining,
            telemetry,
        })
    }
}

/// Opens the store `config` names (with its encryption keys), as a
/// pipeline would: also what `tidewater token` uses when given a config.
pub fn open_store(config: &Config) -> Result<Arc<dyn TaskStore>, RuntimeError> {
    let keys = match &config.store.encryption {
        Some(encryption) => Some(Arc::new(
            tidewater_connectors::store::KeyRing::load(encryption)
                .map_err(|e| RuntimeError::Store(e.to_string()))?,
        )),
        None => None,
    };
    match config.store.kind {
        StoreKind::Memory => Ok(Arc::new(MemoryStore::new())),
        // Processes of a cluster share the database.
        StoreKind::Mongodb => {
            let url = config.store.mongodb_url.clone().unwrap_or_default();
            let mongo = MongoStoreConfig::new(url, &config.store.database);
            let store = match keys {
                Some(keys) => MongoStore::open_encrypted(&mongo, keys),
                None => MongoStore::open(&mongo),
            }
            .map_err(|e| RuntimeError::Store(e.to_string()))?;
            Ok(Arc::new(store))
        }
        StoreKind::Embedded => {
            let mut path = config.store.path.clone();
            if let Some(cluster) = &config.cluster {
                let mut name = path.file_name().unwrap_or_default().to_os_string();
                name.push(format!(".p{}", cluster.process));
                path.set_file_name(name);
            }
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| RuntimeError::Io {
                    context: format!("creating {}", parent.display()),
                    source,
                })?;
            }
            let store = match keys {
                Some(keys) => EmbeddedStore::open_encrypted(&path, keys),
                None => EmbeddedStore::open(&path),
            }
            .map_err(|e| RuntimeError::Store(e.to_string()))?;
            Ok(Arc::new(store))
        }
    }
}

/// Timely's configuration, this process's first global worker index and its
/// local worker count.
fn timely_config(config: &Config) -> Result<(timely::Config, usize, usize), RuntimeError> {
    let workers = config.workers;
    match &config.cluster {
        None => Ok((timely::Config::process(workers), 0, workers)),
        Some(cluster) => {
            let addresses = cluster.resolve_addresses()?;
            let communication = timely::CommunicationConfig::Cluster {
                threads: workers,
                process: cluster.process,
                addresses,
                report: false,
                zerocopy: false,
            };
            let timely_config = timely::Config {
                communication,
                worker: timely::WorkerConfig::default(),
            };
            Ok((timely_config, cluster.process * workers, workers))
        }
    }
}

/// A started pipeline.
pub struct RunningPipeline {
    /// The export and graph sinks, finished at stop.
    store_sinks: Arc<crate::store_sinks::StoreSinks>,
    /// Takes metric snapshots into the export, with a last one at stop.
    metric_snapshots: Option<MetricSnapshots>,
    queries: QueryResults,
    exporter: Arc<Exporter>,
    alerts: Option<tokio::task::JoinHandle<()>>,
    config: Arc<Config>,
    ingress: Ingress,
    store: Arc<dyn TaskStore>,
    stats: Arc<PipelineStats>,
    acks: AckRegistry,
    guards: Option<timely::communication::WorkerGuards<Result<(), String>>>,
    brokers: Brokers,
    http: Option<HttpServer>,
    runtime: Option<tokio::runtime::Runtime>,
    handlers: Arc<HandlerRegistry>,
    live: LiveTasks,
    /// Set when shutdown stops waiting for in-flight work.
    abandon: Arc<AtomicBool>,
    /// Set while draining: no new tasks are taken.
    draining: Arc<AtomicBool>,
    /// The OTLP exporter, when `[telemetry]` is set; flushed at stop.
    telemetry: Option<Telemetry>,
}

impl RunningPipeline {
    /// Submits a task through the in-process API. It is validated in the
    /// dataflow like any other record; invalid tasks are rejected there.
    /// A task no handler could run (unknown kind, bad built-in payload,
    /// deadline past) is refused at once. Its acceptance is recorded first,
    /// so a restart resumes it; an id already submitted is not run again.
    pub fn submit(&self, mut task: Task) -> Result<(), SubmitError> {
        if task.submitted_at_us == 0 {
            task.submitted_at_us = now_micros();
        }
        if check_task(&task, &self.config.limits).is_ok() {
            let remote_agents = self.config.rabbitmq.as_ref().is_some_and(|r| r.agents);
            self.handlers
                .check(&task, remote_agents)
                .map_err(SubmitError::Refused)?;
            let admitted = self
                .store
                .admit(std::slice::from_ref(&task))
                .map_err(|e| SubmitError::Store(e.to_string()))?;
            if let Some(Admission::Existing { record, same_body }) = admitted.into_iter().next() {
                return Err(SubmitError::Duplicate { record, same_body });
            }
        }
        self.ingress.submit_task("api", task)?;
        Ok(())
    }

    /// The task's record as it stands: its stored record with its live
    /// state (`running`, `retrying`), and its result once it has one.
    pub fn task(&self, id: &str) -> Result<Option<TaskRecord>, RuntimeError> {
        let stored = self
            .store
            .get(id)
            .map_err(|e| RuntimeError::Store(e.to_string()))?;
        Ok(match stored {
            Some(record) => Some(crate::api::tasks::overlaid(&self.live, record)),
            None => self.live.get(id).map(|entry| entry.to_record()),
        })
    }

    /// Waits until task `id` has a final record (its outcome and result),
    /// or `timeout` passes; returns the record as it then stands.
    pub fn result(&self, id: &str, timeout: Duration) -> Result<Option<TaskRecord>, RuntimeError> {
        let deadline = Instant::now() + timeout;
        loop {
            let record = self.task(id)?;
            let done = record.as_ref().is_some_and(|r| r.state.is_final());
            if done || Instant::now() >= deadline {
                return Ok(record);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// A continuous query's latest result.
    pub fn query(&self, name: &str) -> Option<QueryResult> {
        self.queries.get(name)
    }

    /// The metric families `GET /metrics` serves.
    pub fn metric_families(&self) -> Vec<String> {
        self.exporter.families()
    }

    /// The Prometheus exposition text (what `GET /metrics` serves).
    pub fn metrics_text(&self) -> Result<String, RuntimeError> {
        self.exporter.render()
    }

    /// Sends a control command to every coordinator: cancel a task,
    /// register, heartbeat or remove an executor, reserve capacity.
    pub fn control(&self, command: ControlCommand) -> Result<(), SubmitError> {
        self.ingress.submit_control(command)?;
        Ok(())
    }

    /// Cancels a task wherever it is (queued, waiting to retry, running);
    /// its final outcome is then `cancelled`, unless it already ended.
    pub fn cancel(&self, id: &str) -> Result<(), SubmitError> {
        self.control(ControlCommand::Cancel {
            task: Name::from(id),
        })
    }

    /// A handle for feeding records from other sources.
    pub fn ingress(&self) -> Ingress {
        self.ingress.clone()
    }

    /// The store in use.
    pub fn store(&self) -> Arc<dyn TaskStore> {
        Arc::clone(&self.store)
    }

    /// Run counters.
    pub fn stats(&self) -> Arc<PipelineStats> {
        Arc::clone(&self.stats)
    }

    /// The broker connectors the config started.
    pub fn brokers(&self) -> &Brokers {
        &self.brokers
    }

    /// Acknowledgement callbacks, for sources that need them.
    pub fn acks(&self) -> AckRegistry {
        self.acks.clone()
    }

    /// The tokio runtime's handle, for sources to run on.
    pub fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }

    /// The OpenTelemetry exporter, when `[telemetry]` is set or one was
    /// given to the builder.
    pub fn telemetry(&self) -> Option<&Telemetry> {
        self.telemetry.as_ref()
    }

    /// Where the HTTP API listens, if it is enabled.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().map(HttpServer::local_addr)
    }

    /// Waits until at least `finished + rejected` records have an outcome, or
    /// `timeout` passes. Returns whether the count was reached.
    pub fn wait_for_outcomes(&self, count: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.stats.finished() + self.stats.rejected() < count {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Starts draining: brokers stop consuming and the HTTP API refuses new
    /// tasks (`503`), while status, listings and cancels keep working and
    /// in-flight tasks run on. See [`crate::shutdown`].
    pub fn begin_drain(&self) {
        self.draining.store(true, Ordering::Release);
        if let Some(runtime) = &self.runtime {
            self.brokers.stop_consuming(runtime.handle());
        }
    }

    /// Whether every record this process took in has its outcome (nothing
    /// in flight here).
    pub fn is_idle(&self) -> bool {
        self.stats.outcomes() >= self.ingress.records_sent()
    }

    /// Gives up on in-flight work: [`shutdown`](Self::shutdown) then stops
    /// the workers without waiting for it. Running handlers are stopped
    /// (a command's process is killed) and their tasks stay queued in the
    /// store, so the next start runs them again; broker messages stay
    /// unacknowledged and are redelivered.
    pub fn abandon_in_flight(&self) {
        self.abandon.store(true, Ordering::Release);
    }

    /// Stops taking input, lets every accepted task finish (unless
    /// [`abandon_in_flight`](Self::abandon_in_flight) was called), stops the
    /// HTTP API and the workers, and returns the final counters.
    pub fn shutdown(mut self) -> Result<StatsSnapshot, RuntimeError> {
        self.stop()
    }

    fn stop(&mut self) -> Result<StatsSnapshot, RuntimeError> {
        if let Some(alerts) = self.alerts.take() {
            alerts.abort();
        }
        if let Some(http) = self.http.take() {
            http.stop();
        }
        if let Some(runtime) = &self.runtime {
            self.brokers.stop_consuming(runtime.handle());
        }
        self.ingress.close();
        if let Some(guards) = self.guards.take() {
            for result in guards.join() {
                match result {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) | Err(e) => return Err(RuntimeError::WorkerFailed(e)),
                }
            }
        }
        // Every outcome is recorded: the last snapshot counts them all.
        if let Some(snapshots) = self.metric_snapshots.take() {
            snapshots.stop();
        }
        if let Err(e) = self.store_sinks.finish() {
            tracing::error!(error = %e, "export: finishing the last files failed; their journals stay for the next start");
        }
        if let Some(runtime) = &self.runtime {
            self.brokers.finish(runtime.handle());
        }
        if let Some(runtime) = self.runtime.take() {
            // Abandoned handlers are dropped here (commands killed with them).
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
        // Every task span is recorded: export what the batch still holds.
        if let Some(telemetry) = self.telemetry.take() {
            if let Err(e) = telemetry.shutdown() {
                tracing::warn!(error = %e, "telemetry: the last spans were not exported");
            }
        }
        Ok(self.stats.snapshot())
    }
}

impl Drop for RunningPipeline {
    /// A pipeline dropped without [`shutdown`](RunningPipeline::shutdown)
    /// lets its in-flight tasks finish for up to `shutdown.drain_timeout_ms`,
    /// then stops and leaves the rest queued: dropping never hangs.
    fn drop(&mut self) {
        if self.guards.is_some() {
            let deadline =
                Instant::now() + Duration::from_millis(self.config.shutdown.drain_timeout_ms);
            while !self.is_idle() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if !self.is_idle() {
                tracing::warn!("pipeline dropped with tasks in flight; they stay queued");
                self.abandon_in_flight();
            }
            if let Err(e) = self.stop() {
                tracing::error!(error = %e, "pipeline shutdown on drop failed");
            }
        }
    }
}

/// Why an in-process submission was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    /// The pipeline no longer takes input.
    #[error(transparent)]
    Closed(#[from] IngressError),
    /// Recording the acceptance failed.
    #[error("store: {0}")]
    Store(String),
    /// No handler could ever run the task.
    #[error("refused: {0}")]
    Refused(RejectReason),
    /// A task with this id was already submitted; it is not run again.
    #[error("task {:?} was already submitted (state {}){}", record.id, record.state.as_str(), if *same_body { "" } else { " with a different body" })]
    Duplicate {
        /// The existing record.
        record: Box<TaskRecord>,
        /// Whether the earlier submission asked for the same.
        same_body: bool,
    },
}
