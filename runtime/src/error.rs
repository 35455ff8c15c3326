//! The runtime's error types.

use std::path::PathBuf;

/// A configuration problem, naming the file, key or variable at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not match the schema.
    #[error("{origin}: {detail}")]
    Parse {
        /// Where the text came from.
        origin: String,
        /// The parser's account.
        detail: String,
    },
    /// An environment override could not be applied.
    #[error("environment variable {variable}: {detail}")]
    Override {
        /// The variable.
        variable: String,
        /// Why.
        detail: String,
    },
    /// A value is out of range or inconsistent.
    #[error("invalid `{key}`: {detail}")]
    Invalid {
        /// The key.
        key: String,
        /// Why.
        detail: String,
    },
    /// A file the configuration names cannot be read.
    #[error("`{key}`: cannot read {path}")]
    UnreadableFile {
        /// The key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// A failure to start or run the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened or written.
    #[error("store: {0}")]
    Store(String),
    /// Timely could not start its workers.
    #[error("starting workers: {0}")]
    Workers(String),
    /// The async runtime or a listener could not start.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The HTTP API's certificate or key could not be loaded.
    #[error("TLS {path}: {detail}")]
    Tls {
        /// The PEM file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
    /// Authentication could not be set up (a JWT key, the audit log).
    #[error("auth: {0}")]
    Auth(String),
    /// A worker thread panicked or failed.
    #[error("worker failed: {0}")]
    WorkerFailed(String),
    /// The Prometheus registry rejected a metric, or rendering failed.
    #[error("metrics: {0}")]
    Metrics(String),
    /// A broker connector could not start.
    #[error("broker connector: {0}")]
    Broker(String),
    /// The OpenTelemetry exporter could not start or flush.
    #[error("telemetry: {0}")]
    Telemetry(#[from] crate::telemetry::TelemetryError),
}
