//! The HTTP API (axum): submit tasks, read and list their records, health.
//!
//! - `POST /v1/tasks`: one task object or an array of them. Each is
//!   validated at once, then checked against what could ever run it (a
//!   handler for its kind, a built-in's payload shape, the command
//!   allowlist, its deadline). A valid task with a new id is admitted to the
//!   store and enters the pipeline (`202`); an id that exists is not run
//!   again: `200` with the existing record when the body is the same, `409`
//!   with it when it differs. Refused items are answered `400` with the
//!   reason and field path, and dead-lettered in the store, so their id
//!   reads back as `rejected`.
//! - `GET /v1/tasks/{id}`: the task's record, with its live state
//!   (`running`, `retrying`) from [`LiveTasks`] and its result.
//! - `GET /v1/tasks?state=&tenant=&kind=&since=&limit=&cursor=&order=`: a page
//!   of records (see [`crate::task_listing`]).
//! - `GET /v1/stats`: run counters, with the store's counts by state.
//! - `GET /healthz`: liveness.
//! - the monitoring endpoints of [`crate::monitoring`]: `/metrics`,
//!   `/v1/queries`, `/v1/queries/{name}`.
//! - the control endpoints of [`crate::control_http`]: cancel a task
//!   (`DELETE /v1/tasks/{id}`), executors joining, heartbeating and
//!   leaving, reservations.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::oneshot;

use tidewater_connectors::store::{Admission, TaskRecord, TaskStore};
use tidewater_operators::model::{now_micros, AckToken, Name, RejectReason, Rejection, Task};
use tidewater_operators::validate::Validator;

use crate::config::Config;
use crate::error::RuntimeError;
use crate::handlers::HandlerRegistry;
use crate::ingress::Ingress;
use crate::live::LiveTasks;
use crate::stats::PipelineStats;
use crate::task_listing::{list_tasks, ListParams};

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
    /// Continuous query results and the exporter.
    pub monitoring: crate::monitoring::MonitoringApi,
}

struct AppState {
    api: ApiContext,
    validator: Mutex<Validator>,
    /// Whether remote agents (with their own allowlists) may run commands.
    remote_agents: bool,
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
        let control = crate::control_http::routes(crate::control_http::ControlApi {
            ingress: api.ingress.clone(),
            store: Arc::clone(&api.store),
            live: api.live.clone(),
            default_heartbeat_ttl_ms: config.allocator.heartbeat_ttl_ms,
            reservations: api.reservations.clone(),
        });
        let monitoring = crate::monitoring::routes(api.monitoring.clone());
        let state = Arc::new(AppState {
            api,
            validator: Mutex::new(Validator::for_source(
                config.limits.clone(),
                "h",
                now_micros(),
            )),
            remote_agents: config.rabbitmq.as_ref().is_some_and(|r| r.agents),
        });
        let app = router(state)
            .merge(control)
            .merge(monitoring)
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
        .route("/v1/tasks", get(list).post(submit))
        .route("/v1/tasks/{id}", get(get_task))
        .route("/v1/stats", get(stats))
        .with_state(state)
}

#[derive(Serialize)]
struct Refused {
    index: usize,
    code: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct Duplicate {
    index: usize,
    id: String,
    same_body: bool,
    task: TaskRecord,
}

#[derive(Serialize)]
struct BatchAnswer {
    accepted: Vec<String>,
    duplicates: Vec<Duplicate>,
    rejected: Vec<Refused>,
}

/// An error answer: `{"code", "reason"}`.
pub(crate) fn error(status: StatusCode, code: &str, reason: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "code": code, "reason": reason })),
    )
        .into_response()
}

/// Runs a store call off the async threads, mapping its failures to answers.
pub(crate) async fn with_store<R: Send + 'static>(
    store: &Arc<dyn TaskStore>,
    call: impl FnOnce(&dyn TaskStore) -> Result<R, tidewater_connectors::store::StoreError>
        + Send
        + 'static,
) -> Result<R, Response> {
    let store = Arc::clone(store);
    match tokio::task::spawn_blocking(move || call(store.as_ref())).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store",
            e.to_string(),
        )),
        Err(e) => Err(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            e.to_string(),
        )),
    }
}

/// The id a refused record names, when it names one as a string.
fn named_id(item: &[u8]) -> Option<Name> {
    #[derive(serde::Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        id: Option<&'a str>,
    }
    serde_json::from_slice::<Named>(item)
        .ok()
        .and_then(|n| n.id)
        .filter(|id| !id.is_empty() && id.len() <= 256)
        .map(Name::from)
}

fn rejection(item: &[u8], reason: RejectReason, task_id: Option<Name>, at_us: u64) -> Rejection {
    const EXCERPT: usize = 256;
    let mut end = item.len().min(EXCERPT);
    while end > 0 && end < item.len() && (item[end] & 0b1100_0000) == 0b1000_0000 {
        end -= 1;
    }
    Rejection {
        reason,
        task_id,
        source_name: Name::from("http"),
        excerpt: String::from_utf8_lossy(&item[..end]).into_owned(),
        ack: AckToken::NONE,
        at_us,
    }
}

async fn submit(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    if state
        .api
        .draining
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this process is shutting down and takes no new tasks; submit to another process or after the restart".into(),
        );
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let is_batch = first == Some(&b'[');
    let items: Vec<&[u8]> = if is_batch {
        match serde_json::from_slice::<Vec<&RawValue>>(&body) {
            Ok(items) => items.into_iter().map(|raw| raw.get().as_bytes()).collect(),
            Err(e) => {
                let reason = RejectReason::Malformed {
                    detail: e.to_string(),
                };
                let answer = error(StatusCode::BAD_REQUEST, reason.code(), reason.to_string());
                let dead = vec![rejection(&body, reason, None, now_micros())];
                return match dead_letter(&state, dead).await {
                    Ok(()) => answer,
                    Err(failed) => failed,
                };
            }
        }
    } else {
        vec![&body[..]]
    };

    let now = now_micros();
    let mut tasks: Vec<(usize, Task)> = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    let mut dead = Vec::new();
    {
        let Ok(mut validator) = state.validator.lock() else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "validator unavailable".into(),
            );
        };
        for (index, item) in items.iter().enumerate() {
            let checked = validator
                .decode(item, AckToken::NONE, now)
                .and_then(|task| {
                    state
                        .api
                        .handlers
                        .check(&task, state.remote_agents)
                        .map(|()| task)
                });
            match checked {
                Ok(task) => tasks.push((index, task)),
                Err(reason) => {
                    refused.push(Refused {
                        index,
                        code: reason.code(),
                        reason: reason.to_string(),
                    });
                    dead.push(rejection(item, reason, named_id(item), now));
                }
            }
        }
    }
    if !dead.is_empty() {
        if let Err(failed) = dead_letter(&state, dead).await {
            return failed;
        }
    }
    let to_admit: Vec<Task> = tasks.iter().map(|(_, t)| t.clone()).collect();
    let admissions = if to_admit.is_empty() {
        Vec::new()
    } else {
        match with_store(&state.api.store, move |store| store.admit(&to_admit)).await {
            Ok(admissions) => admissions,
            Err(failed) => return failed,
        }
    };
    let mut accepted = Vec::new();
    let mut duplicates = Vec::new();
    for ((index, task), admission) in tasks.into_iter().zip(admissions) {
        match admission {
            Admission::New => {
                accepted.push(task.id.to_string());
                if let Err(e) = state.api.ingress.submit_task("http", task) {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "shutting_down",
                        e.to_string(),
                    );
                }
            }
            Admission::Existing { record, same_body } => duplicates.push(Duplicate {
                index,
                id: task.id.to_string(),
                same_body,
                task: overlaid(&state.api.live, *record),
            }),
        }
    }
    if is_batch {
        let answer = BatchAnswer {
            accepted,
            duplicates,
            rejected: refused,
        };
        return (StatusCode::OK, Json(answer)).into_response();
    }
    if let Some(id) = accepted.first() {
        return (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response();
    }
    if let Some(duplicate) = duplicates.into_iter().next() {
        return if duplicate.same_body {
            (StatusCode::OK, Json(duplicate.task)).into_response()
        } else {
            (
                StatusCode::CONFLICT,
                Json(serde_json::json!({
                    "code": "duplicate",
                    "reason": format!(
                        "a different task with id {:?} was already submitted; it is not run again",
                        duplicate.id
                    ),
                    "task": duplicate.task,
                })),
            )
                .into_response()
        };
    }
    match refused.first() {
        Some(r) => error(StatusCode::BAD_REQUEST, r.code, r.reason.clone()),
        None => error(
            StatusCode::BAD_REQUEST,
            "empty",
            "no task in the request".into(),
        ),
    }
}

/// Records refused submissions in the store's dead letters and counters.
async fn dead_letter(state: &AppState, dead: Vec<Rejection>) -> Result<(), Response> {
    let count = dead.len();
    with_store(&state.api.store, move |store| {
        store.record_rejections(&dead)
    })
    .await?;
    state.api.stats.record_refusals(count);
    Ok(())
}

/// `record` with the live state of its task, if it has one here.
pub(crate) fn overlaid(live: &LiveTasks, mut record: TaskRecord) -> TaskRecord {
    if let Some(entry) = live.get(&record.id) {
        entry.overlay(&mut record);
    }
    record
}

async fn get_task(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    let lookup = id.clone();
    match with_store(&state.api.store, move |store| store.get(&lookup)).await {
        Ok(Some(record)) => Json(overlaid(&state.api.live, record)).into_response(),
        Ok(None) => match state.api.live.get(&id) {
            Some(entry) => Json(entry.to_record()).into_response(),
            None => error(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("no task with id {id:?}"),
            ),
        },
        Err(failed) => failed,
    }
}

async fn list(State(state): State<Arc<AppState>>, Query(params): Query<ListParams>) -> Response {
    match list_tasks(&state.api.store, &state.api.live, params).await {
        Ok(page) => Json(page).into_response(),
        Err(failed) => failed,
    }
}

async fn stats(State(state): State<Arc<AppState>>) -> Response {
    let counts = match with_store(&state.api.store, |store| store.counts()).await {
        Ok(counts) => counts,
        Err(failed) => return failed,
    };
    let (running, retrying) = state.api.live.counts();
    let mut body = match serde_json::to_value(state.api.stats.snapshot()) {
        Ok(body) => body,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    body["store"] = serde_json::json!({
        "queued": counts.queued.saturating_sub(running + retrying),
        "running": running,
        "retrying": retrying,
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "timed_out": counts.timed_out,
        "cancelled": counts.cancelled,
        "rejected": counts.rejected,
    });
    Json(body).into_response()
}
