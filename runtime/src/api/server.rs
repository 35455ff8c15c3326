//! The HTTP server: what its handlers share ([`ApiContext`]), the router
//! that merges every endpoint group, and the running [`HttpServer`].
//!
//! - `GET /healthz`: liveness.
//! - `POST /v1/tasks` ([`super::submit`]); `GET /v1/tasks/{id}`,
//!   `GET /v1/tasks`, `GET /v1/stats` ([`super::tasks`]).
//! - the monitoring endpoints of [`crate::monitoring`]: `/metrics`,
//!   `/v1/queries`, `/v1/queries/{name}`.
//! - the control endpoints of [`super::control`]: cancel a task
//!   (`DELETE /v1/tasks/{id}`), executors joining, heartbeating and
//!   leaving, reservations.
//! - the read endpoints of [`super::inventory`]: `GET /v1/executors`,
//!   `GET /v1/reservations`, `GET /v1/models`.
//! - the lineage queries of [`super::lineage`] and the dashboard of
//!   [`super::ui`] at `/ui/`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;

use tidewater_connectors::store::TaskStore;
use tidewater_operators::model::now_micros;
use tidewater_operators::validate::Validator;

use super::peers::Peers;
use super::{control, inventory, lineage, submit, tasks, ui};
use crate::config::Config;
use crate::error::RuntimeError;
use crate::handlers::HandlerRegistry;
use crate::ingress::Ingress;
use crate::live::LiveTasks;
use crate::stats::PipelineStats;

/// What the HTTP API reads and writes: the pipeline's shared parts.
#[derive(Clone)]
pub struct ApiContext {
    /// Where tasks and commands go.
    pub ingress: Ingress,
    /// Task records.
    pub store: Arc<dyn TaskStore>,
    /// Run counters.
    pub stats: Arc<PipelineStats>,
    /// Live task states.
    pub live: LiveTasks,
    /// Set while the process drains: new tasks are refused with `503`.
    pub draining: Arc<std::sync::atomic::AtomicBool>,
    /// Handlers, to refuse at submission what none could run.
    pub handlers: Arc<HandlerRegistry>,
    /// Reservation statuses.
    pub reservations: crate::reservations::ReservationBook,
    /// Executors of this process.
    pub executors: crate::executor_book::ExecutorBook,
    /// Continuous query results, the exporter and firing alerts.
    pub monitoring: crate::monitoring::MonitoringApi,
    /// Remote executors, for those that join over HTTP and pull their work.
    pub agents: Option<Arc<crate::remote_backend::AgentHub>>,
}

/// What every handler of this server reads: the context, the validator
/// for submissions and the cluster's other processes.
pub(crate) struct AppState {
    pub(crate) api: ApiContext,
    pub(crate) validator: Mutex<Validator>,
    /// Group commits of submissions' admissions.
    pub(crate) admitter: super::admitter::Admitter,
    /// Whether remote agents (with their own allowlists) may run commands.
    pub(crate) remote_agents: bool,
    /// The cluster's other processes.
    pub(crate) peers: Peers,
}

/// A running HTTP server.
pub struct HttpServer {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    runtime: tokio::runtime::Handle,
}

impl HttpServer {
    /// Binds `config.http.listen` and serves on `runtime`.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        config: &Config,
        api: ApiContext,
    ) -> Result<HttpServer, RuntimeError> {
        let peers = Peers::new(
            &config.http.peers,
            config.cluster.as_ref().map_or(0, |c| c.process),
        );
        let control = control::routes(control::ControlApi {
            ingress: api.ingress.clone(),
            store: Arc::clone(&api.store),
            live: api.live.clone(),
            peers: peers.clone(),
            default_heartbeat_ttl_ms: config.allocator.heartbeat_ttl_ms,
            reservations: api.reservations.clone(),
            agents: api.agents.clone(),
        });
        let inventory = inventory::routes(inventory::InventoryApi {
            executors: api.executors.clone(),
            reservations: api.reservations.clone(),
            live: api.live.clone(),
            store: Arc::clone(&api.store),
        });
        let monitoring = crate::monitoring::routes(api.monitoring.clone());
        let admitter =
            super::admitter::Admitter::start(Arc::clone(&api.store)).map_err(|source| {
                RuntimeError::Io {
                    context: "starting the admitter thread".into(),
                    source,
                }
            })?;
        let state = Arc::new(AppState {
            admitter,
            api,
            validator: Mutex::new(Validator::for_source(
                config.limits.clone(),
                "h",
                now_micros(),
            )),
            remote_agents: config.rabbitmq.as_ref().is_some_and(|r| r.agents),
            peers,
        });
        let app = router(state)
            .merge(control)
            .merge(inventory)
            .merge(ui::routes())
            .merge(monitoring)
            .merge(lineage::routes(config))
            .layer(DefaultBodyLimit::max(config.http.max_body_bytes));
        let listen = config.http.listen.clone();
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&listen))
            .map_err(|source| RuntimeError::Io {
                context: format!("binding HTTP on {listen}"),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| RuntimeError::Io {
            context: "reading the HTTP address".into(),
            source,
        })?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = runtime.spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        tracing::info!(%addr, "HTTP API listening");
        Ok(HttpServer {
            addr,
            shutdown,
            task,
            runtime: runtime.handle().clone(),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections and waits for open requests to finish.
    pub fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = self.runtime.block_on(self.task);
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/v1/tasks", get(tasks::list).post(submit::submit))
        .route("/v1/tasks/{id}", get(tasks::get_task))
        .route("/v1/stats", get(tasks::stats))
        .with_state(state)
}
