//! The duplicate check for broker deliveries, as the dataflow's
//! [`Screen`](tidewater_dataflows::screen::Screen) on every worker.
//!
//! A task from a broker (one that carries an acknowledgement token) is
//! admitted to the store before it is coordinated, as HTTP submissions
//! are ([`crate::api::submit`]), in one transaction per batch:
//!
//! ```text
//!  Decode ─► tasks ─► TaskStore::admit ─┬─ New ─────────────────────────► Coordinate
//!                                       ├─ Existing, same body ─────────► Coordinate
//!                                       │   (a redelivery after a crash: it runs or
//!                                       │    resumes; a finished one republishes the
//!                                       │    stored result, the first outcome wins)
//!                                       └─ Existing, another body ──────► rejection
//!                                           `duplicate` ─► dead letter, acknowledged
//! ```
//!
//! A broker cannot tell a crash redelivery from a second message with the
//! same body, so both run as a redelivery does; only a message that asks
//! for something else under a taken id is refused. The record admitted
//! here keeps the delivery's token, so a restart leaves broker tasks to
//! their broker's redelivery instead of resuming them from the store as
//! well (see [`resumable`]). Tasks without a token (HTTP, in-process,
//! resumed, MongoDB source) were admitted where they entered and pass.

use std::sync::Arc;

use tidewater_connectors::store::{Admission, TaskStore};
use tidewater_dataflows::screen::Screen;
use tidewater_operators::model::{now_micros, Name, RejectReason, Rejection, Task};

/// Bytes of the task kept in a duplicate's rejection excerpt.
const EXCERPT: usize = 256;

/// The screen that admits broker deliveries into `store` and refuses
/// those whose id a different task holds.
// The screen answers in `Result`s, which the dataflow splits; a rejection
// is large, but moved, never boxed.
#[allow(clippy::result_large_err)]
pub fn duplicate_screen(store: Arc<dyn TaskStore>) -> Screen {
    Box::new(move |batch: Vec<Task>| {
        let (brokered, others): (Vec<Task>, Vec<Task>) =
            batch.into_iter().partition(|task| task.ack.is_some());
        let mut answers: Vec<Result<Task, Rejection>> = others.into_iter().map(Ok).collect();
        if brokered.is_empty() {
            return answers;
        }
        match store.admit(&brokered) {
            Ok(admissions) => {
                let now = now_micros();
                answers.extend(
                    brokered
                        .into_iter()
                        .zip(admissions)
                        .map(|(task, admission)| match admission {
                            Admission::New
                            | Admission::Existing {
                                same_body: true, ..
                            } => Ok(task),
                            Admission::Existing { record, .. } => {
                                Err(duplicate(&task, record.state.as_str(), now))
                            }
                        }),
                );
            }
            Err(e) => {
                // Not knowing is no reason to drop work: the tasks run as
                // they did before this check, and the store keeps the
                // first outcome recorded for an id.
                tracing::error!(error = %e, count = brokered.len(), "admitting broker deliveries failed; running them unchecked");
                answers.extend(brokered.into_iter().map(Ok));
            }
        }
        answers
    })
}

/// The rejection of `task`, whose id a different task holds in `state`.
/// It names no task id, so that dead-lettering it leaves the existing
/// record as it is.
fn duplicate(task: &Task, state: &str, at_us: u64) -> Rejection {
    let mut excerpt = serde_json::to_string(task).unwrap_or_default();
    if excerpt.len() > EXCERPT {
        let mut end = EXCERPT;
        while !excerpt.is_char_boundary(end) {
            end -= 1;
        }
        excerpt.truncate(end);
    }
    Rejection {
        reason: RejectReason::Duplicate {
            id: task.id.to_string(),
            state: state.to_string(),
        },
        task_id: None,
        tenant: None,
        source_name: Name::from("broker"),
        excerpt,
        ack: task.ack,
        at_us,
        trace: task.trace,
    }
}

/// Whether a task the store holds as unfinished is resumed at start: not
/// when it came from a broker this process consumes again (`brokers`),
/// which redelivers what was not acknowledged.
pub fn resumable(task: &Task, brokers: bool) -> bool {
    !(brokers && task.ack.is_some())
}
