//! Line-oriented sources: JSON lines from a file or standard input.

use std::io::{BufRead, BufReader, Read};

use crate::ingress::{Ingress, IngressError};

/// Feeds each non-empty line of `reader` into the pipeline as a JSON record
/// from source `name`. Blank lines are skipped; every other line, valid or
/// not, becomes a record (invalid ones are rejected downstream with their
/// reason). In a cluster of `parts` processes, process `part` takes every
/// `parts`-th non-empty line starting at its index, so that the processes
/// share one file. Returns the number of records sent.
pub fn feed_json_lines<R: Read>(
    reader: R,
    name: &str,
    ingress: &Ingress,
    (part, parts): (usize, usize),
) -> Result<u64, FeedError> {
    let mut sent = 0;
    let mut records = 0usize;
    for (number, line) in BufReader::new(reader).split(b'\n').enumerate() {
        let mut line = line.map_err(|source| FeedError::Read {
            line: number + 1,
            source,
        })?;
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        records += 1;
        if (records - 1) % parts.max(1) != part {
            continue;
        }
        ingress.submit_json(name, line, 0, 0)?;
        sent += 1;
    }
    Ok(sent)
}

/// Why feeding lines stopped.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// Reading failed.
    #[error("reading line {line}: {source}")]
    Read {
        /// 1-based line number.
        line: usize,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The pipeline stopped taking input.
    #[error(transparent)]
    Closed(#[from] IngressError),
}
