//! Decoding and validating submitted tasks.
//!
//! A record's bytes are parsed into a [`TaskSubmission`] (the JSON schema
//! users write), checked against [`ValidationLimits`], and turned into a
//! [`Task`]. Every failure becomes a specific [`RejectReason`] naming the
//! offending field; nothing here panics on any input.

mod batch;
mod limits;
mod submission;
mod validator;

pub use batch::split_submissions;
pub use limits::{ValidationLimits, DEFAULT_TIMEOUT_MS};
pub use submission::{ResourcesSubmission, TaskSubmission};
pub use validator::{check_task, AdmissionCheck, Validator};
