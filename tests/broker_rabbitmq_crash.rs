//! Crash safety through RabbitMQ: 100,000 tasks published to a queue,
//! `tidewater run` killed with SIGKILL at three random points and
//! restarted. Every task ends with exactly one recorded outcome in the
//! embedded store, nothing is lost, every result reaches the results
//! exchange, and results are repeated only for deliveries that a crash left
//! unacknowledged (at most the prefetch window per crash).

mod broker_common;
mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use broker_common::{service, task_json, unique, Amqp};
use common::spawn_run;
use lapin::BasicProperties;
use rand::{Rng, SeedableRng};
use tidewater_connectors::store::{EmbeddedStore, TaskState, TaskStore};

const TASKS: usize = 100_000;
const PREFETCH: usize = 1000;
const CRASHES: usize = 3;

#[test]
fn every_task_is_recorded_exactly_once_across_kill_9_restarts() {
    let Some(url) = service("TIDEWATER_AMQP_URL") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let prefix = unique("crash");
    let queue = format!("{prefix}.tasks");
    let results = format!("{prefix}.results");
    let dead = format!("{prefix}.dead");
    let mut amqp = Amqp::connect(&url);
    amqp.topic(&results);
    amqp.topic(&dead);
    amqp.queue(&queue, &[]);
    amqp.queue(&format!("{results}.capture"), &[&results]);
    let collector = amqp.collect(&format!("{results}.capture"));

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
[rabbitmq]
url = "{url}"
prefetch = {PREFETCH}
results_exchange = "{results}"
dead_letter_exchange = "{dead}"
reconnect_initial_ms = 50
[[rabbitmq.queues]]
name = "{queue}"
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
    amqp.publish_to_queue(
        &queue,
        bodies
            .iter()
            .map(|b| (b.as_slice(), BasicProperties::default())),
    );
    eprintln!("published {TASKS} tasks in {:?}", started.elapsed());

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
            collector.wait_for(point, Duration::from_secs(120)),
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
        collector.wait_for(TASKS, Duration::from_secs(240)),
        "only {} of {TASKS} tasks reached the results exchange",
        collector.distinct()
    );
    eprintln!("all results in {:?}", started.elapsed());

    // A clean stop, then read the store.
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
    assert_eq!(amqp.ready(&queue), 0, "every task was acknowledged");

    let by_id = collector.counts();
    assert_eq!(by_id.len(), TASKS);
    let repeated: usize = by_id.values().map(|n| n - 1).sum();
    eprintln!("{repeated} results repeated after crashes");
    assert!(
        repeated <= CRASHES * PREFETCH,
        "{repeated} repeated results: more than the unacknowledged windows of {CRASHES} crashes"
    );
}
