//! Completions (final ones, and attempts that will be retried) as the
//! parameter rows of the lineage `UNWIND` statement: one map per attempt,
//! with the keys the statement in
//! [`super::schema::WRITE_EXECUTIONS`] reads.
//!
//! | key | from |
//! |---|---|
//! | `id`, `kind`, `tenant`, `qos`, `agent`, `depends_on` | the task |
//! | `submitted_at_ms` | when the task was accepted |
//! | `executor`, `attempt` | where and which attempt ran |
//! | `is_final` | whether no retry follows (only a final row sets the task's state) |
//! | `outcome`, `reason` | how it ended (`reason` only for failures) |
//! | `started_at_ms`, `finished_at_ms`, `duration_ms` | the attempt's times |
//! | `exit_code` | a command's exit code, when there is one |

use std::collections::HashMap;

use neo4rs::BoltType;
use tidewater_operators::model::{Completion, Outcome};

/// A count or time as a Bolt integer (Bolt has signed 64-bit integers only).
fn int(value: u64) -> BoltType {
    BoltType::from(i64::try_from(value).unwrap_or(i64::MAX))
}

/// One completion's row.
pub fn completion_row(c: &Completion) -> BoltType {
    let task = &c.task;
    let reason = match &c.outcome {
        Outcome::Failed { reason } => Some(reason.clone()),
        _ => None,
    };
    let mut row: HashMap<&'static str, BoltType> = HashMap::with_capacity(16);
    row.insert("id", BoltType::from(task.id.as_str()));
    row.insert("kind", BoltType::from(task.kind.as_str()));
    row.insert("tenant", BoltType::from(task.tenant.as_str()));
    row.insert("qos", BoltType::from(task.qos.as_str()));
    row.insert("agent", BoltType::from(task.agent.as_deref()));
    row.insert(
        "depends_on",
        BoltType::from(
            task.depends_on
                .iter()
                .map(|d| BoltType::from(d.as_str()))
                .collect::<Vec<_>>(),
        ),
    );
    row.insert("submitted_at_ms", int(task.submitted_at_us / 1000));
    row.insert("executor", BoltType::from(c.executor.as_str()));
    row.insert("attempt", BoltType::from(i64::from(task.attempt)));
    row.insert("is_final", BoltType::from(c.is_final));
    row.insert("outcome", BoltType::from(c.outcome.status()));
    row.insert("reason", BoltType::from(reason));
    row.insert("started_at_ms", int(c.started_at_us / 1000));
    row.insert("finished_at_ms", int(c.finished_at_us / 1000));
    row.insert("duration_ms", int(c.run_time_us() / 1000));
    row.insert("exit_code", BoltType::from(c.exit_code.map(i64::from)));
    BoltType::from(row)
}

/// The `$rows` parameter for a batch of completions.
pub fn batch_rows(completions: &[Completion]) -> BoltType {
    BoltType::from(completions.iter().map(completion_row).collect::<Vec<_>>())
}

#[cfg(test)]
mod tests {
    use neo4rs::{BoltList, BoltMap, BoltString};
    use tidewater_operators::model::{Lease, ResourceRequest, Task};

    use super::*;

    fn get<'m>(map: &'m BoltMap, key: &str) -> &'m BoltType {
        map.value
            .get(&BoltString::from(key))
            .unwrap_or_else(|| panic!("row has no {key}"))
    }

    #[test]
    fn a_failed_completion_becomes_one_row_with_its_lineage() {
        let mut task = Task::new("t-1", "sleep", ResourceRequest::cpu(100, 0));
        task.attempt = 2;
        task.submitted_at_us = 1_000_000;
        task.agent = Some("planner".into());
        task.depends_on = vec!["t-0".into()];
        let completion = Completion {
            task,
            executor: "e-1".into(),
            shard: 0,
            lease: Lease(0),
            outcome: Outcome::Failed {
                reason: "exit 3".into(),
            },
            started_at_us: 2_000_000,
            finished_at_us: 2_500_000,
            exit_code: Some(3),
            output_bytes: 0,
            is_final: true,
            result: None,
        };
        let BoltType::List(BoltList { value }) = batch_rows(&[completion]) else {
            panic!("rows are a list");
        };
        assert_eq!(value.len(), 1);
        let BoltType::Map(row) = &value[0] else {
            panic!("a row is a map");
        };
        assert_eq!(get(row, "id"), &BoltType::from("t-1"));
        assert_eq!(get(row, "agent"), &BoltType::from("planner"));
        assert_eq!(
            get(row, "depends_on"),
            &BoltType::from(vec![BoltType::from("t-0")])
        );
        assert_eq!(get(row, "attempt"), &BoltType::from(2_i64));
        assert_eq!(get(row, "is_final"), &BoltType::from(true));
        assert_eq!(get(row, "outcome"), &BoltType::from("failed"));
        assert_eq!(get(row, "reason"), &BoltType::from("exit 3"));
        assert_eq!(get(row, "duration_ms"), &BoltType::from(500_i64));
        assert_eq!(get(row, "submitted_at_ms"), &BoltType::from(1000_i64));
        assert_eq!(get(row, "exit_code"), &BoltType::from(3_i64));
    }
}
