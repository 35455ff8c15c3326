//! The HTTP API (axum), one file per concern:
//!
//! - [`server`]: the shared [`ApiContext`], the router and [`HttpServer`].
//! - [`submit`]: `POST /v1/tasks` — validation, refusal at submission and
//!   idempotent admission, through [`admitter`] (concurrent requests share
//!   one store commit).
//! - [`tasks`]: `GET /v1/tasks/{id}`, `GET /v1/tasks`, `GET /v1/stats`;
//!   paging and filters in [`listing`], cluster-wide answers via [`peers`].
//! - [`control`]: cancel, executors joining and leaving, reservations.
//! - [`inventory`]: executors, reservations and models as listings.
//! - [`lineage`]: the lineage graph's queries.
//! - [`ui`]: the web dashboard at `/ui/`.
//! - [`responses`]: error answers and store calls off the async threads.
//! - [`guard`]: authentication, roles and the audit log in front of every
//!   endpoint (see [`crate::auth`]); [`tokens`]: `/v1/tokens` for admins.
//! - [`submit_limits`]: rate and backlog bounds on submissions.
//! - [`tls`]: HTTPS when `http.tls` is set.
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
pub mod guard;
pub mod inventory;
pub mod lineage;
pub mod listing;
pub mod peers;
pub mod responses;
pub mod server;
pub mod submit;
pub mod submit_limits;
pub mod tasks;
pub mod tls;
pub mod tokens;
pub mod ui;

pub use server::{ApiContext, HttpServer};
