//! Crash safety through Kafka: the shared crash scenario
//! ([`broker_common::crash`](crate::broker_common::crash)) with the tasks
//! produced to a topic of three partitions. Results are repeated only for
//! messages that a crash left uncommitted (at most the in-flight bound per
//! crash, plus the last asynchronous commit's lag), and every offset is
//! committed in the end.

use std::time::Duration;

use crate::broker_common::crash::{self, Scenario, CRASHES, TASKS};
use crate::broker_common::kafka::Kafka;
use crate::broker_common::{service, unique};

const PARTITIONS: i32 = 3;
const MAX_IN_FLIGHT: usize = 2000;

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

    let scenario = Scenario {
        broker_config: format!(
            r#"[kafka]
brokers = "{brokers}"
group_id = "{group}"
topics = ["{tasks}"]
results_topic = "{results}"
dead_letter_topic = "{dead}"
max_in_flight = {MAX_IN_FLIGHT}
session_timeout_ms = 2000
heartbeat_interval_ms = 666
create_topics = false"#
        ),
        results: "results topic",
        collector: &collector,
        round_timeout: Duration::from_secs(180),
        final_timeout: Duration::from_secs(300),
        // A crash repeats what was consumed but not committed: at most the
        // in-flight bound, plus what had completed since the last commit.
        repeat_bound: CRASHES * 2 * MAX_IN_FLIGHT,
    };
    crash::kill_9_restarts(dir.path(), scenario, |bodies| {
        let keys: Vec<String> = (0..bodies.len()).map(|i| format!("k{i}")).collect();
        kafka.produce(
            &tasks,
            bodies
                .iter()
                .zip(&keys)
                .map(|(b, k)| (Some(k.as_bytes()), b.as_slice(), Vec::new())),
        )
    });
    let committed: i64 = kafka
        .committed(&group, &tasks, PARTITIONS)
        .into_iter()
        .map(Option::unwrap_or_default)
        .sum();
    assert_eq!(committed, TASKS as i64, "every offset was committed");
}
