//! Crash safety through RabbitMQ: the shared crash scenario
//! ([`broker_common::crash`](crate::broker_common::crash)) with the tasks
//! published to a queue. Results are repeated only for deliveries that a
//! crash left unacknowledged (at most the prefetch window per crash), and
//! every task is acknowledged in the end.

use std::time::Duration;

use crate::broker_common::crash::{self, Scenario, CRASHES};
use crate::broker_common::{service, unique, Amqp};
use lapin::BasicProperties;

const PREFETCH: usize = 1000;

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

    let scenario = Scenario {
        broker_config: format!(
            r#"[rabbitmq]
url = "{url}"
prefetch = {PREFETCH}
results_exchange = "{results}"
dead_letter_exchange = "{dead}"
reconnect_initial_ms = 50
[[rabbitmq.queues]]
name = "{queue}""#
        ),
        results: "results exchange",
        collector: &collector,
        round_timeout: Duration::from_secs(120),
        final_timeout: Duration::from_secs(240),
        repeat_bound: CRASHES * PREFETCH,
    };
    crash::kill_9_restarts(dir.path(), scenario, |bodies| {
        amqp.publish_to_queue(
            &queue,
            bodies
                .iter()
                .map(|b| (b.as_slice(), BasicProperties::default())),
        )
    });
    assert_eq!(amqp.ready(&queue), 0, "every task was acknowledged");
}
