//! The configured store sinks that final completions must reach before
//! their sources are acknowledged: the columnar export (`[export]`) and the
//! lineage graph (`[lineage]`).
//!
//! ```text
//!  RecordResults (launch.rs) ─► StoreSinks::record ─► export journal (fsynced)
//!                                                  └► lineage graph (UNWIND batches)
//!                            ─► store.record_finished ─► acks
//!  RecordAttempts (retried attempts) ─► StoreSinks::record_attempts ─► lineage graph
//! ```
//!
//! [`StoreSinks::record`] runs on the worker thread and returns only once
//! every configured write has landed, retrying with backoff while a sink
//! fails (the graph server is down, the disk is full). The worker waits
//! meanwhile, so the pipeline stops taking work and the sources keep their
//! deliveries unacknowledged: backpressure, and nothing is lost. Both sinks
//! are at-least-once: the graph merges a repeated completion into what is
//! there, an export may hold a redelivered task's row twice.
//!
//! Metric snapshots ([`crate::metric_snapshots`]) go to the export too, through
//! [`StoreSinks::record_metrics`]; they are views, written once without
//! retry, and hold nothing up.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use tidewater_connectors::columnar::{ExportError, Exporter, MetricSample};
use tidewater_connectors::lineage::{LineageError, LineageGraph};
use tidewater_operators::model::Completion;

use crate::config::Config;

/// Why a store sink could not take completions.
#[derive(Debug, thiserror::Error)]
pub enum StoreSinkError {
    /// The columnar export failed.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// The lineage graph failed.
    #[error(transparent)]
    Lineage(#[from] LineageError),
    /// Another worker panicked while exporting.
    #[error("export: the exporter's lock is poisoned")]
    Poisoned,
}

/// The configured store sinks of one process.
pub struct StoreSinks {
    runtime: tokio::runtime::Handle,
    export: Option<Mutex<Exporter>>,
    lineage: Option<LineageGraph>,
}

impl StoreSinks {
    /// Opens what `config` enables. `run` names this process run in export
    /// file names. The graph's constraints and indexes are created in the
    /// background (retried until the server answers), so a server that is
    /// down at start delays only the first writes.
    pub fn open(
        config: &Config,
        runtime: &tokio::runtime::Handle,
        run: &str,
    ) -> Result<Self, StoreSinkError> {
        let export = match config.export.as_ref().filter(|e| e.enabled) {
            Some(export) => {
                let classes: HashMap<String, String> = config
                    .executor_specs()
                    .iter()
                    .map(|s| (s.id.to_string(), s.class().to_string()))
                    .collect();
                let exporter = Exporter::open(export, run, classes)?;
                tracing::info!(dir = %export.dir.display(), format = ?export.format, "columnar export on");
                Some(Mutex::new(exporter))
            }
            None => None,
        };
        let lineage = match config.lineage.as_ref().filter(|l| l.enabled) {
            Some(lineage) => {
                let graph = runtime.block_on(LineageGraph::connect(lineage))?;
                let schema = graph.clone();
                runtime.spawn(async move {
                    if let Err(e) = schema.ensure_schema().await {
                        tracing::error!(error = %e, "lineage graph: creating constraints and indexes failed");
                    }
                });
                tracing::info!(uri = %lineage.uri, "lineage graph on");
                Some(graph)
            }
            None => None,
        };
        Ok(StoreSinks {
            runtime: runtime.clone(),
            export,
            lineage,
        })
    }

    /// No sink at all.
    pub fn none(runtime: &tokio::runtime::Handle) -> Self {
        StoreSinks {
            runtime: runtime.clone(),
            export: None,
            lineage: None,
        }
    }

    /// Whether any sink is configured.
    pub fn is_empty(&self) -> bool {
        self.export.is_none() && self.lineage.is_none()
    }

    /// Writes `finals` to every configured sink and returns once all have
    /// landed (or a sink gave up, where its config bounds retries). Called
    /// on a worker thread, never on the tokio runtime.
    pub fn record(&self, finals: &[Completion]) -> Result<(), StoreSinkError> {
        if finals.is_empty() || self.is_empty() {
            return Ok(());
        }
        self.runtime.block_on(async {
            if let Some(export) = &self.export {
                export_retrying(export, finals).await?;
            }
            if let Some(graph) = &self.lineage {
                graph.write(finals).await?;
            }
            Ok(())
        })
    }

    /// Writes attempts that will be retried to the lineage graph (their
    /// `EXECUTED` relationships; the final attempt comes with `record`),
    /// returning once they landed. Nothing waits on them to acknowledge.
    pub fn record_attempts(&self, retried: &[Completion]) -> Result<(), StoreSinkError> {
        match &self.lineage {
            Some(graph) if !retried.is_empty() => {
                Ok(self.runtime.block_on(graph.write(retried))?)
            }
            _ => Ok(()),
        }
    }

    /// Whether the export takes metric snapshots.
    pub fn exports_metrics(&self) -> bool {
        self.export
            .as_ref()
            .and_then(|e| e.lock().ok().map(|e| e.exports_metrics()))
            .unwrap_or(false)
    }

    /// Journals one metric snapshot taken at `taken_at_us`, once (a failed
    /// snapshot is superseded by the next).
    pub fn record_metrics(
        &self,
        taken_at_us: u64,
        samples: &[MetricSample],
    ) -> Result<(), StoreSinkError> {
        match &self.export {
            Some(export) => Ok(export
                .lock()
                .map_err(|_| StoreSinkError::Poisoned)?
                .export_metrics(taken_at_us, samples)?),
            None => Ok(()),
        }
    }

    /// Finishes the export's files being filled (also done when dropped).
    pub fn finish(&self) -> Result<(), StoreSinkError> {
        if let Some(export) = &self.export {
            export
                .lock()
                .map_err(|_| StoreSinkError::Poisoned)?
                .finish()?;
        }
        Ok(())
    }
}

/// Journals `finals`, retrying with backoff (without limit: an export that
/// cannot be written holds the pipeline rather than lose rows).
async fn export_retrying(
    export: &Mutex<Exporter>,
    finals: &[Completion],
) -> Result<(), StoreSinkError> {
    let attempt = || async {
        export
            .lock()
            .map_err(|_| StoreSinkError::Poisoned)?
            .export(finals)
            .map_err(StoreSinkError::from)
    };
    attempt
        .retry(
            ExponentialBuilder::new()
                .with_min_delay(Duration::from_millis(50))
                .with_max_delay(Duration::from_secs(5))
                .with_jitter()
                .without_max_times(),
        )
        .sleep(tokio::time::sleep)
        .when(|e| !matches!(e, StoreSinkError::Poisoned))
        .notify(|error, delay| {
            tracing::error!(%error, ?delay, "export failed; retrying");
        })
        .await
}
