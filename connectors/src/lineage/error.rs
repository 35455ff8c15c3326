//! Why a lineage write or query failed.

/// A lineage graph failure, saying what was being done.
#[derive(Debug, thiserror::Error)]
pub enum LineageError {
    /// The client could not be set up for the server (for example a bad URI).
    #[error("lineage graph at {uri}: {source}")]
    Connect {
        /// The configured server.
        uri: String,
        /// The driver's error.
        source: neo4rs::Error,
    },
    /// A statement failed (the server was unreachable, or refused it).
    #[error("lineage graph: {context}: {source}")]
    Query {
        /// What the statement was for.
        context: &'static str,
        /// The driver's error.
        source: neo4rs::Error,
    },
    /// A result row did not hold what the query returns.
    #[error("lineage graph: reading `{column}` of a {context} row: {source}")]
    Decode {
        /// What the query was for.
        context: &'static str,
        /// The column.
        column: &'static str,
        /// The decoder's error.
        source: neo4rs::DeError,
    },
}
