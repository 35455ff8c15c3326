//! Columnar export: final completions, the learner's experience records and
//! metric snapshots as Apache Arrow record batches, written to Parquet and
//! Arrow IPC files that pandas, polars, DuckDB and pyarrow read.
//!
//! ```text
//!  finals ─► completions_batch ─┐
//!        └─► experience batch  ─┤
//!  metric snapshot (every       │
//!   metrics_interval_ms) ─► metric_snapshot_batch ─┴─► RollingFile (one per stream)
//!                                    ├─ append + fsync to <dir>/<stream>/.<file>.staging.arrows  (the batch has landed)
//!                                    └─ every rows_per_file rows, and at finish:
//!                                       journal ─► <dir>/<stream>/<stream>-<run>-<seq>.parquet / .arrow
//!                                                  (written as .tmp, fsynced, renamed)
//! ```
//!
//! Each stream has its own subfolder; readers take its files by glob
//! (`SELECT * FROM '<dir>/completions/*.parquet'` in DuckDB,
//! `pl.read_parquet("<dir>/completions/*.parquet")` in polars,
//! `pyarrow.parquet.read_table(glob.glob(...))`).
//!
//! A batch counts as exported once it is in the staging journal (an Arrow
//! IPC stream, fsynced after every batch), so the caller may acknowledge its
//! sources then. Finished files appear atomically: a reader never sees a
//! partial file. A journal left by a crash is turned into finished files
//! when the exporter next opens the folder; a batch cut short by the crash
//! (never acknowledged, so redelivered) is dropped.

mod completions;
mod config;
mod error;
mod exporter;
mod metrics;
mod rolling;

pub use completions::{completion_schema, completions_batch};
pub use config::{ExportConfig, ExportFormat};
pub use error::ExportError;
pub use exporter::Exporter;
pub use metrics::{metric_snapshot_batch, metric_snapshot_schema, MetricSample, MetricSource};
pub use rolling::RollingFile;
