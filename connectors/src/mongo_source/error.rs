//! The change-stream source's errors.

/// Why the source could not start.
#[derive(Debug, thiserror::Error)]
pub enum MongoSourceError {
    /// A config value is out of range.
    #[error("invalid `mongodb_source.{key}`: {detail}")]
    Config {
        /// The key.
        key: &'static str,
        /// Why.
        detail: String,
    },
    /// The connection string could not be read.
    #[error("mongodb_source.url: {0}")]
    Url(String),
}
