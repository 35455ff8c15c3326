//! The `Decode` operator against the sequential validator on seeded random
//! records, with 1 and 4 workers: the same tasks and the same rejections.

use std::sync::{Arc, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use timely::dataflow::operators::{Input, Inspect};

use tidewater_operators::dataflow::Decode;
use tidewater_operators::model::{AckToken, RecordBody, SourceRecord};
use tidewater_operators::validate::{ValidationLimits, Validator};

fn records(seed: u64, n: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let fragments = [
        r#""kind":"noop""#,
        r#""kind":7"#,
        r#""resources":{"cpu_milli":0}"#,
        r#""resources":{"cpu_milli":250,"memory_mib":64}"#,
        r#""resources":{"gpus":2,"gpu_models":["A100"]}"#,
        r#""resources":{"gpu_milli":1200}"#,
        r#""max_attempts":3"#,
        r#""qos":"best_effort""#,
        r#""colour":"red""#,
        r#""timeout_ms":-1"#,
    ];
    (0..n)
        .map(|i| {
            let mut fields = vec![format!(r#""id":"d{i}""#)];
            for _ in 0..rng.random_range(0..4) {
                fields.push(fragments[rng.random_range(0..fragments.len())].to_string());
            }
            let json = format!("{{{}}}", fields.join(","));
            if rng.random_range(0..15) == 0 {
                json[..json.len() / 2].to_string()
            } else {
                json
            }
        })
        .collect()
}

/// (id or record index, outcome) for every record, sorted.
fn reference(records: &[String]) -> Vec<(String, String)> {
    let mut validator = Validator::new(ValidationLimits::default(), 0, 1);
    let mut out: Vec<(String, String)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            match validator.decode(
                r.as_bytes(),
                AckToken {
                    origin_worker: 0,
                    source: 1,
                    tag: i as u64,
                },
                0,
            ) {
                Ok(task) => (
                    format!("{i}"),
                    format!("task {} {:?}", task.id, task.resources),
                ),
                Err(reason) => (format!("{i}"), format!("rejected {}", reason.code())),
            }
        })
        .collect();
    out.sort();
    out
}

fn dataflow(records: Vec<String>, workers: usize) -> Vec<(String, String)> {
    let results = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&results);
    let records = Arc::new(records);
    timely::execute(timely::Config::process(workers), move |worker| {
        let (index, peers) = (worker.index(), worker.peers());
        let (tasks_sink, rejects_sink) = (Arc::clone(&sink), Arc::clone(&sink));
        let mut input = worker.dataflow::<u64, _, _>(|scope| {
            let (input, stream) = scope.new_input::<Vec<SourceRecord>>();
            let (tasks, rejects) =
                stream.decode(Validator::new(ValidationLimits::default(), index, 1));
            tasks.inspect(move |t| {
                let entry = (
                    t.ack.tag.to_string(),
                    format!("task {} {:?}", t.id, t.resources),
                );
                tasks_sink.lock().expect("lock").push(entry);
            });
            rejects.inspect(move |r| {
                let entry = (
                    r.ack.tag.to_string(),
                    format!("rejected {}", r.reason.code()),
                );
                rejects_sink.lock().expect("lock").push(entry);
            });
            input
        });
        for (i, record) in records
            .iter()
            .enumerate()
            .filter(|(i, _)| i % peers == index)
        {
            input.send(SourceRecord {
                body: RecordBody::Json(record.as_bytes().to_vec()),
                ack: AckToken {
                    origin_worker: index as u32,
                    source: 1,
                    tag: i as u64,
                },
                source_name: "test".into(),
                received_at_us: 1,
                trace: None,
            });
        }
    })
    .expect("execute");
    let mut out = results.lock().expect("lock").clone();
    out.sort();
    out
}

#[test]
fn decode_matches_the_sequential_validator_with_1_and_4_workers() {
    for seed in [7, 8, 9] {
        let input = records(seed, 400);
        let expected = reference(&input);
        assert!(expected.iter().any(|(_, o)| o.starts_with("task")));
        assert!(expected.iter().any(|(_, o)| o == "rejected malformed"));
        assert!(expected.iter().any(|(_, o)| o == "rejected unknown_field"));
        for workers in [1, 4] {
            assert_eq!(
                dataflow(input.clone(), workers),
                expected,
                "seed {seed}, {workers} workers"
            );
        }
    }
}
