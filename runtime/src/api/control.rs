//! The HTTP control API: cancel tasks, register executors, reserve capacity.
//!
//! Each endpoint turns its request into a
//! [`ControlCommand`] that the ingress hands to the dataflow, where every
//! coordinator shard sees it (see `tidewater_operators::dataflow`). Answers
//! are `202 Accepted`: the command is applied in the next epoch.
//!
//! - `DELETE /v1/tasks/{id}`: cancel (404 if unknown, 409 if already final).
//! - `POST /v1/executors`: join `{"id", "cpu_milli", "memory_mib", "gpus",
//!   "gpu_model", "custom", "labels", "heartbeat_ttl_ms"}` (an executor as
//!   in the config file, plus its heartbeat TTL).
//! - `POST /v1/executors/{id}/heartbeat`, `DELETE /v1/executors/{id}` (leave).
//! - `POST /v1/executors/{id}/claim?wait_ms=&max=`: an executor that joined
//!   over HTTP takes the work placed on it (`{"work": [AgentWork...]}`:
//!   runs with their tasks and payloads, and aborts), waiting up to
//!   `wait_ms` (default 10 s, at most 60 s) for the first; 404 if it did
//!   not join over HTTP.
//! - `POST /v1/executors/{id}/tasks/{task}/outcome`: it reports how a
//!   claimed run ended (a `RemoteCompletion`); 409 if that run is not open
//!   (already reported, or given up because the executor was declared lost
//!   and the task retried elsewhere).
//! - `POST /v1/reservations`: `{"id", "tenant" | "task", "resources",
//!   "expires_in_ms"}`; `GET /v1/reservations/{id}` (active, refused or
//!   ended, with the executor holding it); `DELETE /v1/reservations/{id}`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;

use tidewater_connectors::rabbitmq::agent_protocol::RemoteCompletion;
use tidewater_connectors::rabbitmq::AgentEvents;
use tidewater_connectors::store::TaskStore;
use tidewater_operators::model::{
    now_micros, ControlCommand, ExecutorSpec, Name, ReservationHolder, ReservationRequest,
};
use tidewater_operators::validate::ResourcesSubmission;

use super::responses::with_store;
use crate::auth::Principal;
use crate::http_agents::OutcomeRefused;
use crate::ingress::Ingress;

/// What the control endpoints need.
pub struct ControlApi {
    /// Where commands go.
    pub ingress: Ingress,
    /// Task records, to answer cancellations of unknown or finished tasks.
    pub store: Arc<dyn TaskStore>,
    /// Live states, to say what a cancelled task was doing.
    pub live: crate::live::LiveTasks,
    /// The cluster's other processes, for tasks taken in elsewhere.
    pub peers: super::peers::Peers,
    /// TTL for executors that join without one, ms.
    pub default_heartbeat_ttl_ms: u64,
    /// What became of reservations.
    pub reservations: crate::reservations::ReservationBook,
    /// Remote executors: those joining here pull their work from its board.
    pub agents: Option<Arc<crate::remote_backend::AgentHub>>,
    /// The tenant each reservation asked for here was taken for, so that a
    /// submitter reads and releases only its own.
    pub reservation_tenants: std::sync::Mutex<std::collections::HashMap<String, String>>,
}

/// The control routes, with their state.
pub fn routes(api: ControlApi) -> Router {
    Router::new()
        .route("/v1/tasks/{id}", delete(cancel))
        .route("/v1/executors", post(join))
        .route("/v1/executors/{id}", delete(leave))
        .route("/v1/executors/{id}/heartbeat", post(heartbeat))
        .route("/v1/executors/{id}/claim", post(claim))
        .route("/v1/executors/{id}/tasks/{task}/outcome", post(outcome))
        .route("/v1/reservations", post(reserve))
        .route(
            "/v1/reservations/{id}",
            delete(unreserve).get(reservation_status),
        )
        .with_state(Arc::new(api))
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

fn send(api: &ControlApi, command: ControlCommand, body: serde_json::Value) -> Response {
    match api.ingress.submit_control(command) {
        Ok(()) => answer(StatusCode::ACCEPTED, body),
        Err(e) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "code": "shutting_down", "reason": e.to_string() }),
        ),
    }
}

async fn cancel(
    State(api): State<Arc<ControlApi>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    // The command reaches every coordinator of the cluster; the record may
    // live in another process's store.
    let record = match super::tasks::cluster_record(
        &api.store, &api.live, &api.peers, &headers, &id,
    )
    .await
    {
        Ok(record) => record,
        Err(failed) => return failed,
    };
    match record.filter(|record| principal.may_act_for(&record.tenant)) {
        None => super::tasks::not_found(&id),
        Some(record) if record.state.is_final() => answer(
            StatusCode::CONFLICT,
            serde_json::json!({
                "code": "final",
                "reason": format!("task {id:?} already ended: {:?}", record.state),
                "state": record.state,
            }),
        ),
        Some(record) => send(
            &api,
            ControlCommand::Cancel {
                task: Name::from(id.as_str()),
            },
            serde_json::json!({
                "id": id,
                "state": record.state,
                "executor": record.executor,
                "attempts": record.attempts,
                "cancel": "requested",
            }),
        ),
    }
}

/// A join request, shaped like an executor in the config file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JoinRequest {
    id: String,
    cpu_milli: u64,
    memory_mib: u64,
    #[serde(default)]
    gpus: usize,
    #[serde(default)]
    gpu_model: String,
    #[serde(default)]
    custom: BTreeMap<String, u64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    heartbeat_ttl_ms: Option<u64>,
}

impl JoinRequest {
    fn spec(&self) -> ExecutorSpec {
        let mut spec = ExecutorSpec::cpu(self.id.as_str(), self.cpu_milli, self.memory_mib)
            .with_gpus(self.gpus, &self.gpu_model);
        for (name, amount) in &self.custom {
            spec = spec.with_custom(name, *amount);
        }
        spec.labels = self.labels.clone();
        spec
    }
}

async fn join(State(api): State<Arc<ControlApi>>, body: axum::body::Bytes) -> Response {
    let request: JoinRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "code": "invalid", "reason": e.to_string() }),
            )
        }
    };
    let id = request.id.clone();
    let ttl = request
        .heartbeat_ttl_ms
        .unwrap_or(api.default_heartbeat_ttl_ms);
    // Before the join takes effect, so that no placement on it runs here.
    if let Some(hub) = &api.agents {
        hub.http_board().register(&Name::from(id.as_str()));
    }
    send(
        &api,
        ControlCommand::Join {
            executor: request.spec(),
            heartbeat_ttl_ms: Some(ttl),
        },
        serde_json::json!({ "id": id, "heartbeat_ttl_ms": ttl }),
    )
}

/// How long a claim waits for work by default, and at most, ms.
const CLAIM_WAIT_MS: u64 = 10_000;
const CLAIM_WAIT_MAX_MS: u64 = 60_000;

/// The query of a claim.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClaimQuery {
    wait_ms: Option<u64>,
    max: Option<usize>,
}

async fn claim(
    State(api): State<Arc<ControlApi>>,
    Path(id): Path<String>,
    Query(query): Query<ClaimQuery>,
) -> Response {
    let Some(hub) = &api.agents else {
        return not_joined(&id);
    };
    let wait = Duration::from_millis(
        query
            .wait_ms
            .unwrap_or(CLAIM_WAIT_MS)
            .min(CLAIM_WAIT_MAX_MS),
    );
    let max = query.max.unwrap_or(64);
    match hub
        .http_board()
        .claim(&Name::from(id.as_str()), max, wait)
        .await
    {
        Some(work) => Json(serde_json::json!({ "work": work })).into_response(),
        None => not_joined(&id),
    }
}

fn not_joined(id: &str) -> Response {
    answer(
        StatusCode::NOT_FOUND,
        serde_json::json!({
            "code": "not_found",
            "reason": format!("executor {id:?} did not join over HTTP"),
        }),
    )
}

async fn outcome(
    State(api): State<Arc<ControlApi>>,
    Path((id, task)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let Some(hub) = &api.agents else {
        return not_joined(&id);
    };
    let mut completion: RemoteCompletion = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return answer(
                StatusCode::BAD_REQUEST,
                serde_json::json!({ "code": "invalid", "reason": e.to_string() }),
            )
        }
    };
    let executor = Name::from(id.as_str());
    match hub
        .http_board()
        .settle(&executor, &task, completion.worker, completion.lease)
    {
        Ok(()) => {
            completion.executor = executor;
            hub.completed(completion);
            answer(
                StatusCode::OK,
                serde_json::json!({ "id": task, "executor": id, "outcome": "recorded" }),
            )
        }
        Err(refused @ OutcomeRefused::UnknownExecutor(_)) => answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({ "code": "not_found", "reason": refused.to_string() }),
        ),
        Err(refused) => answer(
            StatusCode::CONFLICT,
            serde_json::json!({ "code": "not_open", "reason": refused.to_string() }),
        ),
    }
}

async fn heartbeat(State(api): State<Arc<ControlApi>>, Path(id): Path<String>) -> Response {
    send(
        &api,
        ControlCommand::Heartbeat {
            executor: Name::from(id.as_str()),
        },
        serde_json::json!({ "id": id }),
    )
}

async fn leave(State(api): State<Arc<ControlApi>>, Path(id): Path<String>) -> Response {
    send(
        &api,
        ControlCommand::Leave {
            executor: Name::from(id.as_str()),
        },
        serde_json::json!({ "id": id, "state": "leaving" }),
    )
}

/// A reservation request: exactly one of `tenant` and `task`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReserveRequest {
    id: String,
    tenant: Option<String>,
    task: Option<String>,
    resources: ResourcesSubmission,
    expires_in_ms: u64,
}

async fn reserve(
    State(api): State<Arc<ControlApi>>,
    Extension(principal): Extension<Principal>,
    body: axum::body::Bytes,
) -> Response {
    let bad = |reason: String| {
        answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({ "code": "invalid", "reason": reason }),
        )
    };
    let request: ReserveRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(e.to_string()),
    };
    let (holder, tenant) = match (request.tenant, request.task) {
        (Some(tenant), None) => (
            ReservationHolder::Tenant(Name::from(tenant.as_str())),
            tenant,
        ),
        (None, Some(task)) => {
            // A task's reservation belongs to the task's tenant.
            let lookup = task.clone();
            let record = match with_store(&api.store, move |store| store.get(&lookup)).await {
                Ok(record) => record,
                Err(failed) => return failed,
            };
            let tenant = record.map(|r| r.tenant).unwrap_or_default();
            (ReservationHolder::Task(Name::from(task.as_str())), tenant)
        }
        _ => return bad("give exactly one of \"tenant\" and \"task\"".into()),
    };
    if !principal.may_act_for(&tenant) {
        return answer(
            StatusCode::FORBIDDEN,
            serde_json::json!({
                "code": "forbidden",
                "reason": "a reservation may be taken only for your own tenant or its tasks",
            }),
        );
    }
    {
        let Ok(mut owners) = api.reservation_tenants.lock() else {
            return answer(
                StatusCode::INTERNAL_SERVER_ERROR,
                serde_json::json!({ "code": "internal", "reason": "reservation owners unavailable" }),
            );
        };
        match owners.get(&request.id) {
            Some(owner) if !principal.may_act_for(owner) => {
                return answer(
                    StatusCode::CONFLICT,
                    serde_json::json!({
                        "code": "taken",
                        "reason": format!("reservation id {:?} is taken; choose another", request.id),
                    }),
                )
            }
            _ => {
                owners.insert(request.id.clone(), tenant);
            }
        }
    }
    let resources = match request.resources.into_request() {
        Ok(r) => r,
        Err(reason) => return bad(reason.to_string()),
    };
    let expires_at_ms = now_micros() / 1000 + request.expires_in_ms;
    send(
        &api,
        ControlCommand::Reserve(ReservationRequest {
            id: Name::from(request.id.as_str()),
            holder,
            resources,
            expires_at_ms,
        }),
        serde_json::json!({ "id": request.id, "expires_at_ms": expires_at_ms }),
    )
}

/// Whether `principal` may see reservation `id` (a submitter: one taken
/// here for its tenant).
fn owns_reservation(api: &ControlApi, principal: &Principal, id: &str) -> bool {
    if principal.confined_tenant().is_none() {
        return true;
    }
    api.reservation_tenants
        .lock()
        .is_ok_and(|owners| owners.get(id).is_some_and(|t| principal.may_act_for(t)))
}

fn no_reservation(id: &str) -> Response {
    answer(
        StatusCode::NOT_FOUND,
        serde_json::json!({
            "code": "not_found",
            "reason": format!("no reservation {id:?} has been handled yet"),
        }),
    )
}

async fn reservation_status(
    State(api): State<Arc<ControlApi>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    if !owns_reservation(&api, &principal, &id) {
        return no_reservation(&id);
    }
    match api.reservations.get(&id) {
        Some(status) => Json(status).into_response(),
        None => answer(
            StatusCode::NOT_FOUND,
            serde_json::json!({
                "code": "not_found",
                "reason": format!("no reservation {id:?} has been handled yet"),
            }),
        ),
    }
}

async fn unreserve(
    State(api): State<Arc<ControlApi>>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    if !owns_reservation(&api, &principal, &id) {
        return no_reservation(&id);
    }
    send(
        &api,
        ControlCommand::Unreserve {
            id: Name::from(id.as_str()),
        },
        serde_json::json!({ "id": id }),
    )
}
