//! The questions users ask of the lineage graph: what an agent or executor
//! ran in a time range (and which of those failed), and one task's lineage.

use neo4rs::{query, Query, Row};
use serde::{Deserialize, Serialize};

use super::error::LineageError;
use super::graph::LineageGraph;
use super::schema;

/// Whose activity to list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    /// The tasks an agent submitted (`SUBMITTED_BY`).
    Agent(String),
    /// The tasks an executor ran (`EXECUTED`).
    Executor(String),
}

/// One `EXECUTED` relationship: an attempt of a task on an executor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    /// The task.
    pub task: String,
    /// Where it ran.
    pub executor: String,
    /// Which attempt, from 1.
    pub attempt: i64,
    /// `succeeded`, `failed`, `timed_out` or `cancelled`.
    pub outcome: String,
    /// Why it failed, for failures.
    pub reason: Option<String>,
    /// When the attempt started, milliseconds since the Unix epoch.
    pub started_at_ms: i64,
    /// When it finished, milliseconds since the Unix epoch.
    pub finished_at_ms: i64,
    /// Its run time in milliseconds.
    pub duration_ms: i64,
}

impl Execution {
    /// Whether the attempt ended other than successfully.
    pub fn failed(&self) -> bool {
        self.outcome != "succeeded"
    }

    fn from_row(row: &Row) -> Result<Self, LineageError> {
        Ok(Execution {
            task: column(row, "task")?,
            executor: column(row, "executor")?,
            attempt: column(row, "attempt")?,
            outcome: column(row, "outcome")?,
            reason: column(row, "reason")?,
            started_at_ms: column(row, "started_at_ms")?,
            finished_at_ms: column(row, "finished_at_ms")?,
            duration_ms: column(row, "duration_ms")?,
        })
    }
}

/// What an agent or executor ran in a time range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Executions finished in the range, oldest first (at most the limit).
    pub executions: Vec<Execution>,
    /// How many of them there are.
    pub ran: usize,
    /// How many of them did not succeed.
    pub failed: usize,
    /// Whether the limit cut the list short.
    pub truncated: bool,
}

/// One task's place in the graph.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskLineage {
    /// Task id.
    pub id: String,
    /// Task kind (absent for a task known only as another's dependency).
    pub kind: Option<String>,
    /// Owning tenant (likewise).
    pub tenant: Option<String>,
    /// Its final outcome, or `retrying` while only attempts that are
    /// retried are recorded (absent likewise).
    pub state: Option<String>,
    /// The agent that submitted it, when it named one.
    pub submitted_by: Option<String>,
    /// Tasks it depends on.
    pub depends_on: Vec<String>,
    /// Tasks that depend on it.
    pub dependents: Vec<String>,
    /// Its recorded attempts, in attempt order.
    pub executions: Vec<Execution>,
}

fn column<T: serde::de::DeserializeOwned>(
    row: &Row,
    column: &'static str,
) -> Result<T, LineageError> {
    row.get(column).map_err(|source| LineageError::Decode {
        context: "lineage",
        column,
        source,
    })
}

impl LineageGraph {
    /// What `subject` ran with a finish time in `[since_ms, until_ms)`, at
    /// most `limit` executions, oldest first.
    pub async fn activity(
        &self,
        subject: &Subject,
        since_ms: i64,
        until_ms: i64,
        limit: usize,
    ) -> Result<Activity, LineageError> {
        let (statement, name) = match subject {
            Subject::Agent(name) => (schema::agent_executions(), name),
            Subject::Executor(name) => (schema::executor_executions(), name),
        };
        let fetch = i64::try_from(limit).unwrap_or(i64::MAX).saturating_add(1);
        let q = query(&statement)
            .param("name", name.as_str())
            .param("since", since_ms)
            .param("until", until_ms)
            .param("limit", fetch);
        let mut executions = self.executions(q).await?;
        let truncated = executions.len() > limit;
        executions.truncate(limit);
        let failed = executions.iter().filter(|e| e.failed()).count();
        Ok(Activity {
            ran: executions.len(),
            failed,
            truncated,
            executions,
        })
    }

    /// Task `id`'s lineage: its submitter, dependencies, dependents and
    /// executions; `None` when the graph does not know it.
    pub async fn task_lineage(&self, id: &str) -> Result<Option<TaskLineage>, LineageError> {
        let mut rows = self
            .driver()
            .execute(query(schema::TASK_NODE).param("id", id))
            .await
            .map_err(|source| LineageError::Query {
                context: "reading a task's lineage",
                source,
            })?;
        let row = rows.next().await.map_err(|source| LineageError::Query {
            context: "reading a task's lineage",
            source,
        })?;
        let Some(row) = row else {
            return Ok(None);
        };
        let agents: Vec<String> = column(&row, "agents")?;
        let mut lineage = TaskLineage {
            id: column(&row, "id")?,
            kind: column(&row, "kind")?,
            tenant: column(&row, "tenant")?,
            state: column(&row, "state")?,
            submitted_by: agents.into_iter().next(),
            depends_on: column(&row, "depends_on")?,
            dependents: column(&row, "dependents")?,
            executions: Vec::new(),
        };
        lineage.depends_on.sort();
        lineage.dependents.sort();
        lineage.executions = self
            .executions(query(&schema::task_executions()).param("id", id))
            .await?;
        Ok(Some(lineage))
    }

    async fn executions(&self, q: Query) -> Result<Vec<Execution>, LineageError> {
        let failed = |source| LineageError::Query {
            context: "reading executions",
            source,
        };
        let mut rows = self.driver().execute(q).await.map_err(failed)?;
        let mut executions = Vec::new();
        while let Some(row) = rows.next().await.map_err(failed)? {
            executions.push(Execution::from_row(&row)?);
        }
        Ok(executions)
    }
}
