//! Reading tasks back: `GET /v1/tasks/{id}` (the record with its live
//! state, `running` or `retrying`, from [`LiveTasks`], and its result),
//! `GET /v1/tasks` (a page of records, see [`super::listing`]) and
//! `GET /v1/stats` (run counters with the store's counts by state).
//!
//! In a multi-process cluster, lookups and listings answer for every task
//! wherever it was taken in, asking the other processes ([`super::peers`])
//! when this one cannot settle them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};

use tidewater_connectors::store::{TaskCursor, TaskRecord, TaskState, TaskStore};

use super::listing::{list_tasks, ListAnswer, ListParams};
use super::peers::{self, Peers};
use super::responses::{error, with_store};
use super::server::AppState;
use crate::auth::Principal;
use crate::live::LiveTasks;

/// `record` with the live state of its task, if it has one here.
pub(crate) fn overlaid(live: &LiveTasks, mut record: TaskRecord) -> TaskRecord {
    if let Some(entry) = live.get(&record.id) {
        entry.overlay(&mut record);
    }
    record
}

/// The record of task `id` as this process knows it: its store's record
/// with the live state here, or only the live state.
pub(crate) async fn local_record(
    store: &Arc<dyn TaskStore>,
    live: &LiveTasks,
    id: &str,
) -> Result<Option<TaskRecord>, Response> {
    let lookup = id.to_string();
    let stored = with_store(store, move |store| store.get(&lookup)).await?;
    Ok(match stored {
        Some(record) => Some(overlaid(live, record)),
        None => live.get(id).map(|entry| entry.to_record()),
    })
}

/// The record of task `id` in the whole cluster: this process's when it
/// settles the question (a final record, or a live attempt here), else the
/// most advanced of every process's. Peer requests answer locally.
pub(crate) async fn cluster_record(
    store: &Arc<dyn TaskStore>,
    live: &LiveTasks,
    peers: &Peers,
    headers: &HeaderMap,
    id: &str,
) -> Result<Option<TaskRecord>, Response> {
    let local = local_record(store, live, id).await?;
    let settled = local
        .as_ref()
        .is_some_and(|r| r.state.is_final() || peers::progress(r) > 0);
    if settled || peers.is_empty() || headers.contains_key(peers::LOCAL_ONLY) {
        return Ok(local);
    }
    let remote = peers
        .task(id, headers.get(axum::http::header::AUTHORIZATION))
        .await;
    Ok(peers::most_advanced(local.into_iter().chain(remote)))
}

pub(crate) async fn get_task(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let found = cluster_record(
        &state.api.store,
        &state.api.live,
        &state.peers,
        &headers,
        &id,
    )
    .await;
    match found {
        // Another tenant's task is as unknown as a missing one.
        Ok(Some(record)) if principal.may_act_for(&record.tenant) => Json(record).into_response(),
        Ok(_) => not_found(&id),
        Err(failed) => failed,
    }
}

/// The answer for a task that is unknown, or not the caller's to see.
pub(crate) fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no task with id {id:?}"),
    )
}

pub(crate) async fn list(
    State(state): State<Arc<AppState>>,
    Extension(principal): Extension<Principal>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    Query(mut params): Query<ListParams>,
) -> Response {
    // A submitter lists its own tenant's tasks, whatever it asks for.
    if let Some(own) = principal.confined_tenant() {
        if let Err(other) = params.confine_to(own) {
            return error(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("tenant {other:?} is not yours to list"),
            );
        }
    }
    let limit = params.limit();
    let descending = params.is_descending();
    let params_state = params.state_word().map(str::to_string);
    let mut page = match list_tasks(&state.api.store, &state.api.live, params).await {
        Ok(page) => page,
        Err(failed) => return failed,
    };
    if state.peers.is_empty() {
        return Json(page).into_response();
    }
    if headers.contains_key(peers::LOCAL_ONLY) {
        // A peer merges this page; it also needs what runs here, since
        // records of tasks taken in elsewhere are not on this page.
        let live: Vec<TaskRecord> = state
            .api
            .live
            .all()
            .iter()
            .map(|entry| entry.to_record())
            .filter(|record| principal.may_act_for(&record.tenant))
            .collect();
        return Json(serde_json::json!({
            "tasks": page.tasks,
            "next_cursor": page.next_cursor,
            "live": live,
        }))
        .into_response();
    }
    let wanted = params_state.as_deref().map(str::parse::<TaskState>);
    // Every process lists from the same cursor; the merged page is the
    // first `limit` of all, and the cursor is global (acceptance time, id).
    let authorization = headers.get(axum::http::header::AUTHORIZATION);
    let others = match state
        .peers
        .pages(raw.as_deref().unwrap_or(""), authorization)
        .await
    {
        Ok(others) => others,
        Err(reason) => return error(StatusCode::BAD_GATEWAY, "peer", reason),
    };
    let mut more = page.next_cursor.is_some();
    let mut tasks = std::mem::take(&mut page.tasks);
    // What runs anywhere in the cluster: here, and on every peer.
    let mut live_elsewhere: HashMap<String, TaskRecord> = state
        .api
        .live
        .all()
        .iter()
        .map(|entry| (entry.id.clone(), entry.to_record()))
        .collect();
    for other in others {
        more |= other.next_cursor.is_some();
        tasks.extend(other.tasks);
        live_elsewhere.extend(other.live.into_iter().map(|r| (r.id.clone(), r)));
    }
    // A record taken in by one process whose attempt runs on another
    // process's executor shows that attempt's state.
    if !live_elsewhere.is_empty() {
        for record in &mut tasks {
            if let Some(live) = live_elsewhere.get(&record.id) {
                if !record.state.is_final() && peers::progress(live) > peers::progress(record) {
                    record.state = live.state;
                    record.executor = live.executor.clone();
                    record.attempts = live.attempts;
                    record.started_at_us = live.started_at_us;
                    record.next_attempt_at_us = live.next_attempt_at_us;
                    if live.reason.is_some() {
                        record.reason = live.reason.clone();
                    }
                }
            }
        }
        if let Some(Ok(wanted)) = wanted {
            tasks.retain(|record| record.state == wanted);
        }
    }
    tasks.sort_by(|a, b| {
        let order = (a.submitted_at_us, &a.id).cmp(&(b.submitted_at_us, &b.id));
        if descending {
            order.reverse()
        } else {
            order
        }
    });
    tasks.dedup_by(|b, a| {
        let same = a.id == b.id;
        if same && peers::progress(b) > peers::progress(a) {
            std::mem::swap(a, b);
        }
        same
    });
    more |= tasks.len() > limit;
    tasks.truncate(limit);
    let next_cursor = if more {
        tasks.last().map(|r| TaskCursor::of(r).to_token())
    } else {
        None
    };
    Json(ListAnswer { tasks, next_cursor }).into_response()
}

pub(crate) async fn stats(State(state): State<Arc<AppState>>) -> Response {
    let counts = match with_store(&state.api.store, |store| store.counts()).await {
        Ok(counts) => counts,
        Err(failed) => return failed,
    };
    let (running, retrying) = state.api.live.counts();
    let mut body = match serde_json::to_value(state.api.stats.snapshot()) {
        Ok(body) => body,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    };
    body["store"] = serde_json::json!({
        "queued": counts.queued.saturating_sub(running + retrying),
        "running": running,
        "retrying": retrying,
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "timed_out": counts.timed_out,
        "cancelled": counts.cancelled,
        "rejected": counts.rejected,
    });
    Json(body).into_response()
}
