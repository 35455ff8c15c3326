//! The lineage graph against a real Bolt server (ArcadeDB with its Bolt
//! plugin, started by `tests/services/up`): batched writes, idempotence,
//! and the query helpers.

#![cfg(feature = "neo4j")]

use neo4rs::query;
use tidewater_connectors::lineage::{LineageConfig, LineageGraph, Subject};
use tidewater_operators::model::{Completion, Lease, Outcome, ResourceRequest, Task};

/// The server from the environment; `None` (skip) outside CI when unset.
fn config() -> Option<LineageConfig> {
    match std::env::var("TIDEWATER_NEO4J_URI") {
        Ok(uri) => {
            let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} unset"));
            Some(LineageConfig::new(
                uri,
                var("TIDEWATER_NEO4J_USER"),
                var("TIDEWATER_NEO4J_PASSWORD"),
            ))
        }
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("TIDEWATER_NEO4J_URI is unset under CI: run `eval \"$(tests/services/up)\"`")
        }
        Err(_) => {
            eprintln!("skipping: TIDEWATER_NEO4J_URI is unset (eval \"$(tests/services/up)\")");
            None
        }
    }
}

fn completion(
    id: &str,
    agent: Option<&str>,
    depends_on: &[&str],
    on: (&str, u16),
    outcome: Outcome,
    finished_at_ms: u64,
) -> Completion {
    let (executor, attempt) = on;
    let mut task = Task::new(id, "sleep", ResourceRequest::cpu(100, 0));
    task.tenant = "acme".into();
    task.attempt = attempt;
    task.max_attempts = attempt;
    task.agent = agent.map(Into::into);
    task.depends_on = depends_on.iter().map(|d| (*d).into()).collect();
    task.submitted_at_us = (finished_at_ms - 100) * 1000;
    Completion {
        task,
        executor: executor.into(),
        shard: 0,
        lease: Lease(0),
        outcome,
        started_at_us: (finished_at_ms - 40) * 1000,
        finished_at_us: finished_at_ms * 1000,
        exit_code: None,
        output_bytes: 0,
        is_final: true,
        result: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_batches_once_and_answers_lineage_questions() {
    let Some(mut config) = config() else { return };
    config.batch_size = 2;
    let graph = LineageGraph::connect(&config).await.expect("client");
    graph.ensure_schema().await.expect("schema");
    graph.ensure_schema().await.expect("schema twice");

    // Names unique to this run, so that runs against one server do not meet.
    let run = format!(
        "{}-{}",
        std::process::id(),
        tidewater_operators::model::now_micros()
    );
    let name = |s: &str| format!("{s}-{run}");
    let (agent, ea, eb) = (name("planner"), name("exec-a"), name("exec-b"));
    let (t1, t2, t3) = (name("t1"), name("t2"), name("t3"));
    let base = 1_800_000_000_000_u64;
    let range = (base as i64, (base + 10_000) as i64);
    let completions = vec![
        completion(
            &t1,
            Some(&agent),
            &[],
            (&ea, 1),
            Outcome::Succeeded,
            base + 1_000,
        ),
        completion(
            &t2,
            Some(&agent),
            &[t1.as_str()],
            (&eb, 2),
            Outcome::Failed {
                reason: "exit status 3".into(),
            },
            base + 2_000,
        ),
        completion(
            &t3,
            None,
            &[t1.as_str(), t2.as_str()],
            (&ea, 1),
            Outcome::TimedOut,
            base + 3_000,
        ),
    ];
    graph.write(&completions).await.expect("write");
    // A redelivered batch writes nothing new.
    graph.write(&completions).await.expect("write again");

    let mut rows = graph
        .driver()
        .execute(
            query(
                "MATCH (e:Executor)-[x:EXECUTED]->(t:Task) WHERE t.id IN $ids RETURN count(x) AS n",
            )
            .param("ids", vec![t1.clone(), t2.clone(), t3.clone()]),
        )
        .await
        .expect("count");
    let row = rows.next().await.expect("row").expect("one row");
    assert_eq!(
        row.get::<i64>("n").expect("n"),
        3,
        "each attempt is one EXECUTED"
    );

    // What the agent ran, and which failed.
    let all = graph
        .activity(&Subject::Agent(agent.clone()), range.0, range.1, 100)
        .await
        .expect("agent activity");
    let tasks: Vec<&str> = all.executions.iter().map(|e| e.task.as_str()).collect();
    assert_eq!(tasks, [t1.as_str(), t2.as_str()]);
    assert_eq!((all.ran, all.failed, all.truncated), (2, 1, false));
    let failed = &all.executions[1];
    assert_eq!(failed.executor, eb);
    assert_eq!(failed.attempt, 2);
    assert_eq!(failed.outcome, "failed");
    assert_eq!(failed.reason.as_deref(), Some("exit status 3"));
    assert_eq!(failed.duration_ms, 40);

    // The range is half-open on finish times, and the limit is reported.
    let late = graph
        .activity(
            &Subject::Agent(agent.clone()),
            (base + 1_500) as i64,
            (base + 2_000) as i64,
            100,
        )
        .await
        .expect("empty range");
    assert_eq!(late.ran, 0);
    let one = graph
        .activity(&Subject::Agent(agent.clone()), range.0, range.1, 1)
        .await
        .expect("limited");
    assert_eq!((one.ran, one.truncated), (1, true));

    // What an executor ran.
    let on_a = graph
        .activity(&Subject::Executor(ea.clone()), range.0, range.1, 100)
        .await
        .expect("executor activity");
    let tasks: Vec<&str> = on_a.executions.iter().map(|e| e.task.as_str()).collect();
    assert_eq!(tasks, [t1.as_str(), t3.as_str()]);
    assert_eq!(on_a.failed, 1, "the timed-out task counts as failed");

    // A task's lineage.
    let lineage = graph
        .task_lineage(&t2)
        .await
        .expect("lineage")
        .expect("known");
    assert_eq!(lineage.submitted_by.as_deref(), Some(agent.as_str()));
    assert_eq!(lineage.depends_on, std::slice::from_ref(&t1));
    assert_eq!(lineage.dependents, std::slice::from_ref(&t3));
    assert_eq!(lineage.tenant.as_deref(), Some("acme"));
    assert_eq!(lineage.state.as_deref(), Some("failed"));
    assert_eq!(lineage.executions.len(), 1);
    assert_eq!(lineage.executions[0].executor, eb);
    let t3_lineage = graph
        .task_lineage(&t3)
        .await
        .expect("lineage")
        .expect("known");
    assert_eq!(t3_lineage.submitted_by, None);
    let mut deps = vec![t1.clone(), t2.clone()];
    deps.sort();
    assert_eq!(t3_lineage.depends_on, deps);
    assert!(graph
        .task_lineage(&name("nope"))
        .await
        .expect("lookup")
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attempt_is_an_edge_and_only_the_final_one_sets_the_state() {
    let Some(config) = config() else { return };
    let graph = LineageGraph::connect(&config).await.expect("client");
    graph.ensure_schema().await.expect("schema");
    let run = format!(
        "{}-{}",
        std::process::id(),
        tidewater_operators::model::now_micros()
    );
    let (id, ea, eb) = (
        format!("retried-{run}"),
        format!("ra-{run}"),
        format!("rb-{run}"),
    );
    let base = 1_800_000_100_000_u64;
    let attempt = |n: u16, executor: &str, outcome: Outcome, is_final: bool| {
        let mut c = completion(
            &id,
            None,
            &[],
            (executor, n),
            outcome,
            base + u64::from(n) * 1000,
        );
        c.task.max_attempts = 3;
        c.is_final = is_final;
        c
    };
    let failed = || Outcome::Failed {
        reason: "exit status 1".into(),
    };
    // The first retried attempt: the task has no outcome yet.
    graph
        .write(&[attempt(1, &ea, failed(), false)])
        .await
        .expect("attempt 1");
    let lineage = graph
        .task_lineage(&id)
        .await
        .expect("lineage")
        .expect("known");
    assert_eq!(lineage.state.as_deref(), Some("retrying"));
    // The final attempt lands before the second retried one (they come from
    // different workers): the late row adds its edge and leaves the outcome.
    graph
        .write(&[attempt(3, &ea, Outcome::Succeeded, true)])
        .await
        .expect("final attempt");
    graph
        .write(&[attempt(2, &eb, failed(), false)])
        .await
        .expect("attempt 2");
    graph
        .write(&[attempt(2, &eb, failed(), false)])
        .await
        .expect("attempt 2 again");
    let lineage = graph
        .task_lineage(&id)
        .await
        .expect("lineage")
        .expect("known");
    assert_eq!(lineage.state.as_deref(), Some("succeeded"));
    let attempts: Vec<(i64, &str, &str)> = lineage
        .executions
        .iter()
        .map(|e| (e.attempt, e.executor.as_str(), e.outcome.as_str()))
        .collect();
    assert_eq!(
        attempts,
        [
            (1, ea.as_str(), "failed"),
            (2, eb.as_str(), "failed"),
            (3, ea.as_str(), "succeeded")
        ]
    );
    let mut rows = graph
        .driver()
        .execute(query("MATCH (t:Task {id: $id}) RETURN t.attempts AS n").param("id", id.clone()))
        .await
        .expect("attempts");
    let row = rows.next().await.expect("row").expect("one row");
    assert_eq!(row.get::<i64>("n").expect("n"), 3);
}
