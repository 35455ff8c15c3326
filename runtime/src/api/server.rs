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
//!   [`super::ui`] at `/ui/`; API tokens at `/v1/tokens` ([`super::tokens`]).
//!
//! Every route sits behind [`super::guard`] (authentication, roles, the
//! audit log), and the server speaks HTTPS when `http.tls` is set
//! ([`super::tls`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::DefaultBodyLimit;
use axum::middleware;
use axum::routing::get;
use axum::Router;
use tokio::sync::oneshot;

use tidewater_connectors::store::TaskStore;
use tidewater_operators::model::now_micros;
use tidewater_operators::validate::Validator;

use super::guard::{self, Guard};
use super::peers::Peers;
use super::tls::TlsListener;
use super::{control, inventory, lineage, submit, tasks, tokens, ui};
use crate::auth::{AuditLog, Authenticator};
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
    /// Task spans for OpenTelemetry, for the submissions refused here.
    pub task_spans: Option<crate::telemetry::TaskSpans>,
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
    /// Rate and backlog bounds on submissions.
    pub(crate) limits: super::submit_limits::SubmitLimits,
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
            config.http.tls.as_ref(),
        )?;
        let authenticator = Arc::new(
            Authenticator::from_config(&config.auth, &config.http.listen, Arc::clone(&api.store))
                .map_err(|e| RuntimeError::Auth(e.to_string()))?,
        );
        let audit = match &config.auth.audit_log {
            Some(path) => AuditLog::to_file(path).map_err(|source| RuntimeError::Io {
                context: format!("opening the audit log {}", path.display()),
                source,
            })?,
            None => AuditLog::tracing_only(),
        };
        let authenticator_mode = authenticator.mode();
        let guard = Arc::new(Guard {
            authenticator: Arc::clone(&authenticator),
            audit,
        });
        let control = control::routes(control::ControlApi {
            ingress: api.ingress.clone(),
            store: Arc::clone(&api.store),
            live: api.live.clone(),
            peers: peers.clone(),
            default_heartbeat_ttl_ms: config.allocator.heartbeat_ttl_ms,
            reservations: api.reservations.clone(),
            agents: api.agents.clone(),
            reservation_tenants: Default::default(),
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
            validator: Mutex::new(Validator::for_source(
                config.limits.clone(),
                "h",
                now_micros(),
            )),
            remote_agents: config.rabbitmq.as_ref().is_some_and(|r| r.agents),
            limits: super::submit_limits::SubmitLimits::new(
                &config.limits,
                api.ingress.clone(),
                Arc::clone(&api.stats),
            ),
            peers,
            api,
        });
        let traced = config.telemetry.is_some();
        let app = router(state)
            .merge(control)
            .merge(inventory)
            .merge(ui::routes())
            .merge(monitoring)
            .merge(lineage::routes(config))
            .merge(tokens::routes(Arc::clone(&authenticator)))
            .layer(middleware::from_fn_with_state(guard, guard::guard))
            .layer(DefaultBodyLimit::max(config.http.max_body_bytes));
        let app = if traced {
            app.layer(middleware::from_fn(crate::telemetry::http::request_span))
        } else {
            app
        };
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
        let stopped = async move {
            let _ = stopped.await;
        };
        let task = match &config.http.tls {
            None => runtime.spawn(async move {
                let serve = axum::serve(listener, app).with_graceful_shutdown(stopped);
                if let Err(e) = serve.await {
                    tracing::error!(error = %e, "HTTP server failed");
                }
            }),
            Some(tls) => {
                let server_config = super::tls::server_config(tls)?;
                let listener = {
                    let _entered = runtime.enter();
                    TlsListener::new(listener, server_config).map_err(|source| {
                        RuntimeError::Io {
                            context: "starting the TLS listener".into(),
                            source,
                        }
                    })?
                };
                runtime.spawn(async move {
                    let serve = axum::serve(listener, app).with_graceful_shutdown(stopped);
                    if let Err(e) = serve.await {
                        tracing::error!(error = %e, "HTTPS server failed");
                    }
                })
            }
        };
        tracing::info!(
            %addr,
            tls = config.http.tls.is_some(),
            auth = authenticator_mode.as_str(),
            "HTTP API listening"
        );
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
