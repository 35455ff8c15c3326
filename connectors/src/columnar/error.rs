//! Why an export failed.

use std::path::PathBuf;

/// An export failure, naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A file or folder could not be created, written, synced or renamed.
    #[error("export: {context} {path}: {source}")]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Arrow refused the columns or could not encode them.
    #[error("export: Arrow, for {path}: {source}")]
    Arrow {
        /// The file being written.
        path: PathBuf,
        /// Arrow's error.
        source: arrow_schema::ArrowError,
    },
    /// The Parquet writer failed.
    #[error("export: Parquet, for {path}: {source}")]
    Parquet {
        /// The file being written.
        path: PathBuf,
        /// The writer's error.
        source: parquet::errors::ParquetError,
    },
    /// Experience records could not be turned into a batch.
    #[error("export: experience batch: {0}")]
    Experience(#[from] tidewater_operators::learn::batch::BatchError),
}
