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
    /// A value is sealed with a key that is not configured
    /// (`store.encryption` lacks its id, or encryption is off).
    #[error("a stored value is sealed with key {key_id:?}, which store.encryption does not hold")]
    MissingKey {
        /// The id stored beside the value.
        key_id: String,
    },
    /// A sealed value did not open: the key under its id is not the one
    /// that sealed it, or the value was altered.
    #[error("store entry {key:?} does not decrypt with key {key_id:?} (wrong key, or the value was altered)")]
    Decrypt {
        /// The entry's key.
        key: String,
        /// The id stored beside the value.
        key_id: String,
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
