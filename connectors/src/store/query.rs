//! Admission answers and task listings: the shapes stores answer in.
//!
//! Listings are ordered by `(submitted_at_us, id)`, so a page ends at a
//! [`TaskCursor`] and the next page starts right after it; stores keep an
//! index per filter, so each page costs the same however many tasks are
//! stored.

use serde::{Deserialize, Serialize};

use super::{TaskRecord, TaskState};

/// What admitting one task found.
#[derive(Clone, Debug, PartialEq)]
pub enum Admission {
    /// The id was new (or held only a rejection): the task is now recorded
    /// `queued`.
    New,
    /// The id exists; nothing changed.
    Existing {
        /// The record as it stands.
        record: Box<TaskRecord>,
        /// Whether the stored task asked for exactly the same as this one
        /// (see [`fingerprint`](super::fingerprint)).
        same_body: bool,
    },
}

impl Admission {
    /// Whether the task was newly recorded.
    pub fn is_new(&self) -> bool {
        matches!(self, Admission::New)
    }
}

/// Where a page of a listing ended.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskCursor {
    /// Acceptance time of the last task on the page.
    pub submitted_at_us: u64,
    /// Its id.
    pub id: String,
}

impl TaskCursor {
    /// The cursor of `record`.
    pub fn of(record: &TaskRecord) -> Self {
        TaskCursor {
            submitted_at_us: record.submitted_at_us,
            id: record.id.clone(),
        }
    }

    /// The opaque token handed to API clients.
    pub fn to_token(&self) -> String {
        format!("{}:{}", self.submitted_at_us, self.id)
    }

    /// Reads a token made by [`to_token`](Self::to_token).
    pub fn from_token(token: &str) -> Result<Self, String> {
        let (at, id) = token
            .split_once(':')
            .ok_or_else(|| format!("cursor {token:?} is not one this API handed out"))?;
        let submitted_at_us = at
            .parse()
            .map_err(|_| format!("cursor {token:?} is not one this API handed out"))?;
        Ok(TaskCursor {
            submitted_at_us,
            id: id.to_string(),
        })
    }
}

/// Which tasks to list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskQuery {
    /// Only tasks in this stored state.
    pub state: Option<TaskState>,
    /// Only this tenant's tasks.
    pub tenant: Option<String>,
    /// Only tasks of this kind.
    pub kind: Option<String>,
    /// Only tasks accepted at or after this time, microseconds.
    pub since_us: Option<u64>,
    /// Most tasks on the page.
    pub limit: usize,
    /// Start after this task (the previous page's cursor).
    pub after: Option<TaskCursor>,
    /// Newest first instead of oldest first.
    pub descending: bool,
}

impl TaskQuery {
    /// Whether `record` passes the filters (the cursor aside).
    pub fn matches(&self, record: &TaskRecord) -> bool {
        self.state.is_none_or(|s| record.state == s)
            && self.tenant.as_deref().is_none_or(|t| record.tenant == t)
            && self.kind.as_deref().is_none_or(|k| record.kind == k)
            && self.since_us.is_none_or(|s| record.submitted_at_us >= s)
    }

    /// Whether `cursor` lies strictly beyond the page start.
    pub fn is_past_start(&self, cursor: &TaskCursor) -> bool {
        match &self.after {
            None => true,
            Some(after) if self.descending => cursor < after,
            Some(after) => cursor > after,
        }
    }
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskPage {
    /// The tasks, in listing order.
    pub tasks: Vec<TaskRecord>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<TaskCursor>,
}

impl TaskPage {
    /// A page of `tasks` read with `limit`: when the store found one more
    /// than the limit, there is a next page.
    pub fn from_overfull(mut tasks: Vec<TaskRecord>, limit: usize) -> Self {
        let next = if tasks.len() > limit {
            tasks.truncate(limit);
            tasks.last().map(TaskCursor::of)
        } else {
            None
        };
        TaskPage { tasks, next }
    }
}
