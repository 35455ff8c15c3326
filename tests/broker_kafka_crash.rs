//! Crash safety through Kafka: 100,000 tasks produced to a topic,
//! `tidewater run` killed with SIGKILL at three random points and
//! restarted. Every task ends with exactly one recorded outcome in the
//! embedded store, nothing is lost, every result reaches the results topic,
//! and results are repeated only for messages that a crash left uncommitted
//! (at most the in-flight bound per crash, plus the last asynchronous
//! commit's lag).

mod broker_common;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use broker_common::kafka::Kafka;
use broker_common::{service, task_json, unique};
use common::spawn_run;
use rand::{Rng, SeedableRng};
use tidewater_connectors::store::{EmbeddedStore, TaskState, TaskStore};

const TASKS: usize = 100_000;
const PARTITIONS: i32 = 3;
const MAX_IN_FLIGHT: usize = 2000;
const CRASHES: usize = 3;

#[test]
fn every_task_is_recorded_exactly_once_across_kill_9_restarts() {
    let Some(brokers) = service("TIDEWATER_KAFKA_BROKERS") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = unique("crash");
    let tasks = format!("{prefix}.tasks");
    let results = format!("{prefix}.results");
    let dead = format!("{prefix}.dead");
    let group = format!("{prefix}.group");
    let kafka = Kafka::connect(&brokers);
    kafka.create_topic(&tasks, PARTITIONS);
    kafka.create_topic(&results, PARTITIONS);
    kafka.create_topic(&dead, 1);
    let collector = kafka.collect(&results);

    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
workers = 2
[http]
enabled = false
[store]
kind = "embedded"
path = "data/store.redb"
[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["{tasks}"]
results_topic = "{results}"
dead_letter_topic = "{dead}"
max_in_flight = {MAX_IN_FLIGHT}
session_timeout_ms = 2000
heartbeat_interval_ms = 666
create_topics = false
"#
        ),
    )
    .expect("write config");

    let started = Instant::now();
    let bodies: Vec<Vec<u8>> = (0..TASKS)
        .map(|i| {
            task_json(
                &format!("c-{i}"),
                "noop",
                ["acme", "globex", "initech"][i % 3],
            )
        })
        .collect();
    let keys: Vec<String> = (0..TASKS).map(|i| format!("k{i}")).collect();
    kafka.produce(
        &tasks,
        bodies
            .iter()
            .zip(&keys)
            .map(|(b, k)| (Some(k.as_bytes()), b.as_slice(), Vec::new())),
    );
    eprintln!("produced {TASKS} tasks in {:?}", started.elapsed());

    // Three kill points, random but spread over the run.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        std::env::var("TIDEWATER_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| rand::rng().random()),
    );
    let mut kill_points: Vec<usize> = (0..CRASHES)
        .map(|k| {
            let band = TASKS * 8 / 10 / CRASHES;
            TASKS / 20 + k * band + rng.random_range(0..band / 2)
        })
        .collect();
    kill_points.sort_unstable();
    eprintln!("killing at {kill_points:?} results");

    let mut child = spawn_run(dir.path(), &config, &[], "run-0.log");
    for (round, &point) in kill_points.iter().enumerate() {
        assert!(
            collector.wait_for(point, Duration::from_secs(180)),
            "round {round}: only {} results before the crash at {point}",
            collector.distinct()
        );
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        let at = collector.distinct();
        eprintln!("killed at {at} results ({:?})", started.elapsed());
        assert!(
            at < TASKS,
            "round {round}: the crash came after everything finished"
        );
        child = spawn_run(dir.path(), &config, &[], &format!("run-{}.log", round + 1));
    }
    assert!(
        collector.wait_for(TASKS, Duration::from_secs(300)),
        "only {} of {TASKS} tasks reached the results topic",
        collector.distinct()
    );
    eprintln!("all results in {:?}", started.elapsed());

    // A clean stop, then read the store and the group's commits.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    assert!(child.wait().expect("wait").success(), "clean shutdown");

    let store = EmbeddedStore::open(&dir.path().join("data/store.redb")).expect("open store");
    let counts = store.counts().expect("counts");
    assert_eq!(counts.succeeded, TASKS as u64, "{counts:?}");
    assert_eq!(
        counts.queued + counts.failed + counts.rejected,
        0,
        "{counts:?}"
    );
    for i in (0..TASKS).step_by(97) {
        let record = store
            .get(&format!("c-{i}"))
            .expect("get")
            .expect("recorded");
        assert_eq!(record.state, TaskState::Succeeded);
    }
    let committed: i64 = kafka
        .committed(&group, &tasks, PARTITIONS)
        .into_iter()
        .map(Option::unwrap_or_default)
        .sum();
    assert_eq!(committed, TASKS as i64, "every offset was committed");

    let by_id = collector.counts();
    assert_eq!(by_id.len(), TASKS);
    let repeated: usize = by_id.values().map(|n| n - 1).sum();
    eprintln!("{repeated} results repeated after crashes");
    // A crash repeats what was consumed but not committed: at most the
    // in-flight bound, plus what had completed since the last commit.
    assert!(
        repeated <= CRASHES * 2 * MAX_IN_FLIGHT,
        "{repeated} repeated results: more than the uncommitted windows of {CRASHES} crashes"
    );
}
