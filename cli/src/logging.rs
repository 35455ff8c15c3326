//! The process's tracing subscriber: log lines to stderr (filtered by
//! `RUST_LOG`, default `info`) and, for `tidewater run` with `[telemetry]`,
//! its tracing spans exported over OTLP through the pipeline's provider.
//!
//! `run` installs the subscriber itself once its config is read (the
//! OpenTelemetry layer must be in place from the start: a layer reloaded
//! later would not take remote parents); every other command installs it
//! before it runs.

use tidewater::telemetry::Telemetry;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the subscriber for the whole process, exporting spans through
/// `telemetry` when given.
pub fn init(telemetry: Option<&Telemetry>) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::registry()
        .with(telemetry.map(Telemetry::layer))
        .with(filter)
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
}
