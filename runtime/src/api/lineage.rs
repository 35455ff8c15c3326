//! The lineage graph's HTTP endpoints, read from the server `[lineage]`
//! names (connected on first use):
//!
//! - `GET /v1/lineage/tasks/{id}`: the task's submitter, dependencies,
//!   dependents and executions ([`TaskLineage`]); `404` when the graph does
//!   not know it.
//! - `GET /v1/lineage/agents/{agent}?since=&until=&limit=`: what the agent's
//!   tasks ran with finish times in `[since, until)` (milliseconds since the
//!   Unix epoch; all time when absent), and how many failed ([`Activity`]).
//! - `GET /v1/lineage/executors/{executor}?since=&until=&limit=`: the same
//!   for what an executor ran.
//!
//! Without `[lineage]` they answer `404` with code `lineage_off`; when the
//! graph server cannot be reached, `503` with code `lineage`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use tokio::sync::OnceCell;

use tidewater_connectors::lineage::{
    Activity, LineageConfig, LineageError, LineageGraph, Subject, TaskLineage,
};

use crate::config::Config;

/// Most executions one activity answer lists.
pub const MAX_LIMIT: usize = 10_000;

/// How long a lineage query may take before it is answered `503` (the
/// driver keeps retrying some failures for up to a minute by itself).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a graph query with [`QUERY_TIMEOUT`].
async fn bounded<T>(
    query: impl std::future::Future<Output = Result<T, LineageError>>,
) -> Result<T, Response> {
    match tokio::time::timeout(QUERY_TIMEOUT, query).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(unavailable(&e)),
        Err(_) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "lineage",
            format!("the lineage graph did not answer within {QUERY_TIMEOUT:?}"),
        )),
    }
}

struct LineageApi {
    config: Option<LineageConfig>,
    graph: OnceCell<LineageGraph>,
}

/// The time range and bound of an activity query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Range {
    /// Earliest finish time, inclusive, ms since the epoch.
    since: Option<i64>,
    /// Latest finish time, exclusive.
    until: Option<i64>,
    /// Most executions listed (default and maximum [`MAX_LIMIT`]).
    limit: Option<usize>,
}

/// The lineage routes, for merging into the API's router.
pub fn routes(config: &Config) -> Router {
    let api = Arc::new(LineageApi {
        config: config.lineage.clone(),
        graph: OnceCell::new(),
    });
    Router::new()
        .route("/v1/lineage/tasks/{id}", get(task))
        .route("/v1/lineage/agents/{agent}", get(agent))
        .route("/v1/lineage/executors/{executor}", get(executor))
        .with_state(api)
}

fn error(status: StatusCode, code: &str, reason: String) -> Response {
    (
        status,
        Json(serde_json::json!({ "code": code, "reason": reason })),
    )
        .into_response()
}

fn unavailable(e: &LineageError) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "lineage", e.to_string())
}

impl LineageApi {
    async fn graph(&self) -> Result<&LineageGraph, Response> {
        let Some(config) = &self.config else {
            return Err(error(
                StatusCode::NOT_FOUND,
                "lineage_off",
                "the lineage graph is not configured (no [lineage] block)".into(),
            ));
        };
        self.graph
            .get_or_try_init(|| LineageGraph::connect(config))
            .await
            .map_err(|e| unavailable(&e))
    }
}

async fn task(State(api): State<Arc<LineageApi>>, Path(id): Path<String>) -> Response {
    let graph = match api.graph().await {
        Ok(graph) => graph,
        Err(response) => return response,
    };
    match bounded(graph.task_lineage(&id)).await {
        Ok(Some(lineage)) => Json::<TaskLineage>(lineage).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("the lineage graph has no task {id:?}"),
        ),
        Err(response) => response,
    }
}

async fn agent(
    State(api): State<Arc<LineageApi>>,
    Path(agent): Path<String>,
    Query(range): Query<Range>,
) -> Response {
    activity(&api, Subject::Agent(agent), range).await
}

async fn executor(
    State(api): State<Arc<LineageApi>>,
    Path(executor): Path<String>,
    Query(range): Query<Range>,
) -> Response {
    activity(&api, Subject::Executor(executor), range).await
}

async fn activity(api: &LineageApi, subject: Subject, range: Range) -> Response {
    let (since, until) = (range.since.unwrap_or(0), range.until.unwrap_or(i64::MAX));
    if since > until {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("since ({since}) is after until ({until})"),
        );
    }
    let limit = range.limit.unwrap_or(MAX_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_value",
            format!("limit must be in 1..={MAX_LIMIT}"),
        );
    }
    let graph = match api.graph().await {
        Ok(graph) => graph,
        Err(response) => return response,
    };
    match bounded(graph.activity(&subject, since, until, limit)).await {
        Ok(activity) => Json::<Activity>(activity).into_response(),
        Err(response) => response,
    }
}
