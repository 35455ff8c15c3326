//! Answers shared by the endpoint groups: the `{"code", "reason"}` error
//! body, and store calls run off the async threads with their failures
//! mapped to `503`.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use tidewater_connectors::store::{StoreError, TaskStore};

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
    call: impl FnOnce(&dyn TaskStore) -> Result<R, StoreError> + Send + 'static,
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
