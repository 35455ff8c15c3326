//! A MongoDB change-stream source: documents inserted into a collection
//! become tasks (feature `mongodb`).
//!
//! ```text
//!  collection ──insert──► change stream ──► decode (submission JSON, _id as id)
//!                                              │ valid                │ bad
//!                                     store.admit (batch)      submit_json(source n, number)
//!                                              │ new                  ▼
//!                                     submit_json ──► pipeline ──► dead-letter sink
//!                                              │                      │ OutcomeListener
//!                         settled ◄────────────┴──────────────────────┘
//!                            └─► resume token of the settled prefix ──► tokens collection
//! ```
//!
//! - [`MongoSourceConfig`]: the `[mongodb_source]` block.
//! - [`MongoSourceHandle`]: the running source; register its
//!   [`listener`](MongoSourceHandle::listener) for its
//!   [`source`](MongoSourceHandle::source) number.
//!
//! Guarantees: a restart resumes the change stream after the last document
//! whose task the store holds as accepted (or that was dead-lettered), so no
//! insert is skipped; tasks read again then are found in the store by id and
//! not run twice, and those the store holds unfinished are resumed by the
//! pipeline itself. While the store is unreachable, admission retries and
//! the stream is not read further. The first start watches from the moment
//! the stream opens.

mod config;
mod connector;
mod decode;
mod error;
mod progress;
mod tokens;

pub use config::MongoSourceConfig;
pub use connector::{MongoSourceContext, MongoSourceHandle};
pub use error::MongoSourceError;
