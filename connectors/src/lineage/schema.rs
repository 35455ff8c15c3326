//! The graph's constraints and indexes, and the Cypher statements that
//! write and read it.

/// Uniqueness constraints (each also an index) on the node keys, and an
/// index on the time the range queries filter by. Run at start; each is
/// `IF NOT EXISTS`, so running them again changes nothing.
pub const SCHEMA: &[&str] = &[
    "CREATE CONSTRAINT tidewater_task_id IF NOT EXISTS FOR (t:Task) REQUIRE t.id IS UNIQUE",
    "CREATE CONSTRAINT tidewater_agent_name IF NOT EXISTS FOR (a:Agent) REQUIRE a.name IS UNIQUE",
    "CREATE CONSTRAINT tidewater_executor_id IF NOT EXISTS FOR (e:Executor) REQUIRE e.id IS UNIQUE",
    "CREATE CONSTRAINT tidewater_tenant_name IF NOT EXISTS FOR (n:Tenant) REQUIRE n.name IS UNIQUE",
    "CREATE INDEX tidewater_executed_finished IF NOT EXISTS FOR ()-[x:EXECUTED]-() ON (x.finished_at_ms)",
];

/// Writes one batch of attempt rows ([`super::rows`]) in one statement.
/// Everything is merged on its key (an attempt's `EXECUTED` relationship on
/// its attempt number), so writing a row again is a no-op; an agent or
/// dependency is linked only when the task names one. Only a final row
/// sets the task's outcome, attempt count and finish time; a retried
/// attempt marks a task with no outcome yet `retrying`, so rows may land in
/// any order.
pub const WRITE_EXECUTIONS: &str = "\
UNWIND $rows AS r
MERGE (t:Task {id: r.id})
SET t.kind = r.kind, t.tenant = r.tenant, t.qos = r.qos, t.submitted_at_ms = r.submitted_at_ms,
    t.state = CASE WHEN r.is_final THEN r.outcome ELSE coalesce(t.state, 'retrying') END,
    t.attempts = CASE WHEN r.is_final THEN r.attempt ELSE t.attempts END,
    t.finished_at_ms = CASE WHEN r.is_final THEN r.finished_at_ms ELSE t.finished_at_ms END
MERGE (n:Tenant {name: r.tenant})
MERGE (t)-[:OWNED_BY]->(n)
MERGE (e:Executor {id: r.executor})
MERGE (e)-[x:EXECUTED {attempt: r.attempt}]->(t)
SET x.outcome = r.outcome, x.reason = r.reason, x.started_at_ms = r.started_at_ms,
    x.finished_at_ms = r.finished_at_ms, x.duration_ms = r.duration_ms, x.exit_code = r.exit_code
FOREACH (a IN CASE WHEN r.agent IS NULL THEN [] ELSE [r.agent] END |
    MERGE (g:Agent {name: a}) MERGE (t)-[:SUBMITTED_BY]->(g))
FOREACH (d IN r.depends_on | MERGE (p:Task {id: d}) MERGE (t)-[:DEPENDS_ON]->(p))";

/// The columns every execution query returns, in [`super::Execution`]'s
/// order. `DISTINCT`: writes are idempotent, but should a server still
/// hold two copies of an attempt's edge (a retried batch racing the
/// server's own finish of the first try), the attempt is one execution.
const EXECUTION_COLUMNS: &str = "\
RETURN DISTINCT t.id AS task, e.id AS executor, x.attempt AS attempt, x.outcome AS outcome,
       x.reason AS reason, x.started_at_ms AS started_at_ms,
       x.finished_at_ms AS finished_at_ms, x.duration_ms AS duration_ms";

/// What tasks submitted by agent `$name` ran, finished in `[$since, $until)`.
pub fn agent_executions() -> String {
    format!(
        "MATCH (a:Agent {{name: $name}})<-[:SUBMITTED_BY]-(t:Task)<-[x:EXECUTED]-(e:Executor)
         WHERE x.finished_at_ms >= $since AND x.finished_at_ms < $until
         {EXECUTION_COLUMNS} ORDER BY finished_at_ms, task LIMIT $limit"
    )
}

/// What executor `$name` ran, finished in `[$since, $until)`.
pub fn executor_executions() -> String {
    format!(
        "MATCH (e:Executor {{id: $name}})-[x:EXECUTED]->(t:Task)
         WHERE x.finished_at_ms >= $since AND x.finished_at_ms < $until
         {EXECUTION_COLUMNS} ORDER BY finished_at_ms, task LIMIT $limit"
    )
}

/// Every execution of task `$id`.
pub fn task_executions() -> String {
    format!(
        "MATCH (e:Executor)-[x:EXECUTED]->(t:Task {{id: $id}})
         {EXECUTION_COLUMNS} ORDER BY attempt, executor"
    )
}

/// Task `$id` with its tenant, submitter, dependencies and dependents.
pub const TASK_NODE: &str = "\
MATCH (t:Task {id: $id})
OPTIONAL MATCH (t)-[:SUBMITTED_BY]->(a:Agent)
OPTIONAL MATCH (t)-[:DEPENDS_ON]->(d:Task)
OPTIONAL MATCH (c:Task)-[:DEPENDS_ON]->(t)
RETURN t.id AS id, t.kind AS kind, t.tenant AS tenant, t.state AS state,
       collect(DISTINCT a.name) AS agents, collect(DISTINCT d.id) AS depends_on,
       collect(DISTINCT c.id) AS dependents";
