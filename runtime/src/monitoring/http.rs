//! The monitoring endpoints: `GET /metrics` (Prometheus text format),
//! `GET /v1/queries` (every query's latest result) and
//! `GET /v1/queries/{name}` (one, with the epoch it is exact as of) and
//! `GET /v1/alerts` (alerts firing now, and the latest alert events).
//!
//! Query results are gathered on worker 0, so in a multi-process cluster
//! process 0 serves them.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use tidewater_dataflows::monitor::QueryResults;

use super::{AlertBoard, Exporter};

/// What the monitoring endpoints read.
#[derive(Clone)]
pub struct MonitoringApi {
    /// Continuous query results.
    pub queries: QueryResults,
    /// The Prometheus exporter.
    pub exporter: Arc<Exporter>,
    /// Firing alerts.
    pub alerts: AlertBoard,
}

/// The monitoring routes, with their state.
pub fn routes(api: MonitoringApi) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/v1/queries", get(all_queries))
        .route("/v1/queries/{name}", get(one_query))
        .route("/v1/alerts", get(alerts))
        .with_state(Arc::new(api))
}

async fn metrics(State(api): State<Arc<MonitoringApi>>) -> Response {
    match api.exporter.render() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn all_queries(State(api): State<Arc<MonitoringApi>>) -> Response {
    Json(api.queries.all()).into_response()
}

async fn alerts(State(api): State<Arc<MonitoringApi>>) -> Response {
    Json(api.alerts.view()).into_response()
}

async fn one_query(State(api): State<Arc<MonitoringApi>>, Path(name): Path<String>) -> Response {
    match api.queries.get(&name) {
        Some(result) => Json(result).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({
                "code": "not_found",
                "reason": format!("no query named {name:?} is configured"),
            })),
        )
            .into_response(),
    }
}
