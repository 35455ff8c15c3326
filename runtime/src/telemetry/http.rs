//! An `http.request` span around every API call, when `[telemetry]` is set.
//!
//! The span (kind server) is a child of the request's W3C `traceparent`
//! where it has one, and is exported through [`super::Telemetry::layer`]
//! once the process's subscriber has it (the `tidewater` binary installs
//! it). Task spans of the tasks a request submits are children of the same
//! remote parent.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use tidewater_operators::model::{TraceParent, TRACEPARENT_HEADER};

/// Axum middleware: runs the request inside its `http.request` span.
pub async fn request_span(request: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http.request",
        otel.kind = "server",
        http.request.method = %request.method(),
        url.path = %request.uri().path(),
        http.response.status_code = tracing::field::Empty,
    );
    let parent = request
        .headers()
        .get(TRACEPARENT_HEADER)
        .and_then(|value| TraceParent::parse_bytes(value.as_bytes()));
    if let Some(parent) = parent {
        // Refused only when no OpenTelemetry layer is installed: then
        // there is nothing to export either.
        let _ = span.set_parent(super::task_spans::remote_context(Some(parent)));
    }
    let response = next.run(request).instrument(span.clone()).await;
    span.record("http.response.status_code", response.status().as_u16());
    response
}
