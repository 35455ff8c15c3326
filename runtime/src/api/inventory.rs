//! Read endpoints over what the process holds besides tasks: executors,
//! reservations and the learner's model registry.
//!
//! - `GET /v1/executors`: every executor this process knows (see
//!   [`crate::executor_book`]), with capacity, what its running tasks hold
//!   (from [`LiveTasks`]), heartbeat age and state, sorted by id.
//! - `GET /v1/reservations`: the latest status of every reservation
//!   (see [`crate::reservations`]).
//! - `GET /v1/models?target=&limit=`: model versions per target from the
//!   store's registry, newest last, with their training metrics; the
//!   parameters themselves are left out (only their count is given).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use tidewater_connectors::store::{ModelRecord, TaskStore};
use tidewater_operators::model::{now_micros, ModelTarget};

use crate::executor_book::{ExecutorBook, ExecutorView, Placed};
use crate::live::{LivePhase, LiveTasks};
use crate::reservations::ReservationBook;

/// Model versions listed per target when no `limit` is given.
const DEFAULT_MODEL_LIMIT: usize = 50;
/// Most model versions listed per target.
const MAX_MODEL_LIMIT: usize = 1000;

/// What the inventory endpoints read.
pub struct InventoryApi {
    /// Executors of this process.
    pub executors: ExecutorBook,
    /// Reservation statuses.
    pub reservations: ReservationBook,
    /// Live task states, for what runs on each executor.
    pub live: LiveTasks,
    /// The store, for the model registry.
    pub store: Arc<dyn TaskStore>,
}

/// The inventory routes, with their state.
pub fn routes(api: InventoryApi) -> Router {
    Router::new()
        .route("/v1/executors", get(executors))
        .route("/v1/reservations", get(reservations))
        .route("/v1/models", get(models))
        .with_state(Arc::new(api))
}

#[derive(Serialize)]
struct ExecutorsAnswer {
    executors: Vec<ExecutorView>,
}

async fn executors(State(api): State<Arc<InventoryApi>>) -> Response {
    // Tasks waiting for a retry hold nothing; only running attempts count.
    let live = api.live.all();
    let running = live
        .iter()
        .filter(|t| t.phase == LivePhase::Running)
        .map(|t| Placed {
            executor: &t.executor,
            task: &t.id,
            resources: &t.resources,
        });
    let executors = api.executors.snapshot(now_micros(), running);
    Json(ExecutorsAnswer { executors }).into_response()
}

async fn reservations(State(api): State<Arc<InventoryApi>>) -> Response {
    Json(serde_json::json!({ "reservations": api.reservations.list() })).into_response()
}

/// `GET /v1/models` parameters.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsQuery {
    target: Option<ModelTarget>,
    limit: Option<usize>,
}

/// A model version without its parameters.
#[derive(Serialize)]
struct VersionView {
    version: u64,
    feature_dim: u32,
    hidden_dim: u32,
    parameters: usize,
    trained_samples: u64,
    metrics: std::collections::BTreeMap<String, f64>,
    created_at_ms: u64,
}

impl From<ModelRecord> for VersionView {
    fn from(record: ModelRecord) -> Self {
        VersionView {
            version: record.update.version,
            feature_dim: record.update.feature_dim,
            hidden_dim: record.update.hidden_dim,
            parameters: record.update.params.len(),
            trained_samples: record.update.trained_samples,
            metrics: record.metrics,
            created_at_ms: record.created_at_ms,
        }
    }
}

#[derive(Serialize)]
struct TargetView {
    target: ModelTarget,
    latest: Option<u64>,
    versions: Vec<VersionView>,
}

fn bad_request(reason: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(serde_json::json!({ "code": "invalid", "reason": reason })),
    )
        .into_response()
}

async fn models(
    State(api): State<Arc<InventoryApi>>,
    query: Result<Query<ModelsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return bad_request(e.body_text()),
    };
    let limit = query.limit.unwrap_or(DEFAULT_MODEL_LIMIT);
    if !(1..=MAX_MODEL_LIMIT).contains(&limit) {
        return bad_request(format!("limit must be within 1..={MAX_MODEL_LIMIT}"));
    }
    let targets = match query.target {
        Some(target) => vec![target],
        None => vec![ModelTarget::RunTime, ModelTarget::Failure],
    };
    let store = Arc::clone(&api.store);
    let listed = tokio::task::spawn_blocking(move || {
        targets
            .into_iter()
            .map(|target| {
                let mut records = store.models(target)?;
                records.sort_by_key(|r| r.update.version);
                let skip = records.len().saturating_sub(limit);
                let versions: Vec<VersionView> = records
                    .into_iter()
                    .skip(skip)
                    .map(VersionView::from)
                    .collect();
                Ok(TargetView {
                    target,
                    latest: versions.last().map(|v| v.version),
                    versions,
                })
            })
            .collect::<Result<Vec<TargetView>, tidewater_connectors::store::StoreError>>()
    })
    .await;
    match listed {
        Ok(Ok(models)) => Json(serde_json::json!({ "models": models })).into_response(),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "code": "store", "reason": e.to_string() })),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(serde_json::json!({ "code": "internal", "reason": e.to_string() })),
        )
            .into_response(),
    }
}
