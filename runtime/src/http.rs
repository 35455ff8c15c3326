//! The HTTP API (axum): submit tasks, read their records, health.
//!
//! - `POST /v1/tasks`: one task object or an array of them. Each is
//!   validated at once; valid tasks are recorded as accepted and enter the
//!   pipeline; invalid ones are answered with their reason and also enter
//!   the pipeline's dead-letter path so that they are counted.
//! - `GET /v1/tasks/{id}`: the task's record.
//! - `GET /v1/stats`: run counters.
//! - `GET /healthz`: liveness.
//! - the monitoring endpoints of [`crate::monitoring`]: `/metrics`,
//!   `/v1/queries`, `/v1/queries/{name}`.
//! - the control endpoints of [`crate::control_http`]: cancel a task
//!   (`DELETE /v1/tasks/{id}`), executors joining, heartbeating and
//!   leaving, reservations.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use tidewater_connectors::store::TaskStore;
use tidewater_operators::model::{now_micros, AckToken, RejectReason, Task};
use tidewater_operators::validate::Validator;

use crate::config::Config;
use crate::error::RuntimeError;
use crate::ingress::Ingress;
use crate::stats::PipelineStats;

struct AppState {
    ingress: Ingress,
    store: Arc<dyn TaskStore>,
    stats: Arc<PipelineStats>,
    validator: Mutex<Validator>,
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
        ingress: Ingress,
        store: Arc<dyn TaskStore>,
        stats: Arc<PipelineStats>,
        reservations: crate::reservations::ReservationBook,
        monitoring: crate::monitoring::MonitoringApi,
    ) -> Result<HttpServer, RuntimeError> {
        let control = crate::control_http::routes(crate::control_http::ControlApi {
            ingress: ingress.clone(),
            store: Arc::clone(&store),
            default_heartbeat_ttl_ms: config.allocator.heartbeat_ttl_ms,
            reservations,
        });
        let state = Arc::new(AppState {
            ingress,
            store,
            stats,
            validator: Mutex::new(Validator::for_source(
                config.limits.clone(),
                "h",
                now_micros(),
            )),
        });
        let app = router(state)
            .merge(control)
            .merge(crate::monitoring::routes(monitoring))
            .merge(crate::lineage_http::routes(config))
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
        .route("/v1/tasks", post(submit))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/stats", get(stats))
        .with_state(state)
}

#[derive(Serialize)]
struct Rejected {
    index: usize,
    code: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct BatchAnswer {
    accepted: Vec<String>,
    rejected: Vec<Rejected>,
}

fn error(status: StatusCode, code: &str, reason: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "code": code, "reason": reason })),
    )
        .into_response()
}

async fn submit(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    let trimmed = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| body[i]);
    let is_batch = trimmed == Some(b'[');
    let items: Vec<Vec<u8>> = if is_batch {
        match serde_json::from_slice::<Vec<Box<RawValue>>>(&body) {
            Ok(items) => items
                .into_iter()
                .map(|raw| raw.get().as_bytes().to_vec())
                .collect(),
            Err(e) => {
                let reason = RejectReason::Malformed {
                    detail: e.to_string(),
                };
                let _ = state.ingress.submit_json("http", body.to_vec(), 0, 0);
                return error(StatusCode::BAD_REQUEST, reason.code(), reason.to_string());
            }
        }
    } else {
        vec![body.to_vec()]
    };

    let now = now_micros();
    let mut tasks: Vec<Task> = Vec::with_capacity(items.len());
    let mut rejected = Vec::new();
    {
        let Ok(mut validator) = state.validator.lock() else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "validator unavailable".into(),
            );
        };
        for (index, item) in items.into_iter().enumerate() {
            match validator.decode(&item, AckToken::NONE, now) {
                Ok(task) => tasks.push(task),
                Err(reason) => {
                    // The record also goes through the dataflow's decoder so that
                    // it reaches the dead-letter sink and the rejection counters.
                    let _ = state.ingress.submit_json("http", item, 0, 0);
                    rejected.push(Rejected {
                        index,
                        code: reason.code(),
                        reason: reason.to_string(),
                    });
                }
            }
        }
    }
    if !tasks.is_empty() {
        let store = Arc::clone(&state.store);
        let to_record = tasks.clone();
        let recorded = tokio::task::spawn_blocking(move || store.record_accepted(&to_record)).await;
        match recorded {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
        }
    }
    let accepted: Vec<String> = tasks.iter().map(|t| t.id.to_string()).collect();
    for task in tasks {
        if let Err(e) = state.ingress.submit_task("http", task) {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                e.to_string(),
            );
        }
    }
    if is_batch {
        return (StatusCode::OK, Json(BatchAnswer { accepted, rejected })).into_response();
    }
    match (accepted.first(), rejected.first()) {
        (Some(id), _) => {
            (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response()
        }
        (None, Some(r)) => error(StatusCode::BAD_REQUEST, r.code, r.reason.clone()),
        (None, None) => error(
            StatusCode::BAD_REQUEST,
            "empty",
            "no task in the request".into(),
        ),
    }
}

async fn get_task(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let store = Arc::clone(&state.store);
    let lookup = id.clone();
    match tokio::task::spawn_blocking(move || store.get(&lookup)).await {
        Ok(Ok(Some(record))) => Json(record).into_response(),
        Ok(Ok(None)) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no task with id {id:?}"),
        ),
        Ok(Err(e)) => error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

async fn stats(State(state): State<Arc<AppState>>) -> Response {
    Json(state.stats.snapshot()).into_response()
}
