//! The store's error type.

/// A store operation that failed, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("opening store {path}: {detail}")]
    Open {
        /// The database file.
        path: String,
        /// Why.
        detail: String,
    },
    /// A transaction failed.
    #[error("store {operation}: {detail}")]
    Database {
        /// What was being done.
        operation: &'static str,
        /// The database's account.
        detail: String,
    },
    /// A stored value could not be decoded.
    #[error("corrupt store entry {key:?}: {detail}")]
    Corrupt {
        /// The entry's key.
        key: String,
        /// The decoder's account.
        detail: String,
    },
    /// A value could not be encoded.
    #[error("encoding {what}: {detail}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The encoder's account.
        detail: String,
    },
}

impl StoreError {
    pub(crate) fn db(operation: &'static str) -> impl FnOnce(redb::Error) -> StoreError {
        move |e| StoreError::Database {
            operation,
            detail: e.to_string(),
        }
    }
}
