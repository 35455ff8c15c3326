//! The HTTP API (axum), one file per concern:
//!
//! - [`server`]: the shared [`ApiContext`], the router and [`HttpServer`].
//! - [`submit`]: `POST /v1/tasks` — validation, refusal at submission and
//!   idempotent admission.
//! - [`tasks`]: `GET /v1/tasks/{id}`, `GET /v1/tasks`, `GET /v1/stats`;
//!   paging and filters in [`listing`], cluster-wide answers via [`peers`].
//! - [`control`]: cancel, executors joining and leaving, reservations.
//! - [`inventory`]: executors, reservations and models as listings.
//! - [`lineage`]: the lineage graph's queries.
//! - [`ui`]: the web dashboard at `/ui/`.
//! - [`responses`]: error answers and store calls off the async threads.
//!
//! The monitoring endpoints (`/metrics`, `/v1/queries`, `/v1/alerts`) are
//! [`crate::monitoring`]'s and are merged into the same router.
//!
//! ```text
//!  request ─► router ─► handler ─► validator / store / ingress ─► dataflow
//!                                     ▲
//!             live states (running, retrying) overlaid on store records
//! ```

pub mod admitter;
pub mod control;
pub mod inventory;
pub mod lineage;
pub mod listing;
pub mod peers;
pub mod responses;
pub mod server;
pub mod submit;
pub mod tasks;
pub mod ui;

pub use server::{ApiContext, HttpServer};
