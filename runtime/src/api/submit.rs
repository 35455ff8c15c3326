//! `POST /v1/tasks`: one task object or an array of them.
//!
//! Each is validated at once, then checked against what could ever run it
//! (a handler for its kind, a built-in's payload shape, the command
//! allowlist, its deadline). A valid task with a new id is admitted to the
//! store and enters the pipeline (`202`); an id that exists is not run
//! again (admissions of concurrent requests share one store commit, see
//! [`super::admitter`]): `200` with the existing record when the body is the same, `409`
//! with it when it differs. Refused items are answered `400` with the
//! reason and field path, and dead-lettered in the store, so their id reads
//! back as `rejected`. While the process drains, new tasks get `503`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use tidewater_connectors::store::{Admission, TaskRecord};
use tidewater_operators::model::{now_micros, AckToken, Name, RejectReason, Rejection, Task};
use tidewater_operators::validate::split_submissions;

use super::responses::{error, with_store};
use super::server::AppState;
use super::tasks::overlaid;

#[derive(Serialize)]
struct Refused {
    index: usize,
    code: &'static str,
    reason: String,
}

#[derive(Serialize)]
struct Duplicate {
    index: usize,
    id: String,
    same_body: bool,
    task: TaskRecord,
}

#[derive(Serialize)]
struct BatchAnswer {
    accepted: Vec<String>,
    duplicates: Vec<Duplicate>,
    rejected: Vec<Refused>,
}

/// The id a refused record names, when it names one as a string.
fn named_id(item: &[u8]) -> Option<Name> {
    #[derive(serde::Deserialize)]
    struct Named<'a> {
        #[serde(borrow)]
        id: Option<&'a str>,
    }
    serde_json::from_slice::<Named>(item)
        .ok()
        .and_then(|n| n.id)
        .filter(|id| !id.is_empty() && id.len() <= 256)
        .map(Name::from)
}

fn rejection(item: &[u8], reason: RejectReason, task_id: Option<Name>, at_us: u64) -> Rejection {
    const EXCERPT: usize = 256;
    let mut end = item.len().min(EXCERPT);
    while end > 0 && end < item.len() && (item[end] & 0b1100_0000) == 0b1000_0000 {
        end -= 1;
    }
    Rejection {
        reason,
        task_id,
        source_name: Name::from("http"),
        excerpt: String::from_utf8_lossy(&item[..end]).into_owned(),
        ack: AckToken::NONE,
        at_us,
    }
}

pub(crate) async fn submit(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    if state
        .api
        .draining
        .load(std::sync::atomic::Ordering::Acquire)
    {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "this process is shutting down and takes no new tasks; submit to another process or after the restart".into(),
        );
    }
    let (is_batch, items) = match split_submissions(&body) {
        Ok(split) => split,
        Err(reason) => {
            let answer = error(StatusCode::BAD_REQUEST, reason.code(), reason.to_string());
            let dead = vec![rejection(&body, reason, None, now_micros())];
            return match dead_letter(&state, dead).await {
                Ok(()) => answer,
                Err(failed) => failed,
            };
        }
    };

    let now = now_micros();
    let mut tasks: Vec<(usize, Task)> = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    let mut dead = Vec::new();
    {
        let Ok(mut validator) = state.validator.lock() else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "validator unavailable".into(),
            );
        };
        for (index, item) in items.iter().enumerate() {
            let checked = validator
                .decode(item, AckToken::NONE, now)
                .and_then(|task| {
                    state
                        .api
                        .handlers
                        .check(&task, state.remote_agents)
                        .map(|()| task)
                });
            match checked {
                Ok(task) => tasks.push((index, task)),
                Err(reason) => {
                    refused.push(Refused {
                        index,
                        code: reason.code(),
                        reason: reason.to_string(),
                    });
                    dead.push(rejection(item, reason, named_id(item), now));
                }
            }
        }
    }
    if !dead.is_empty() {
        if let Err(failed) = dead_letter(&state, dead).await {
            return failed;
        }
    }
    let to_admit: Vec<Task> = tasks.iter().map(|(_, t)| t.clone()).collect();
    let admissions = if to_admit.is_empty() {
        Vec::new()
    } else {
        match state.admitter.admit(to_admit).await {
            Ok(admissions) => admissions,
            Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, "store", e.to_string()),
        }
    };
    let mut accepted = Vec::new();
    let mut duplicates = Vec::new();
    for ((index, task), admission) in tasks.into_iter().zip(admissions) {
        match admission {
            Admission::New => {
                accepted.push(task.id.to_string());
                if let Err(e) = state.api.ingress.submit_task("http", task) {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "shutting_down",
                        e.to_string(),
                    );
                }
            }
            Admission::Existing { record, same_body } => duplicates.push(Duplicate {
                index,
                id: task.id.to_string(),
                same_body,
                task: overlaid(&state.api.live, *record),
            }),
        }
    }
    if is_batch {
        let answer = BatchAnswer {
            accepted,
            duplicates,
            rejected: refused,
        };
        return (StatusCode::OK, Json(answer)).into_response();
    }
    if let Some(id) = accepted.first() {
        return (StatusCode::ACCEPTED, Json(serde_json::json!({ "id": id }))).into_response();
    }
    if let Some(duplicate) = duplicates.into_iter().next() {
        return if duplicate.same_body {
            (StatusCode::OK, Json(duplicate.task)).into_response()
        } else {
            (
                StatusCode::CONFLICT,
                Json(serde_json::json!({
                    "code": "duplicate",
                    "reason": format!(
                        "a different task with id {:?} was already submitted; it is not run again",
                        duplicate.id
                    ),
                    "task": duplicate.task,
                })),
            )
                .into_response()
        };
    }
    match refused.first() {
        Some(r) => error(StatusCode::BAD_REQUEST, r.code, r.reason.clone()),
        None => error(
            StatusCode::BAD_REQUEST,
            "empty",
            "no task in the request".into(),
        ),
    }
}

/// Records refused submissions in the store's dead letters and counters.
async fn dead_letter(state: &AppState, dead: Vec<Rejection>) -> Result<(), Response> {
    let count = dead.len();
    with_store(&state.api.store, move |store| {
        store.record_rejections(&dead)
    })
    .await?;
    state.api.stats.record_refusals(count);
    Ok(())
}
