//! What can go wrong talking to MongoDB, and which failures are worth
//! another try.
//!
//! An attempt fails with a [`Failure`]; [`Failure::is_transient`] decides
//! whether the retry loop in [`super::exec`] tries again (the server is
//! unreachable, a transaction conflicted, a primary stepped down) or gives
//! up at once (a bad document, a rejected command). Failures that end an
//! operation become the store's [`StoreError`].

use mongodb::error::{
    Error as DriverError, ErrorKind, RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT,
};

use crate::store::StoreError;

/// Server error codes that say "try again": the server is stepping down,
/// shutting down, unreachable, or a write conflicted with another.
pub const RETRYABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    189,   // PrimarySteppedDown
    251,   // NoSuchTransaction (the server lost it, for example on restart)
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// The server's code for a duplicate key (here: an `_id` that exists).
pub const DUPLICATE_KEY: i32 = 11000;

/// One failed attempt of a store operation.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The driver or the server failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// A document changed between reading and writing it inside a
    /// transaction (another writer got there first); the attempt is
    /// aborted and made again.
    #[error("{0} changed concurrently")]
    Conflict(String),
    /// An insert named a task id that exists (unique `_id`): another
    /// writer inserted it first, or a batch guessed new was not; the
    /// attempt is aborted and made again, reading first.
    #[error("task already stored ({0})")]
    ExistingId(String),
    /// The server refused a write.
    #[error("write refused (code {code}): {message}")]
    Write {
        /// The server's error code.
        code: i32,
        /// The server's account.
        message: String,
    },
    /// A stored document could not be decoded, or a value encoded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Failure {
    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            Failure::Driver(e) => is_transient(e),
            Failure::Conflict(_) | Failure::ExistingId(_) => true,
            Failure::Write { code, .. } => RETRYABLE_CODES.contains(code),
            Failure::Store(_) => false,
        }
    }

    /// Whether this failure says an inserted id exists (however the
    /// server reported it).
    pub fn is_existing_id(&self) -> bool {
        match self {
            Failure::ExistingId(_) => true,
            Failure::Write { code, .. } => *code == DUPLICATE_KEY,
            Failure::Driver(e) => match e.kind.as_ref() {
                ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
                ErrorKind::Write(mongodb::error::WriteFailure::WriteError(w)) => {
                    w.code == DUPLICATE_KEY
                }
                _ => false,
            },
            Failure::Conflict(_) | Failure::Store(_) => false,
        }
    }

    /// The store error this failure ends `operation` with.
    pub fn into_store_error(self, operation: &'static str) -> StoreError {
        match self {
            Failure::Store(e) => e,
            other => StoreError::Database {
                operation,
                detail: other.to_string(),
            },
        }
    }
}

/// Whether a driver error is worth another attempt.
pub fn is_transient(e: &DriverError) -> bool {
    if [
        TRANSIENT_TRANSACTION_ERROR,
        UNKNOWN_TRANSACTION_COMMIT_RESULT,
        RETRYABLE_WRITE_ERROR,
    ]
    .iter()
    .any(|label| e.contains_label(label))
    {
        return true;
    }
    match e.kind.as_ref() {
        ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::ServerSelection { .. } => true,
        ErrorKind::Command(c) => RETRYABLE_CODES.contains(&c.code),
        _ => false,
    }
}

/// A decoding failure for the document with id `key`.
pub fn corrupt(key: impl ToString, detail: impl ToString) -> Failure {
    Failure::Store(StoreError::Corrupt {
        key: key.to_string(),
        detail: detail.to_string(),
    })
}

/// An encoding failure for `what`.
pub fn encode(what: &'static str, detail: impl ToString) -> Failure {
    Failure::Store(StoreError::Encode {
        what,
        detail: detail.to_string(),
    })
}
