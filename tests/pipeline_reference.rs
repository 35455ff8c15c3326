//! The whole task pipeline against a sequential reference, on seeded random
//! input, with 1 and 4 workers: the same final outcomes, attempt counts and
//! rejections.

use std::collections::BTreeMap;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use tidewater::config::{Config, ExecutorConfig, StoreKind};
use tidewater::{HandlerFailure, HandlerOutput, Pipeline};
use tidewater_connectors::store::{MemoryStore, TaskState, TaskStore};
use tidewater_operators::model::{AckToken, ExecutorSpec, GpuRequest, ResourceRequest, Task};
use tidewater_operators::validate::{ValidationLimits, Validator};

/// Whether the `flaky` handler fails this attempt: a fixed function of id and attempt.
fn flaky_fails(id: &str, attempt: u16) -> bool {
    let h = id.bytes().fold(u64::from(attempt) * 7919, |h, b| {
        h.wrapping_mul(31).wrapping_add(u64::from(b))
    });
    h % 3 == 0
}

fn executors() -> Vec<ExecutorConfig> {
    vec![
        ExecutorConfig {
            id: "cpu".into(),
            count: 3,
            cpu_milli: 4000,
            memory_mib: 8192,
            ..Default::default()
        },
        ExecutorConfig {
            id: "a100".into(),
            count: 2,
            cpu_milli: 8000,
            memory_mib: 16384,
            gpus: 2,
            gpu_model: "A100".into(),
            ..Default::default()
        },
        ExecutorConfig {
            id: "v100".into(),
            count: 1,
            cpu_milli: 8000,
            memory_mib: 16384,
            gpus: 4,
            gpu_model: "V100".into(),
            ..Default::default()
        },
    ]
}

/// Seeded random records: mostly valid tasks of several kinds and shapes,
/// some infeasible, some invalid.
fn workload(seed: u64, n: usize) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let kind = ["noop", "noop", "flaky", "flaky", "missing"][rng.random_range(0..5)];
            let cpu = rng.random_range(1..=4000);
            let gpu = match rng.random_range(0..6) {
                0 => r#","gpu_milli":250"#.to_string(),
                1 => r#","gpus":2,"gpu_models":["A100"]"#.to_string(),
                2 => r#","gpus":3"#.to_string(),
                _ => String::new(),
            };
            match rng.random_range(0..20) {
                0 => format!(r#"{{"id":"r{i}","kind":"noop","resources":{{"cpu_milli":100000}}}}"#),
                1 => format!(r#"{{"id":"r{i}","kind":"noop","resources":{{"gpus":8}}}}"#),
                2 => format!(r#"{{"id":"r{i}","kind":"noop","resources":{{"cpu_milli":-3}}}}"#),
                3 => format!(r#"{{"id":"r{i}","kind":"noop","surprise":true}}"#),
                4 => format!(r#"{{"id":"r{i}","resources":{{}}}}"#),
                5 => format!(r#"{{"id": "r{i}", "kind": "#),
                _ => format!(
                    r#"{{"id":"r{i}","kind":"{kind}","max_attempts":{},"priority":{},"resources":{{"cpu_milli":{cpu},"memory_mib":{}{gpu}}}}}"#,
                    rng.random_range(1..=3),
                    rng.random_range(-5..5),
                    rng.random_range(0..4096),
                ),
            }
        })
        .collect()
}

/// Could any executor, empty, hold the request? (written independently of
/// the allocator).
fn feasible(request: &ResourceRequest, specs: &[ExecutorSpec]) -> bool {
    specs.iter().any(|e| {
        let gpus = e
            .gpus
            .iter()
            .filter(|g| request.allows_gpu_model(&g.model))
            .count();
        let gpu_ok = match request.gpu {
            GpuRequest::None => true,
            GpuRequest::Fraction(_) => gpus >= 1,
            GpuRequest::Whole(n) => gpus >= usize::from(n),
        };
        u64::from(request.cpu_milli) <= e.cpu_milli
            && u64::from(request.memory_mib) <= e.memory_mib
            && gpu_ok
    })
}

#[derive(Debug, PartialEq, Eq, Clone)]
enum Expected {
    Final(TaskState, u16),
    Rejected(&'static str),
}

/// The sequential reference: decode each record, check feasibility, and
/// play the handler through its attempts.
fn reference(records: &[String], specs: &[ExecutorSpec]) -> BTreeMap<String, Expected> {
    let mut validator = Validator::new(ValidationLimits::default(), 0, 1);
    let mut expected = BTreeMap::new();
    for (i, record) in records.iter().enumerate() {
        let outcome = match validator.decode(record.as_bytes(), AckToken::NONE, 0) {
            Err(reason) => Expected::Rejected(reason.code()),
            // A kind no handler serves is refused at intake, before placement.
            Ok(task) if !matches!(task.kind.as_str(), "noop" | "flaky") => {
                Expected::Rejected("invalid_value")
            }
            Ok(task) if !feasible(&task.resources, specs) => Expected::Rejected("infeasible"),
            Ok(task) => final_outcome(&task),
        };
        expected.insert(format!("r{i}"), outcome);
    }
    expected
}

fn final_outcome(task: &Task) -> Expected {
    for attempt in 1..=task.max_attempts {
        let fails = match task.kind.as_str() {
            "noop" => false,
            "flaky" => flaky_fails(&task.id, attempt),
            _ => true,
        };
        if !fails {
            return Expected::Final(TaskState::Succeeded, attempt);
        }
    }
    Expected::Final(TaskState::Failed, task.max_attempts)
}

fn run_pipeline(records: &[String], workers: usize) -> BTreeMap<String, Expected> {
    let mut config = Config {
        workers,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    config.executors = executors();
    config.retry.initial_backoff_ms = 1;
    config.retry.max_backoff_ms = 4;
    let store = Arc::new(MemoryStore::new());
    let pipeline = Pipeline::builder(config)
        .store(store.clone())
        .inline_handler("flaky", |task| {
            if flaky_fails(&task.id, task.attempt) {
                Err(HandlerFailure::from(format!(
                    "flaky failure on attempt {}",
                    task.attempt
                )))
            } else {
                Ok(HandlerOutput::default())
            }
        })
        .start()
        .expect("start");
    let ingress = pipeline.ingress();
    for record in records {
        ingress
            .submit_json("test", record.clone().into_bytes(), 0, 0)
            .expect("submit");
    }
    let summary = pipeline.shutdown().expect("shutdown");
    assert_eq!(
        summary.finished + summary.rejected,
        records.len() as u64,
        "every record has one outcome"
    );

    let mut results = BTreeMap::new();
    for rejection in store.rejections(usize::MAX).expect("rejections") {
        // Records that failed to parse carry no id; identify them by excerpt.
        let id = rejection
            .task_id
            .map(|id| id.to_string())
            .unwrap_or_else(|| {
                let index = records
                    .iter()
                    .position(|r| *r == rejection.excerpt)
                    .expect("known record");
                format!("r{index}")
            });
        results.insert(id, Expected::Rejected(rejection.reason.code()));
    }
    for i in 0..records.len() {
        let id = format!("r{i}");
        if let Some(record) = store.get(&id).expect("get") {
            results
                .entry(id)
                .or_insert(Expected::Final(record.state, record.attempts));
        }
    }
    results
}

#[test]
fn pipeline_matches_sequential_reference_with_1_and_4_workers() {
    let specs: Vec<ExecutorSpec> = executors().iter().flat_map(ExecutorConfig::specs).collect();
    for seed in [1, 2, 3] {
        let records = workload(seed, 600);
        let expected = reference(&records, &specs);
        assert!(expected
            .values()
            .any(|e| matches!(e, Expected::Rejected("infeasible"))));
        assert!(expected
            .values()
            .any(|e| matches!(e, Expected::Final(TaskState::Failed, _))));
        assert!(expected
            .values()
            .any(|e| matches!(e, Expected::Final(TaskState::Succeeded, 2 | 3))));
        for workers in [1, 4] {
            let actual = run_pipeline(&records, workers);
            let differences: Vec<_> = expected
                .iter()
                .filter(|(id, e)| actual.get(*id) != Some(e))
                .map(|(id, e)| format!("{id}: expected {e:?}, got {:?}", actual.get(id)))
                .collect();
            assert!(
                differences.is_empty(),
                "{workers} workers, seed {seed}: {differences:#?}"
            );
            assert_eq!(
                actual.len(),
                expected.len(),
                "{workers} workers, seed {seed}: extra outcomes"
            );
        }
    }
}
