//! Cluster equivalence on separate test hosts.
//!
//! 1. One workload — tasks drawn from a fixed seed, two continuous queries,
//!    the learner on — gives the same final outcome for every task id and
//!    the same query results from 1 process × 2 workers, 2 processes × 1
//!    worker and 4 processes × 1 worker, each process on a host of its own
//!    in a network namespace made by the test ([`crate::common::netns`]).
//! 2. In a cluster of 3 processes, one killed mid-run is reported by both
//!    survivors, which exit with code 75 (`tidewater run`'s peer-loss
//!    hook); a restart of all three with the same hostfile resumes from their embedded stores: every
//!    accepted task ends succeeded in the store of the process that took
//!    it in, none is left queued or running, and no outcome is written to
//!    the sink files twice.
//!
//! The hosts' APIs listen on their own addresses, so authentication is on
//! (`auth.mode = "jwt"`, one HS256 key for every process, so that one
//! operator credential is good on each and travels with peer requests).
//! The test reaches a host's API with `curl` run inside its namespace.
//! Where namespaces cannot be made the processes run on loopback, and the
//! test prints that plainly.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::netns::TestNetwork;
use crate::common::{binary, free_port, read_json_lines};

/// Tasks in the equivalence workload.
const TASKS: usize = 160;
/// The timely port of every process when each has a host of its own (on
/// loopback free ports are taken instead).
const TIMELY_PORT: u16 = 2101;
/// The HTTP port of every process when each has a host of its own.
const HTTP_PORT: u16 = 8080;
/// The HS256 key every process verifies credentials with.
const JWT_SECRET: &[u8] = b"cluster-equivalence-test-key-of-32-bytes-or-more";
/// The exit code of a process that lost a peer (`tidewater run`).
const PEER_LOST_EXIT_CODE: i32 = 75;
/// What the survivor's log says when it loses a peer.
const LOST_PEER: &str = "lost a peer process of the timely cluster";

/// The workload: `TASKS` tasks drawn from a fixed seed (a 64-bit LCG), of
/// every outcome the pipeline has — success, a failure retried once, a
/// rejection at intake, an infeasible request, a GPU task that only one
/// executor (one shard, one process) can take.
fn workload(seed: u64) -> String {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        state >> 33
    };
    (0..TASKS)
        .map(|i| {
            let tenant = ["alice", "bob", "carol"][(next() % 3) as usize];
            match next() % 11 {
                0..=3 => format!(
                    r#"{{"id":"t{i}","kind":"noop","tenant":"{tenant}","resources":{{"cpu_milli":{}}}}}"#,
                    100 + next() % 900
                ),
                4 | 5 => format!(
                    r#"{{"id":"t{i}","kind":"sleep","tenant":"{tenant}","payload":{{"ms":{}}}}}"#,
                    next() % 8
                ),
                6 => format!(
                    r#"{{"id":"t{i}","kind":"command","tenant":"{tenant}","payload":{{"program":"false"}},"max_attempts":2}}"#
                ),
                7 => format!(
                    r#"{{"id":"t{i}","kind":"noop","tenant":"{tenant}","resources":{{"gpu_milli":500,"gpu_models":["A100"]}}}}"#
                ),
                8 => format!(
                    r#"{{"id":"t{i}","kind":"noop","tenant":"{tenant}","resources":{{"cpu_milli":-{}}}}}"#,
                    1 + next() % 50
                ),
                9 => format!(
                    r#"{{"id":"t{i}","kind":"noop","tenant":"{tenant}","resources":{{"cpu_milli":{}}}}}"#,
                    64_000 + next() % 1000
                ),
                _ => format!(r#"{{"id":"t{i}","kind":"no-such-kind","tenant":"{tenant}"}}"#),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A cluster shape: processes × workers per process.
#[derive(Clone, Copy, Debug)]
struct Shape {
    processes: usize,
    workers: usize,
}

impl Shape {
    fn name(self) -> String {
        format!("{}x{}", self.processes, self.workers)
    }
}

/// What a run's config holds besides the cluster and the API.
struct Setup<'a> {
    /// The `[store]` section's body.
    store: &'a str,
    /// Further sections (executors, learner, queries).
    rest: &'a str,
}

/// The executors, learner and queries of the equivalence runs.
const EQUIVALENCE: &str = r#"
[retry]
initial_backoff_ms = 1
[handlers]
command_allowlist = ["false"]
[learner]
enabled = true
device = "cpu"
batch_size = 8
max_batch_delay_ms = 200
[[queries]]
name = "attempts_by_kind_and_status"
filter = { metric = "completed" }
group_by = ["kind", "status"]
aggregates = ["count"]
[[queries]]
name = "rejections_by_code"
filter = { metric = "rejected" }
group_by = ["status"]
aggregates = ["count"]
[[executors]]
id = "cpu"
count = 3
cpu_milli = 4000
memory_mib = 4096
[[executors]]
id = "gpu"
cpu_milli = 4000
memory_mib = 4096
gpus = 1
gpu_model = "A100"
"#;

/// The processes of one run of a shape on `network`'s hosts (process `i`
/// on host `i`).
struct TestCluster<'a> {
    network: &'a TestNetwork,
    dir: PathBuf,
    name: String,
    /// Each process, until it exits or is killed.
    children: Vec<Option<Child>>,
    /// Each process's API base URL.
    urls: Vec<String>,
    /// An operator's credential, good on every process.
    token: String,
}

impl<'a> TestCluster<'a> {
    /// Starts `shape` on `network`. With `input`, every process feeds its
    /// share of that JSON-lines file (line `n` to process `n mod
    /// processes`). A cluster of several processes reads its hosts from
    /// `dir/cluster.hosts`, written once per directory, so that a restart
    /// uses the same hostfile.
    fn start(
        network: &'a TestNetwork,
        dir: &Path,
        shape: Shape,
        setup: &Setup,
        name: &str,
        input: Option<&str>,
    ) -> Self {
        let namespaced = network.namespaced();
        // On loopback every process needs ports of its own: the timely
        // ports are free ones, the API ports consecutive ones (`tidewater
        // run` shifts `http.listen`'s port by the process index).
        let http_port = if namespaced {
            HTTP_PORT
        } else {
            consecutive_free_ports(shape.processes)
        };
        let hostfile = dir.join("cluster.hosts");
        if shape.processes > 1 && !hostfile.exists() {
            let lines: Vec<String> = (0..shape.processes)
                .map(|i| {
                    let port = if namespaced { TIMELY_PORT } else { free_port() };
                    format!("{}:{port}", network.address(i))
                })
                .collect();
            std::fs::write(&hostfile, lines.join("\n") + "\n").expect("hostfile");
        }
        let key_file = dir.join("jwt.key");
        std::fs::write(&key_file, JWT_SECRET).expect("jwt key");
        let cluster = if shape.processes > 1 {
            format!("[cluster]\nhostfile = \"{}\"\n", hostfile.display())
        } else {
            String::new()
        };
        let text = format!(
            r#"workers = {workers}
{cluster}
[http]
listen = "127.0.0.1:{http_port}"
port_per_process = {port_per_process}
[auth]
mode = "jwt"
[auth.jwt]
algorithm = "HS256"
key_file = "{key_file}"
[store]
{store}
{rest}"#,
            workers = shape.workers,
            port_per_process = !namespaced,
            key_file = key_file.display(),
            store = setup.store,
            rest = setup.rest,
        );
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(&config, text).expect("config");

        let mut children = Vec::new();
        let mut urls = Vec::new();
        for i in 0..shape.processes {
            let log = std::fs::File::create(dir.join(format!("{name}.p{i}.log"))).expect("log");
            let mut command = network.command(i, binary());
            command
                .arg("run")
                .arg("--config")
                .arg(&config)
                .current_dir(dir)
                .env("RUST_LOG", "info")
                .env(
                    "TIDEWATER__HTTP__LISTEN",
                    format!("\"{}:{http_port}\"", network.address(i)),
                )
                .env(
                    "TIDEWATER__SINKS__RESULTS_FILE",
                    format!("{name}.p{i}.results.jsonl"),
                )
                .env(
                    "TIDEWATER__SINKS__DEAD_LETTER_FILE",
                    format!("{name}.p{i}.dead.jsonl"),
                )
                .stdout(Stdio::null())
                .stderr(log);
            if let Some(input) = input {
                command.args(["--input", input]);
            }
            if shape.processes > 1 {
                command.args(["--process", &i.to_string()]);
            }
            children.push(Some(command.spawn().expect("spawn tidewater")));
            let port = if namespaced {
                http_port
            } else {
                http_port + i as u16
            };
            urls.push(format!("http://{}:{port}", network.address(i)));
        }
        let cluster = TestCluster {
            network,
            dir: dir.to_path_buf(),
            name: name.to_string(),
            children,
            urls,
            token: operator_token(),
        };
        for i in 0..shape.processes {
            cluster.wait_ready(i);
        }
        cluster
    }

    /// Process `i`'s log so far.
    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.p{i}.log", self.name)))
            .unwrap_or_default()
    }

    /// Every process's log, for failure messages.
    fn logs(&self) -> String {
        (0..self.children.len())
            .map(|i| format!("--- {} process {i} ---\n{}", self.name, self.log(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until process `i` answers `/healthz`.
    fn wait_ready(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.call(i, "GET", "/healthz", None).map(|(s, _)| s) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "{} process {i} did not come up; logs:\n{}",
                self.name,
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Calls process `i`'s API from its host (curl inside its namespace),
    /// as the operator: the status and the body as JSON, `None` when it
    /// does not answer.
    fn call(
        &self,
        i: usize,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> Option<(u16, serde_json::Value)> {
        let mut command = self.network.command(i, "curl");
        command
            .args(["-s", "-m", "10", "-X", method, "-w", "\n%{http_code}"])
            .args(["-H", &format!("authorization: Bearer {}", self.token)])
            .arg(format!("{}{path}", self.urls[i]))
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if body.is_some() {
            command
                .args([
                    "-H",
                    "content-type: application/json",
                    "--data-binary",
                    "@-",
                ])
                .stdin(Stdio::piped());
        }
        let mut child = command.spawn().expect("spawn curl");
        if let Some(body) = body {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(body.as_bytes())
                .expect("request body");
        }
        let output = child.wait_with_output().ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let (body, status) = text.rsplit_once('\n')?;
        let status: u16 = status.trim().parse().ok()?;
        (status != 0).then(|| {
            (
                status,
                serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
            )
        })
    }

    /// The final outcome of every task this run's processes recorded so far.
    fn outcomes(&self) -> Outcomes {
        outcomes(&self.dir, &[&self.name], self.children.len())
    }

    /// Both queries' rows as process 0 serves them (query results are
    /// gathered on worker 0).
    fn queries(&self) -> Queries {
        ["attempts_by_kind_and_status", "rejections_by_code"]
            .into_iter()
            .map(|name| {
                let rows = match self.call(0, "GET", &format!("/v1/queries/{name}"), None) {
                    Some((200, answer)) => query_rows(&answer),
                    _ => BTreeMap::new(),
                };
                (name.to_string(), rows)
            })
            .collect()
    }

    /// Waits until every task of the workload has a final outcome and
    /// process 0's query results agree with those outcomes (twice in a row,
    /// 300 ms apart); returns both.
    fn settle(&mut self) -> (Outcomes, Queries) {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut agreed_once = false;
        loop {
            self.assert_running();
            let outcomes = self.outcomes();
            let queries = self.queries();
            let expected = outcomes.expected_queries();
            if outcomes.by_task.len() == TASKS && queries == expected {
                if agreed_once {
                    return (outcomes, queries);
                }
                agreed_once = true;
            } else {
                agreed_once = false;
            }
            assert!(
                Instant::now() < deadline,
                "{}: not settled: {} of {TASKS} tasks ended;\nqueries  {queries:?}\nexpected {expected:?}\nlogs:\n{}",
                self.name,
                outcomes.by_task.len(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Panics if a process exited.
    fn assert_running(&mut self) {
        for i in 0..self.children.len() {
            if let Some(status) = self.try_wait(i) {
                panic!(
                    "{} process {i} exited early with {status}; logs:\n{}",
                    self.name,
                    self.logs()
                );
            }
        }
    }

    /// Process `i`'s exit status, if it exited.
    fn try_wait(&mut self, i: usize) -> Option<ExitStatus> {
        self.children[i].as_mut()?.try_wait().expect("wait")
    }

    /// Process `i`'s exit status, waiting up to `timeout` for it.
    fn wait_exit(&mut self, i: usize, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait(i) {
                self.children[i] = None;
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGKILLs process `i`.
    fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.children[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM to every process (a drain), then waits for them; each must
    /// exit cleanly.
    fn stop(mut self) {
        for child in self.children.iter().flatten() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for i in 0..self.children.len() {
            let status = self.wait_exit(i, Duration::from_secs(60));
            assert!(
                status.is_some_and(|s| s.success()),
                "{} process {i} did not stop cleanly ({status:?}); logs:\n{}",
                self.name,
                self.logs()
            );
        }
    }
}

impl Drop for TestCluster<'_> {
    fn drop(&mut self) {
        for child in self.children.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An operator's JWT (every tenant's tasks, the queries, the models),
/// valid for an hour.
fn operator_token() -> String {
    use jsonwebtoken::{encode, EncodingKey, Header};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    encode(
        &Header::default(),
        &serde_json::json!({"sub": "cluster-test", "tenant": "ops", "role": "operator", "exp": now + 3600}),
        &EncodingKey::from_secret(JWT_SECRET),
    )
    .expect("sign")
}

/// `count` consecutive ports free on loopback now; the first is returned.
fn consecutive_free_ports(count: usize) -> u16 {
    loop {
        let port = free_port();
        if (1..count as u16).all(|k| std::net::TcpListener::bind(("127.0.0.1", port + k)).is_ok()) {
            return port;
        }
    }
}

/// How a task ended.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Final {
    /// A final result: the task's kind, the outcome's status, the attempt.
    Result {
        kind: String,
        status: String,
        attempt: u64,
    },
    /// Dead-lettered, with the reason's code.
    Rejected { code: String },
}

/// Every task's final outcome, by task id, from the runs' sink files.
#[derive(Debug, Default, PartialEq)]
struct Outcomes {
    by_task: BTreeMap<String, Final>,
    /// Task ids written more than once, over the runs read.
    reported_twice: Vec<String>,
}

/// Query rows: query name → (group key → count).
type Queries = BTreeMap<String, BTreeMap<String, f64>>;

impl Outcomes {
    /// The query results these outcomes imply: one `completed` event per
    /// attempt (in this workload only failures are retried, so every
    /// attempt before the last failed) and one `rejected` event per dead
    /// letter.
    fn expected_queries(&self) -> Queries {
        let mut attempts = BTreeMap::new();
        let mut rejections = BTreeMap::new();
        for outcome in self.by_task.values() {
            match outcome {
                Final::Result {
                    kind,
                    status,
                    attempt,
                } => {
                    *attempts
                        .entry(format!("kind={kind} status={status}"))
                        .or_insert(0.0) += 1.0;
                    if *attempt > 1 {
                        *attempts
                            .entry(format!("kind={kind} status=failed"))
                            .or_insert(0.0) += (*attempt - 1) as f64;
                    }
                }
                Final::Rejected { code } => {
                    *rejections.entry(format!("status={code}")).or_insert(0.0) += 1.0;
                }
            }
        }
        [
            ("attempts_by_kind_and_status".to_string(), attempts),
            ("rejections_by_code".to_string(), rejections),
        ]
        .into_iter()
        .collect()
    }

    fn insert(&mut self, id: String, outcome: Final) {
        if self.by_task.insert(id.clone(), outcome).is_some() {
            self.reported_twice.push(id);
        }
    }
}

/// The outcomes in the sink files of the named runs, `processes` each.
fn outcomes(dir: &Path, runs: &[&str], processes: usize) -> Outcomes {
    let mut outcomes = Outcomes::default();
    for run in runs {
        for i in 0..processes {
            for r in read_json_lines(&dir.join(format!("{run}.p{i}.results.jsonl"))) {
                outcomes.insert(
                    text(&r["task"]["id"]),
                    Final::Result {
                        kind: text(&r["task"]["kind"]),
                        status: variant(&r["outcome"]),
                        attempt: r["task"]["attempt"].as_u64().unwrap_or_default(),
                    },
                );
            }
            for d in read_json_lines(&dir.join(format!("{run}.p{i}.dead.jsonl"))) {
                let id = match d["task_id"].as_str() {
                    Some(id) => id.to_string(),
                    None => format!("(no id) {}", text(&d["excerpt"])),
                };
                outcomes.insert(
                    id,
                    Final::Rejected {
                        code: variant(&d["reason"]),
                    },
                );
            }
        }
    }
    outcomes
}

/// A query answer's rows as `"dim=value …" → count`.
fn query_rows(answer: &serde_json::Value) -> BTreeMap<String, f64> {
    answer["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            let key = row["key"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(dimension, value)| format!("{dimension}={}", text(value)))
                .collect::<Vec<_>>()
                .join(" ");
            (key, row["values"]["count"].as_f64().unwrap_or(f64::NAN))
        })
        .collect()
}

fn text(value: &serde_json::Value) -> String {
    value.as_str().unwrap_or_default().to_string()
}

/// `text` without terminal colour codes (the logs are coloured).
fn strip_ansi(text: &str) -> String {
    let mut plain = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // An escape sequence runs to its final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    plain
}

/// The variant name of an externally tagged enum value.
fn variant(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(name) => name.clone(),
        serde_json::Value::Object(map) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

/// How many model versions process 0's store holds, over both targets,
/// once there is one (the learner trains and publishes behind the tasks'
/// outcomes); 0 if none comes within 10 s.
fn model_versions(cluster: &TestCluster) -> usize {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let versions = match cluster.call(0, "GET", "/v1/models", None) {
            Some((200, answer)) => answer["models"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|target| target["versions"].as_array().map_or(0, Vec::len))
                .sum(),
            _ => 0,
        };
        if versions > 0 || Instant::now() > deadline {
            return versions;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The test calls the hosts' APIs with curl run inside their namespaces.
fn require_curl() {
    let found = Command::new("curl")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "curl is needed to reach the test hosts (.ci/run installs it)"
    );
}

#[test]
fn every_cluster_shape_gives_the_same_outcomes_and_query_results() {
    require_curl();
    let network = TestNetwork::new(4);
    eprintln!("cluster equivalence: {}", network.describe());

    let mut seen: Vec<(String, Outcomes, Queries)> = Vec::new();
    for shape in [
        Shape {
            processes: 1,
            workers: 2,
        },
        Shape {
            processes: 2,
            workers: 1,
        },
        Shape {
            processes: 4,
            workers: 1,
        },
    ] {
        // A directory per shape: its own hostfile and sink files.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("tasks.jsonl"), workload(0x7D1D_E015)).expect("input");
        let name = shape.name();
        let sent_before: Vec<Option<u64>> = (0..shape.processes)
            .map(|i| network.sent_bytes(i))
            .collect();
        let started = Instant::now();
        let setup = Setup {
            store: "kind = \"memory\"",
            rest: EQUIVALENCE,
        };
        let mut cluster = TestCluster::start(
            &network,
            dir.path(),
            shape,
            &setup,
            &name,
            Some("tasks.jsonl"),
        );
        let (outcomes, queries) = cluster.settle();
        let elapsed = started.elapsed();
        assert!(
            outcomes.reported_twice.is_empty(),
            "{name}: tasks reported twice: {:?}",
            outcomes.reported_twice
        );
        // The learner runs once, on worker 0, and trained on this workload.
        let learners = (0..shape.processes)
            .filter(|&i| cluster.log(i).contains("learner started"))
            .count();
        assert_eq!(learners, 1, "{name}: the learner runs on worker 0 only");
        let versions = model_versions(&cluster);
        assert!(versions > 0, "{name}: the learner published no model");
        if shape.processes > 1 {
            // Every process took in its share of the input and recorded it,
            // and some tasks ran on another host than the one that took
            // them in (the GPU executor's shard is on one process only).
            for i in 0..shape.processes {
                let own = outcomes_of(dir.path(), &name, i);
                assert!(own > 0, "{name}: process {i} recorded nothing");
            }
            let crossed = ran_elsewhere(dir.path(), &name, shape);
            assert!(crossed > 0, "{name}: no task ran on another host");
            eprintln!("{name}: {crossed} tasks ran on another host than the one that took them in");
        }
        // Traffic between the hosts, for the scale plan (namespaces only).
        let sent: Option<u64> = (0..shape.processes)
            .map(|i| Some(network.sent_bytes(i)? - sent_before[i]?))
            .sum();
        cluster.stop();
        eprintln!(
            "{name}: {} tasks ended in {elapsed:.1?}, {versions} model versions, \
             bytes sent between hosts: {}",
            outcomes.by_task.len(),
            sent.map_or("n/a (loopback)".to_string(), |b| b.to_string()),
        );
        seen.push((name, outcomes, queries));
    }

    // The workload has every kind of outcome.
    let (first_name, first_outcomes, first_queries) = &seen[0];
    let has = |wanted: &dyn Fn(&Final) -> bool| first_outcomes.by_task.values().any(wanted);
    assert!(has(
        &|f| matches!(f, Final::Result { status, attempt, .. } if status == "failed" && *attempt == 2)
    ));
    assert!(has(
        &|f| matches!(f, Final::Result { status, kind, .. } if status == "succeeded" && kind == "sleep")
    ));
    assert!(has(
        &|f| matches!(f, Final::Rejected { code } if code == "infeasible")
    ));
    assert!(has(
        &|f| matches!(f, Final::Rejected { code } if code == "invalid_value")
    ));
    for (name, outcomes, queries) in &seen[1..] {
        let differing: Vec<_> = first_outcomes
            .by_task
            .iter()
            .filter(|(id, outcome)| outcomes.by_task.get(*id) != Some(*outcome))
            .map(|(id, outcome)| (id, outcome, outcomes.by_task.get(id)))
            .collect();
        assert!(
            differing.is_empty() && outcomes.by_task.len() == first_outcomes.by_task.len(),
            "{name}'s outcomes differ from {first_name}'s (id, {first_name}, {name}): {differing:?}"
        );
        assert_eq!(
            queries, first_queries,
            "{name}'s query results differ from {first_name}'s"
        );
    }
}

/// How many results of run `name` ran on an executor whose shard (a
/// global worker index) belongs to another process than the one that
/// recorded them (the one that took the task in).
fn ran_elsewhere(dir: &Path, name: &str, shape: Shape) -> usize {
    (0..shape.processes)
        .map(|i| {
            read_json_lines(&dir.join(format!("{name}.p{i}.results.jsonl")))
                .iter()
                .filter(|r| {
                    r["shard"]
                        .as_u64()
                        .is_some_and(|shard| shard as usize / shape.workers != i)
                })
                .count()
        })
        .sum()
}

/// How many results and dead letters process `i` of run `name` wrote.
fn outcomes_of(dir: &Path, name: &str, i: usize) -> usize {
    read_json_lines(&dir.join(format!("{name}.p{i}.results.jsonl"))).len()
        + read_json_lines(&dir.join(format!("{name}.p{i}.dead.jsonl"))).len()
}

/// Processes in the crash test: one is killed, two survive.
const CRASH_PROCESSES: usize = 3;
/// Tasks submitted in the crash test, a third to each process.
const SLOW_TASKS: usize = 42;

/// Four one-core executors: the crash test's sleeps run four at a time.
const CRASH: &str = r#"
[[executors]]
id = "core"
count = 4
cpu_milli = 1000
memory_mib = 1024
"#;

#[test]
fn a_killed_process_is_reported_and_a_restart_resumes_from_the_stores() {
    require_curl();
    let network = TestNetwork::new(CRASH_PROCESSES);
    eprintln!("cluster crash and restart: {}", network.describe());
    let dir = tempfile::tempdir().expect("tempdir");
    let shape = Shape {
        processes: CRASH_PROCESSES,
        workers: 1,
    };
    let setup = Setup {
        store: "kind = \"embedded\"\npath = \"data/store.redb\"",
        rest: CRASH,
    };
    let mut first = TestCluster::start(&network, dir.path(), shape, &setup, "first", None);
    // A third of the tasks are taken in (admitted to the store) by each
    // process; each sleep holds a whole executor for 250 ms.
    let share_size = SLOW_TASKS / CRASH_PROCESSES;
    let ids: Vec<String> = (0..SLOW_TASKS).map(|i| format!("s{i}")).collect();
    for (process, share) in ids.chunks(share_size).enumerate() {
        let batch: Vec<String> = share
            .iter()
            .map(|id| {
                format!(
                    r#"{{"id":"{id}","kind":"sleep","payload":{{"ms":250}},"resources":{{"cpu_milli":1000}}}}"#
                )
            })
            .collect();
        let answer = first.call(
            process,
            "POST",
            "/v1/tasks",
            Some(&format!("[{}]", batch.join(","))),
        );
        let Some((200, answer)) = answer else {
            panic!("submitting to process {process}: {answer:?}");
        };
        assert_eq!(
            answer["accepted"].as_array().map(Vec::len),
            Some(share.len()),
            "{answer}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while first.outcomes().by_task.len() < 6 {
        first.assert_running();
        assert!(
            Instant::now() < deadline,
            "no results; logs:\n{}",
            first.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // Process 1 dies mid-run.
    first.kill(1);
    let ended_before = first.outcomes().by_task.len();
    assert!(ended_before < SLOW_TASKS, "the run ended before the kill");

    // Both survivors report the lost peer and exit with code 75, for their
    // supervisor to restart the cluster.
    for survivor in [0, 2] {
        let status = first.wait_exit(survivor, Duration::from_secs(30));
        let log = first.log(survivor);
        assert_eq!(
            status.and_then(|s| s.code()),
            Some(PEER_LOST_EXIT_CODE),
            "process {survivor} should exit with {PEER_LOST_EXIT_CODE} after losing a peer \
             ({status:?}); log:\n{log}"
        );
        let report = log.lines().find(|l| l.contains(LOST_PEER));
        assert!(
            report.is_some(),
            "process {survivor} did not report its lost peer; log:\n{log}"
        );
        eprintln!(
            "survivor {survivor} said: {}",
            strip_ansi(report.unwrap_or_default())
        );
    }
    eprintln!("{ended_before} of {SLOW_TASKS} tasks had ended when process 1 was killed");
    drop(first);

    // A restart with the same hostfile resumes from the stores (the record
    // of truth: a sink file line is written after the store's commit, so a
    // kill between the two leaves an outcome out of the file, never in it
    // twice). Each process's own store ends with its share succeeded and
    // nothing left queued or running: resumed tasks are recorded where
    // they were taken in.
    let mut second = TestCluster::start(&network, dir.path(), shape, &setup, "second", None);
    let store_counts = |cluster: &TestCluster, i: usize| -> serde_json::Value {
        match cluster.call(i, "GET", "/v1/stats", None) {
            Some((200, stats)) => stats["store"].clone(),
            other => panic!("process {i}'s stats: {other:?}"),
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        second.assert_running();
        let counts: Vec<serde_json::Value> = (0..CRASH_PROCESSES)
            .map(|i| store_counts(&second, i))
            .collect();
        let settled = counts.iter().all(|store| {
            store["succeeded"] == share_size
                && ["queued", "running", "retrying", "failed", "rejected"]
                    .iter()
                    .all(|state| store[*state] == 0)
        });
        if settled {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart the stores hold {counts:?}, not {share_size} succeeded each; logs:\n{}",
            second.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let resumed: usize = (0..CRASH_PROCESSES)
        .filter_map(|i| {
            let log = second.log(i);
            let line = log
                .lines()
                .find(|l| l.contains("resuming accepted tasks that had not finished"))?;
            let line = strip_ansi(line);
            line.rsplit("count=").next()?.trim().parse::<usize>().ok()
        })
        .sum();
    assert!(
        resumed > 0 && resumed <= SLOW_TASKS - ended_before,
        "{resumed} tasks resumed from the stores, {ended_before} had ended before the kill"
    );
    for (i, id) in ids.iter().enumerate() {
        // Ask each process in turn: both answer for every task.
        let (status, record) = second
            .call(i % CRASH_PROCESSES, "GET", &format!("/v1/tasks/{id}"), None)
            .expect("reachable");
        assert_eq!(status, 200, "{id}: {record}");
        assert_eq!(record["state"], "succeeded", "{id}: {record}");
    }
    // No outcome written twice over both runs' sink files, and every task
    // that ran after the restart is written there.
    let all = outcomes(dir.path(), &["first", "second"], CRASH_PROCESSES);
    assert!(
        all.reported_twice.is_empty(),
        "reported twice: {:?}",
        all.reported_twice
    );
    assert!(all.by_task.iter().all(|(id, f)| ids.contains(id)
        && matches!(f, Final::Result { status, .. } if status == "succeeded")));
    let after_restart = outcomes(dir.path(), &["second"], CRASH_PROCESSES)
        .by_task
        .len();
    assert_eq!(after_restart, resumed, "every resumed task is written once");
    eprintln!(
        "after the restart: {resumed} tasks resumed from the stores; all {SLOW_TASKS} succeeded \
         ({} in the sink files)",
        all.by_task.len()
    );
    second.stop();
}
