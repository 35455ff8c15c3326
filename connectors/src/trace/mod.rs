//! Readers of the public cluster traces that replays and evaluations run on:
//! Standard Workload Format logs ([`swf`]) and the openb GPU cluster trace
//! ([`openb`]).
//!
//! Each format has a parser over bytes already in memory (what the fuzz
//! targets drive, and what a caller with a trace from anywhere uses) and a
//! `read_*` wrapper that loads a file. Bad input is an error naming the
//! origin and the 1-based line, never a panic: these files come from
//! outside.

pub mod openb;
pub mod swf;

/// Why a trace could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not valid in the trace's format.
    #[error("{origin} line {line}: {detail}")]
    Invalid {
        /// Where the text came from (a path, or a name the caller gave).
        origin: String,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        detail: String,
    },
    /// Nothing usable in the trace.
    #[error("{origin}: {detail}")]
    Empty {
        /// Where the text came from.
        origin: String,
        /// What is missing.
        detail: &'static str,
    },
}

/// Reads a whole trace file as bytes, for the parsers.
fn read_file(path: &std::path::Path) -> Result<Vec<u8>, TraceError> {
    std::fs::read(path).map_err(|source| TraceError::Read {
        path: path.display().to_string(),
        source,
    })
}
