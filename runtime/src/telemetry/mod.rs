//! OpenTelemetry export: a span per task, and the process's own tracing
//! spans, sent to an OTLP/HTTP receiver.
//!
//! ```text
//!  source (traceparent header) ─► SourceRecord.trace ─► Task.trace ─► … ─► final Completion / Rejection
//!                                                                                 │
//!                       TaskSpans::record_finals / record_rejections (result and dead-letter sinks)
//!                                                                                 │
//!  tracing spans ─► Telemetry::layer ─┐                                            ▼
//!                                     └──► SdkTracerProvider (batch) ──OTLP/HTTP──► collector
//! ```
//!
//! A task's span runs from its ingestion (`submitted_at_us`) to its outcome
//! and is built when the outcome is recorded, with those timestamps: a task
//! crosses workers and processes, so no in-memory span could follow it.
//! Where its source delivered a W3C `traceparent` (broker header or HTTP
//! request header), the span is a child of that remote span; otherwise it
//! starts a trace. The final attempt is a child span (`execute`).
//!
//! [`Telemetry`] is started by the pipeline when `[telemetry]` is set and
//! flushed when it shuts down; the `tidewater` binary also installs
//! [`Telemetry::layer`] so that its tracing spans are exported alongside.

mod config;
pub mod http;
mod task_spans;

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use opentelemetry_sdk::Resource;

pub use config::TelemetryConfig;
pub use task_spans::TaskSpans;

/// Why telemetry could not start or flush.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter could not be built from the config.
    #[error("OTLP exporter for {endpoint}: {source}")]
    Exporter {
        /// The configured endpoint.
        endpoint: String,
        /// The exporter's account.
        source: opentelemetry_otlp::ExporterBuildError,
    },
    /// Spans could not be flushed at shutdown.
    #[error("flushing spans: {0}")]
    Flush(#[from] opentelemetry_sdk::error::OTelSdkError),
}

/// The tracer provider exporting this process's spans.
#[derive(Clone)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Starts a batching OTLP/HTTP (protobuf) exporter for `config`. No
    /// connection is made until the first batch: an unreachable receiver
    /// costs dropped spans (logged by the SDK), never a stalled pipeline.
    pub fn start(config: &TelemetryConfig) -> Result<Telemetry, TelemetryError> {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(config.otlp_endpoint.clone())
            .with_timeout(Duration::from_millis(config.export_timeout_ms))
            .with_headers(config.headers.clone().into_iter().collect())
            .build()
            .map_err(|source| TelemetryError::Exporter {
                endpoint: config.otlp_endpoint.clone(),
                source,
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(
                Resource::builder()
                    .with_service_name(config.service_name.clone())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("tidewater");
        Ok(Telemetry { provider, tracer })
    }

    /// The recorder of task spans, for the result and dead-letter sinks.
    pub fn task_spans(&self) -> TaskSpans {
        TaskSpans::new(self.tracer.clone())
    }

    /// A `tracing` layer exporting the process's own spans through the
    /// same provider.
    pub fn layer<S>(&self) -> tracing_opentelemetry::OpenTelemetryLayer<S, SdkTracer>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        tracing_opentelemetry::layer().with_tracer(self.tracer.clone())
    }

    /// Exports every span recorded so far.
    pub fn flush(&self) -> Result<(), TelemetryError> {
        Ok(self.provider.force_flush()?)
    }

    /// Exports what is left and stops the exporter.
    pub fn shutdown(&self) -> Result<(), TelemetryError> {
        Ok(self.provider.shutdown()?)
    }
}
