//! The crash scenario the broker tests share: 100,000 tasks put on the
//! broker, `tidewater run` killed with SIGKILL at three random points (in
//! bands spread over the run; `TIDEWATER_CRASH_SEED` fixes them) and
//! restarted each time, then stopped cleanly. Every task must end with
//! exactly one recorded outcome in the embedded store, every result must
//! reach the broker, and only what a crash left unacknowledged may be
//! repeated. The broker's side (its config section, putting the tasks on
//! it, reading the results) is the test's; checks of what the broker holds
//! afterwards (acknowledgements, commits) follow the scenario in the test.

use std::path::Path;
use std::process::Command;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use tidewater_connectors::store::{EmbeddedStore, TaskState, TaskStore};

use super::{task_json, Collector};
use crate::common::spawn_run;

/// Held while a scenario runs: the scenarios (100,000 tasks and four
/// `tidewater run` processes each) run one at a time, as they did when each
/// broker's was its own test binary, so that their time limits do not
/// depend on how many run beside them.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Tasks in the scenario.
pub const TASKS: usize = 100_000;
/// Crashes (SIGKILL, then a restart) in the scenario.
pub const CRASHES: usize = 3;

/// What a broker test brings to the scenario.
pub struct Scenario<'a> {
    /// The config's broker section (`[rabbitmq]` or `[kafka]` and its keys).
    pub broker_config: String,
    /// Where the results go, for failure messages ("results exchange").
    pub results: &'static str,
    /// Reads the results, counting them by task id.
    pub collector: &'a Collector,
    /// Longest wait for the results before each crash.
    pub round_timeout: Duration,
    /// Longest wait, after the last restart, for the last result.
    pub final_timeout: Duration,
    /// Most results the crashes may repeat in all.
    pub repeat_bound: usize,
}

/// Runs the scenario in `dir`; `publish` puts the task bodies on the broker.
pub fn kill_9_restarts(dir: &Path, scenario: Scenario<'_>, publish: impl FnOnce(&[Vec<u8>])) {
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(PoisonError::into_inner);
    let config = dir.join("config.toml");
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
{}
"#,
            scenario.broker_config
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
    publish(&bodies);
    eprintln!("put {TASKS} tasks on the broker in {:?}", started.elapsed());

    let collector = scenario.collector;
    let mut child = spawn_run(dir, &config, &[], "run-0.log");
    for (round, point) in kill_points().into_iter().enumerate() {
        assert!(
            collector.wait_for(point, scenario.round_timeout),
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
        child = spawn_run(dir, &config, &[], &format!("run-{}.log", round + 1));
    }
    assert!(
        collector.wait_for(TASKS, scenario.final_timeout),
        "only {} of {TASKS} tasks reached the {}",
        collector.distinct(),
        scenario.results
    );
    eprintln!("all results in {:?}", started.elapsed());

    // A clean stop, then read the store.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    assert!(child.wait().expect("wait").success(), "clean shutdown");

    let store = EmbeddedStore::open(&dir.join("data/store.redb")).expect("open store");
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

    let by_id = collector.counts();
    assert_eq!(by_id.len(), TASKS);
    let repeated: usize = by_id.values().map(|n| n - 1).sum();
    eprintln!("{repeated} results repeated after crashes");
    assert!(
        repeated <= scenario.repeat_bound,
        "{repeated} repeated results: more than the unacknowledged windows of {CRASHES} crashes"
    );
}

/// The results after which to crash: one in each of `CRASHES` bands spread
/// over the run, at a random point in the band's first half.
fn kill_points() -> Vec<usize> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        std::env::var("TIDEWATER_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| rand::rng().random()),
    );
    let band = TASKS * 8 / 10 / CRASHES;
    let mut points: Vec<usize> = (0..CRASHES)
        .map(|k| TASKS / 20 + k * band + rng.random_range(0..band / 2))
        .collect();
    points.sort_unstable();
    eprintln!("killing at {points:?} results");
    points
}
