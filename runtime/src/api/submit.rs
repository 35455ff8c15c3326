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

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;

use tidewater_connectors::store::{Admission, TaskRecord, TaskState};
use tidewater_operators::model::{
    now_micros, AckToken, Name, RejectReason, Rejection, Task, TraceParent, TRACEPARENT_HEADER,
};
use tidewater_operators::validate::split_submissions;

use super::guard::AuditedTasks;
use super::responses::{error, with_store};
use super::server::AppState;
use super::tasks::overlaid;
use crate::auth::Principal;

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

/// The id and tenant a record names, where it names them as strings.
#[derive(Default, serde::Deserialize)]
struct Named {
    id: Option<String>,
    tenant: Option<String>,
}

impl Named {
    fn of(item: &[u8]) -> Named {
        serde_json::from_slice(item).unwrap_or_default()
    }

    fn id(&self) -> Option<Name> {
        self.id
            .as_deref()
            .filter(|id| !id.is_empty() && id.len() <= 256)
            .map(Name::from)
    }
}

fn rejection(
    item: &[u8],
    reason: RejectReason,
    task_id: Option<Name>,
    tenant: Option<Name>,
    at_us: u64,
    trace: Option<TraceParent>,
) -> Rejection {
    const EXCERPT: usize = 256;
    let mut end = item.len().min(EXCERPT);
    while end > 0 && end < item.len() && (item[end] & 0b1100_0000) == 0b1000_0000 {
        end -= 1;
    }
    Rejection {
        reason,
        task_id,
        tenant,
        source_name: Name::from("http"),
        excerpt: String::from_utf8_lossy(&item[..end]).into_owned(),
        ack: AckToken::NONE,
        at_us,
        trace,
    }
}

pub(crate) async fn submit(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The caller's W3C trace context: each task's span becomes its child.
    let trace = headers
        .get(TRACEPARENT_HEADER)
        .and_then(|value| TraceParent::parse_bytes(value.as_bytes()));
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
            let tenant = principal.confined_tenant().map(Name::from);
            let dead = vec![rejection(&body, reason, None, tenant, now_micros(), trace)];
            return match dead_letter(&state, dead).await {
                Ok(()) => answer,
                Err(failed) => failed,
            };
        }
    };

    let now = now_micros();
    let mut tasks: Vec<(usize, Task)> = Vec::with_capacity(items.len());
    let mut refused = Vec::new();
    let mut forbidden = Vec::new();
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
            let named = Named::of(item);
            // A submitter's tasks are its tenant's: a body naming another
            // is refused outright (and not dead-lettered: the id may be
            // the other tenant's).
            if let (Some(own), Some(asked)) = (principal.confined_tenant(), &named.tenant) {
                if asked != own {
                    forbidden.push(Refused {
                        index,
                        code: "forbidden_tenant",
                        reason: format!(
                            "tenant {asked:?} is not yours: tasks are submitted for tenant {own:?}"
                        ),
                    });
                    continue;
                }
            }
            let checked = validator
                .decode(item, AckToken::NONE, now)
                .map(|mut task| {
                    if let Some(own) = principal.confined_tenant() {
                        task.tenant = Name::from(own);
                    }
                    task.trace = trace;
                    task
                })
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
                    let tenant = principal
                        .confined_tenant()
                        .map(str::to_string)
                        .or(named.tenant.clone())
                        .map(Name::from);
                    dead.push(rejection(item, reason, named.id(), tenant, now, trace));
                }
            }
        }
    }
    if !is_batch {
        if let Some(refusal) = forbidden.first() {
            return error(StatusCode::FORBIDDEN, refusal.code, refusal.reason.clone());
        }
    }
    let mut by_tenant: BTreeMap<String, usize> = BTreeMap::new();
    for (_, task) in &tasks {
        *by_tenant.entry(task.tenant.to_string()).or_default() += 1;
    }
    if let Err(refusal) = state.limits.check(&by_tenant) {
        return refusal.into_response();
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
                state.api.stats.backlog.add(&task.id, &task.tenant);
                if let Err(e) = state.api.ingress.submit_task("http", task) {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "shutting_down",
                        e.to_string(),
                    );
                }
            }
            // An id another tenant holds is taken, and says no more.
            Admission::Existing { record, .. } if !principal.may_act_for(&record.tenant) => {
                refused.push(Refused {
                    index,
                    code: "duplicate",
                    reason: format!("task id {:?} is taken; choose another", task.id),
                });
            }
            Admission::Existing { record, same_body } => duplicates.push(Duplicate {
                index,
                id: task.id.to_string(),
                same_body,
                task: overlaid(&state.api.live, *record),
            }),
        }
    }
    refused.extend(forbidden);
    refused.sort_by_key(|r| r.index);
    let audited = AuditedTasks(accepted.clone());
    if is_batch {
        let answer = BatchAnswer {
            accepted,
            duplicates,
            rejected: refused,
        };
        return (StatusCode::OK, Extension(audited), Json(answer)).into_response();
    }
    if let Some(id) = accepted.first() {
        return (
            StatusCode::ACCEPTED,
            Extension(audited),
            Json(serde_json::json!({ "id": id })),
        )
            .into_response();
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
        Some(r) if r.code == "duplicate" => error(StatusCode::CONFLICT, r.code, r.reason.clone()),
        Some(r) => error(StatusCode::BAD_REQUEST, r.code, r.reason.clone()),
        None => error(
            StatusCode::BAD_REQUEST,
            "empty",
            "no task in the request".into(),
        ),
    }
}

/// Records refused submissions in the store's dead letters and counters.
/// A refusal naming the id of a task that exists (and was not itself
/// refused) is dead-lettered without that id: a bad resubmission must not
/// end the task that holds it.
async fn dead_letter(state: &AppState, mut dead: Vec<Rejection>) -> Result<(), Response> {
    let count = dead.len();
    // Their spans are exported once the refusals are recorded.
    let traced = state.api.task_spans.as_ref().map(|_| dead.clone());
    with_store(&state.api.store, move |store| {
        for rejection in &mut dead {
            if let Some(id) = &rejection.task_id {
                if store
                    .get(id)?
                    .is_some_and(|record| record.state != TaskState::Rejected)
                {
                    rejection.task_id = None;
                }
            }
        }
        store.record_rejections(&dead)
    })
    .await?;
    state.api.stats.record_refusals(count);
    if let (Some(spans), Some(refused)) = (&state.api.task_spans, traced) {
        spans.record_rejections(&refused);
    }
    Ok(())
}
