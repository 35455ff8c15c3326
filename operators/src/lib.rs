//! Tidewater's data model and the timely dataflow operators built on it.
//!
//! This crate is pure dataflow logic: it performs no I/O and owns no async
//! runtime. Records enter as [`model::SourceRecord`]s carrying an
//! [`model::AckToken`], are decoded and validated ([`validate`]), placed on
//! executors by a per-worker shard allocator ([`allocate`]), run by an
//! [`dataflow::execute`] bridge whose handlers live elsewhere, and leave as
//! [`model::Completion`]s that are fed back to release resources.
//!
//! ```text
//!  SourceRecord ─► decode ─┬─► Task ─► coordinate ─► Assignment ─► execute ─┬─► Completion
//!                          └─► Rejection            ▲                        │
//!                                                   └──── release (loop) ◄───┘
//! ```
#![forbid(missing_docs)]

pub mod allocate;
pub mod dataflow;
pub mod learn;
pub mod model;
pub mod validate;
