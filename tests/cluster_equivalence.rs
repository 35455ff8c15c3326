//! Cluster equivalence on separate test hosts: one workload (tasks drawn
//! from a fixed seed, a continuous query, the learner on) gives the same
//! final outcomes and query results from 1 process × 2 workers, 2 processes
//! × 1 worker and 4 processes × 1 worker, each process on its own host in a
//! network namespace made by the test ([`crate::common::netns`]); and a
//! process killed mid-run is reported by the survivor, after which a restart
//! with the same hostfile resumes from the embedded stores with nothing lost.
//!
//! Where namespaces cannot be made the hosts fall back to loopback, and the
//! test prints so on stderr.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::netns::TestNetwork;
use crate::common::{binary, free_port, read_json_lines};

/// Tasks in the equivalence workload.
const TASKS: usize = 160;
/// The timely port of every process (each host has its own port space; on
/// loopback, free ports are taken instead).
const TIMELY_PORT: u16 = 2101;
/// Process 0's HTTP port; process `i` serves on `HTTP_PORT + i`.
const HTTP_PORT: u16 = 8080;

/// The workload: `TASKS` tasks drawn from a fixed seed (a 64-bit LCG), of
/// every outcome the pipeline has — success, a failure retried once, a
/// rejection, a GPU task that only one executor can take.
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
            match next() % 10 {
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

/// The config for `shape`; the cluster's hosts come from `hostfile`.
fn config(dir: &Path, shape: Shape, hostfile: Option<&Path>, store: &str) -> PathBuf {
    let cluster = match hostfile {
        Some(hostfile) => format!(
            "[cluster]\nprocess = 0\nhostfile = \"{}\"\n",
            hostfile.display()
        ),
        None => String::new(),
    };
    let text = format!(
        r#"
workers = {workers}
{cluster}
[http]
listen = "127.0.0.1:{HTTP_PORT}"
[store]
{store}
[retry]
initial_backoff_ms = 1
[handlers]
command_allowlist = ["false"]
[learner]
enabled = true
device = "cpu"
batch_size = 8
[[queries]]
name = "completions_by_status"
filter = {{ metric = "completed" }}
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
"#,
        workers = shape.workers,
    );
    let path = dir.join(format!("config-{}x{}.toml", shape.processes, shape.workers));
    std::fs::write(&path, text).expect("config");
    path
}

/// The processes of one run of a shape on `network`'s hosts.
struct Cluster<'a> {
    network: &'a TestNetwork,
    dir: PathBuf,
    name: String,
    children: Vec<Child>,
    /// Each process's HTTP base URL.
    urls: Vec<String>,
}

impl<'a> Cluster<'a> {
    /// Starts `shape` on `network` (process `i` on host `i`), all reading
    /// `tasks.jsonl` (each its share) into the runtime.
    fn start(
        network: &'a TestNetwork,
        dir: &Path,
        shape: Shape,
        store: &str,
        name: &str,
        extra: &[&str],
    ) -> Self {
        // On loopback every process needs its own ports.
        let timely_ports: Vec<u16> = (0..shape.processes)
            .map(|_| {
                if network.namespaced() {
                    TIMELY_PORT
                } else {
                    free_port()
                }
            })
            .collect();
        let http_port = if network.namespaced() {
            HTTP_PORT
        } else {
            consecutive_free_ports(shape.processes)
        };
        let hostfile = (shape.processes > 1).then(|| {
            // One hostfile per directory: a restart reads the same file.
            let path = dir.join("cluster.hosts");
            let lines: Vec<String> = (0..shape.processes)
                .map(|i| format!("{}:{}", network.address(i), timely_ports[i]))
                .collect();
            std::fs::write(&path, lines.join("\n") + "\n").expect("hostfile");
            path
        });
        let config = config(dir, shape, hostfile.as_deref(), store);
        let mut children = Vec::new();
        let mut urls = Vec::new();
        for i in 0..shape.processes {
            let log = std::fs::File::create(dir.join(format!("{name}.p{i}.log"))).expect("log");
            let mut command = network.command(i, binary());
            command
                .arg("run")
                .arg("--config")
                .arg(&config)
                .args(["--input", "tasks.jsonl"])
                .args(extra)
                .current_dir(dir)
                .env("RUST_LOG", "info")
                .env(
                    "TIDEWATER__HTTP__LISTEN",
                    format!("{}:{http_port}", network.address(i)),
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
            if let Some(hostfile) = &hostfile {
                command
                    .args(["--process", &i.to_string(), "--hostfile"])
                    .arg(hostfile);
            }
            children.push(command.spawn().expect("spawn tidewater"));
            urls.push(format!(
                "http://{}:{}",
                network.address(i),
                http_port + i as u16
            ));
        }
        Cluster {
            network,
            dir: dir.to_path_buf(),
            name: name.to_string(),
            children,
            urls,
        }
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.join(format!("{}.p{i}.log", self.name)))
            .unwrap_or_default()
    }

    /// Every process's results and dead letters so far.
    fn outcomes(&self) -> Outcomes {
        outcomes(&self.dir, &self.name, self.children.len())
    }

    /// Waits until every task has a final outcome, the query results stop
    /// changing and agree with the outcomes; returns both.
    fn settle(&mut self) -> (Outcomes, BTreeMap<String, f64>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last: Option<(BTreeMap<String, f64>, Instant)> = None;
        loop {
            self.assert_running();
            let outcomes = self.outcomes();
            if outcomes.results.len() + outcomes.dead.len() == TASKS {
                let query = self.query("completions_by_status");
                let counted: f64 = query.values().sum();
                if counted as usize == outcomes.results.len() {
                    match &last {
                        Some((previous, since)) if *previous == query => {
                            if since.elapsed() > Duration::from_millis(600) {
                                return (outcomes, query);
                            }
                        }
                        _ => last = Some((query, Instant::now())),
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "{}: not settled: {} results, {} dead letters; p0 log:\n{}",
                self.name,
                outcomes.results.len(),
                outcomes.dead.len(),
                self.log(0)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A query's rows, `status → count`, merged over every process (each
    /// serves the rows its workers hold).
    fn query(&self, name: &str) -> BTreeMap<String, f64> {
        let mut rows = BTreeMap::new();
        for (i, url) in self.urls.iter().enumerate() {
            let Some((200, answer)) = self.network.get_json(i, &format!("{url}/v1/queries/{name}"))
            else {
                continue;
            };
            for row in answer["rows"].as_array().into_iter().flatten() {
                let key = row["key"].to_string();
                let count = row["values"]
                    .as_array()
                    .and_then(|v| v.first())
                    .and_then(serde_json::Value::as_f64)
                    .or_else(|| row["values"]["count"].as_f64())
                    .unwrap_or_default();
                *rows.entry(key).or_insert(0.0) += count;
            }
        }
        rows
    }

    fn assert_running(&mut self) {
        for (i, child) in self.children.iter_mut().enumerate() {
            if let Some(status) = child.try_wait().expect("wait") {
                panic!(
                    "{} process {i} exited early with {status}; log:\n{}",
                    self.name,
                    self.log(i)
                );
            }
        }
    }

    /// SIGTERM to every process, then waits for them.
    fn stop(mut self) {
        for child in &self.children {
            let _ = std::process::Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        self.children.clear();
    }
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `count` consecutive ports free on loopback now; the first is returned.
fn consecutive_free_ports(count: usize) -> u16 {
    loop {
        let port = free_port();
        if (1..count as u16).all(|k| std::net::TcpListener::bind(("127.0.0.1", port + k)).is_ok())
        {
            return port;
        }
    }
}

/// Final outcomes: (id, status, attempt) of every result and (reason,
/// excerpt) of every dead letter.
#[derive(Debug, Default, PartialEq)]
struct Outcomes {
    results: BTreeSet<(String, String, u64)>,
    dead: BTreeSet<(String, String)>,
}

fn outcomes(dir: &Path, name: &str, processes: usize) -> Outcomes {
    let mut outcomes = Outcomes::default();
    for i in 0..processes {
        for r in read_json_lines(&dir.join(format!("{name}.p{i}.results.jsonl"))) {
            outcomes.results.insert((
                r["task"]["id"].as_str().unwrap_or_default().to_string(),
                variant(&r["outcome"]),
                r["task"]["attempt"].as_u64().unwrap_or_default(),
            ));
        }
        for d in read_json_lines(&dir.join(format!("{name}.p{i}.dead.jsonl"))) {
            outcomes.dead.insert((
                variant(&d["reason"]),
                d["excerpt"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    outcomes
}

/// The variant name of an externally tagged enum value.
fn variant(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(name) => name.clone(),
        serde_json::Value::Object(map) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

#[test]
fn every_cluster_shape_gives_the_same_outcomes_and_query_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tasks.jsonl"), workload(0x7D1D_E015)).expect("input");
    let network = TestNetwork::new(4);
    if network.namespaced() {
        eprintln!("cluster equivalence: 4 test hosts in network namespaces, 10.213.0.1-4");
    }

    let mut seen = Vec::new();
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
        let name = format!("{}x{}", shape.processes, shape.workers);
        let sent_before: Vec<Option<u64>> = (0..4).map(|i| network.sent_bytes(i)).collect();
        let started = Instant::now();
        let mut cluster = Cluster::start(
            &network,
            dir.path(),
            shape,
            "kind = \"memory\"",
            &name,
            &[],
        );
        let (outcomes, query) = cluster.settle();
        let learner_logs = (0..shape.processes)
            .filter(|&i| cluster.log(i).contains("learner started"))
            .count();
        assert_eq!(learner_logs, 1, "{name}: the learner runs on worker 0 only");
        if shape.processes > 1 {
            // Every process took in its share of the input.
            for i in 0..shape.processes {
                let own = outcomes_of(dir.path(), &name, i);
                assert!(own > 0, "{name}: process {i} recorded nothing");
            }
        }
        cluster.stop();
        // Cluster traffic over the test LAN, for the scale plan.
        let sent: u64 = (0..shape.processes)
            .filter_map(|i| Some(network.sent_bytes(i)? - sent_before[i]?))
            .sum();
        eprintln!(
            "{name}: {} results, {} dead letters, query {query:?}, {sent} bytes sent between hosts in {:?}",
            outcomes.results.len(),
            outcomes.dead.len(),
            started.elapsed()
        );
        seen.push((name, outcomes, query));
    }
    let (first_name, first_outcomes, first_query) = &seen[0];
    assert!(!first_outcomes.dead.is_empty() && !first_outcomes.results.is_empty());
    assert!(first_outcomes
        .results
        .iter()
        .any(|(_, status, attempt)| status == "failed" && *attempt == 2));
    for (name, outcomes, query) in &seen[1..] {
        assert_eq!(outcomes, first_outcomes, "{name} differs from {first_name}");
        assert_eq!(query, first_query, "{name}'s query differs from {first_name}'s");
    }
}

/// How many results and dead letters process `i` of run `name` wrote.
fn outcomes_of(dir: &Path, name: &str, i: usize) -> usize {
    read_json_lines(&dir.join(format!("{name}.p{i}.results.jsonl"))).len()
        + read_json_lines(&dir.join(format!("{name}.p{i}.dead.jsonl"))).len()
}

/// Slow tasks for the crash test: a few seconds of work on four executors.
fn slow_workload(tasks: usize) -> String {
    (0..tasks)
        .map(|i| format!(r#"{{"id":"s{i}","kind":"sleep","payload":{{"ms":150}}}}"#))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_killed_process_is_reported_and_a_restart_resumes_from_the_stores() {
    const SLOW: usize = 60;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tasks.jsonl"), slow_workload(SLOW)).expect("input");
    let network = TestNetwork::new(2);
    let shape = Shape {
        processes: 2,
        workers: 1,
    };
    let store = "kind = \"embedded\"\npath = \"data/store.redb\"";
    let mut first = Cluster::start(&network, dir.path(), shape, store, "first", &[]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while first.outcomes().results.len() < 5 {
        first.assert_running();
        assert!(Instant::now() < deadline, "no results; log:\n{}", first.log(0));
        std::thread::sleep(Duration::from_millis(20));
    }
    // Process 1 dies mid-run.
    let victim = first.children.remove(1);
    let _ = Command::new("kill")
        .args(["-KILL", &victim.id().to_string()])
        .status();
    let finished_before_kill = first.outcomes().results.len();
    assert!(finished_before_kill < SLOW, "the run ended before the kill");

    // The survivor reports the lost peer.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !first.log(0).contains(LOST_PEER) {
        assert!(
            Instant::now() < deadline,
            "process 0 did not report its lost peer; log:\n{}",
            first.log(0)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("survivor's report: {}", report_line(&first.log(0)));
    drop(first);

    // A restart with the same hostfile resumes from the stores: every task
    // ends, and its record says so on either process.
    let mut second = Cluster::start(&network, dir.path(), shape, store, "second", &[]);
    let ids: Vec<String> = (0..SLOW).map(|i| format!("s{i}")).collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        second.assert_running();
        let pending: Vec<&String> = ids
            .iter()
            .filter(|id| {
                let state = second
                    .network
                    .get_json(0, &format!("{}/v1/tasks/{id}", second.urls[0]))
                    .map(|(_, record)| record["state"].as_str().unwrap_or_default().to_string());
                state.as_deref() != Some("succeeded")
            })
            .collect();
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart, {} tasks never finished (e.g. {:?}); log:\n{}",
            pending.len(),
            pending.first(),
            second.log(0)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // No task is reported twice across the two runs.
    let mut reported = BTreeMap::<String, usize>::new();
    for run in ["first", "second"] {
        for i in 0..2 {
            for r in read_json_lines(&dir.path().join(format!("{run}.p{i}.results.jsonl"))) {
                let id = r["task"]["id"].as_str().unwrap_or_default().to_string();
                *reported.entry(id).or_default() += 1;
            }
        }
    }
    assert!(reported.values().all(|&n| n == 1), "{reported:?}");
    second.stop();
}

/// What the survivor's log says when a peer process is lost.
const LOST_PEER: &str = "timely communication error";

fn report_line(log: &str) -> &str {
    log.lines().find(|l| l.contains(LOST_PEER)).unwrap_or_default()
}
