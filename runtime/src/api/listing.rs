//! `GET /v1/tasks`: task records page by page, with filters.
//!
//! Query parameters: `state` (any state word), `tenant`, `kind`, `since`
//! (acceptance time, microseconds since the Unix epoch), `limit` (1 to
//! [`MAX_PAGE`], default [`DEFAULT_PAGE`]), `cursor` (the previous page's
//! `next_cursor`) and `order` (`asc`, the default, or `desc`). Records are
//! ordered by acceptance time, then id.
//!
//! Stored states page through the store's indexes, each record shown with
//! its live state; `running` and `retrying` are listed from this process's
//! [`LiveTasks`], and `queued` leaves out what runs now. The answer is
//! `{"tasks": [...], "next_cursor": "..." | null}`.

use std::sync::Arc;

use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use tidewater_connectors::store::{TaskCursor, TaskQuery, TaskRecord, TaskState, TaskStore};

use super::responses::{error, with_store};
use super::tasks::overlaid;
use crate::live::LiveTasks;

/// Records on a page unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 100;
/// Most records on one page.
pub const MAX_PAGE: usize = 1_000;

/// The query string of `GET /v1/tasks`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    state: Option<String>,
    tenant: Option<String>,
    kind: Option<String>,
    since: Option<u64>,
    limit: Option<usize>,
    cursor: Option<String>,
    order: Option<String>,
}

impl ListParams {
    /// The page size asked for (before validation).
    pub fn limit(&self) -> usize {
        self.limit.unwrap_or(DEFAULT_PAGE)
    }

    /// The state filter asked for, as given.
    pub fn state_word(&self) -> Option<&str> {
        self.state.as_deref()
    }

    /// Keeps the listing to `tenant`'s tasks; the tenant asked for
    /// instead, if it is another.
    pub fn confine_to(&mut self, tenant: &str) -> Result<(), String> {
        match &self.tenant {
            Some(asked) if asked != tenant => Err(asked.clone()),
            _ => {
                self.tenant = Some(tenant.to_string());
                Ok(())
            }
        }
    }

    /// Whether newest first was asked for.
    pub fn is_descending(&self) -> bool {
        self.order.as_deref() == Some("desc")
    }
}

/// One page of the listing.
#[derive(Debug, Serialize, Deserialize)]
pub struct ListAnswer {
    /// The records.
    pub tasks: Vec<TaskRecord>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

/// Reads `params` into a store query, or says what is wrong with them.
fn query(params: ListParams) -> Result<TaskQuery, String> {
    let state = params.state.map(|s| s.parse::<TaskState>()).transpose()?;
    let limit = params.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(format!(
            "limit must be between 1 and {MAX_PAGE}, not {limit}"
        ));
    }
    let descending = match params.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => return Err(format!("order must be \"asc\" or \"desc\", not {other:?}")),
    };
    let after = params
        .cursor
        .as_deref()
        .map(TaskCursor::from_token)
        .transpose()?;
    Ok(TaskQuery {
        state,
        tenant: params.tenant,
        kind: params.kind,
        since_us: params.since,
        limit,
        after,
        descending,
    })
}

/// Answers one listing request.
pub async fn list_tasks(
    store: &Arc<dyn TaskStore>,
    live: &LiveTasks,
    params: ListParams,
) -> Result<ListAnswer, Response> {
    let query =
        query(params).map_err(|reason| error(StatusCode::BAD_REQUEST, "invalid_query", reason))?;
    if let Some(state @ (TaskState::Running | TaskState::Retrying)) = query.state {
        return Ok(live_page(live, &query, state));
    }
    let store_query = query.clone();
    let page = with_store(store, move |store| store.list(&store_query)).await?;
    let tasks = page
        .tasks
        .into_iter()
        .map(|record| overlaid(live, record))
        // A stored `queued` record whose task runs now is not queued.
        .filter(|record| query.state.is_none_or(|s| record.state == s))
        .collect();
    Ok(ListAnswer {
        tasks,
        next_cursor: page.next.map(|c| c.to_token()),
    })
}

/// A page of the tasks running (or retrying) in this process.
fn live_page(live: &LiveTasks, query: &TaskQuery, state: TaskState) -> ListAnswer {
    let mut records: Vec<TaskRecord> = live
        .all()
        .iter()
        .map(|entry| entry.to_record())
        .filter(|record| {
            record.state == state
                && query.matches(record)
                && query.is_past_start(&TaskCursor::of(record))
        })
        .collect();
    if query.descending {
        records.reverse();
    }
    let page = tidewater_connectors::store::TaskPage::from_overfull(records, query.limit);
    ListAnswer {
        tasks: page.tasks,
        next_cursor: page.next.map(|c| c.to_token()),
    }
}
