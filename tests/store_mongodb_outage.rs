//! A MongoDB outage during a run: the server is stopped while tasks flow
//! and started again a few seconds later. The result sink's writes retry
//! with backoff and block meanwhile (no outcome is counted while the server
//! is down: backpressure, not loss), admissions wait for the server, and in
//! the end every task's final record is in MongoDB exactly once, with the
//! persisted counters agreeing. In its own test binary: it takes the
//! server down for everyone. Needs `TIDEWATER_MONGODB_URL` and
//! `TIDEWATER_MONGODB_CTL` (from `tests/services/up`).

mod mongodb_common;

use std::time::{Duration, Instant};

use mongodb::bson::doc;

use mongodb_common::{mongodb_url, server_ctl, unique_database, Mongo};
use tidewater::config::{Config, StoreKind};
use tidewater::Pipeline;
use tidewater_connectors::store::{MongoStore, MongoStoreConfig, TaskStore};
use tidewater_operators::model::{ResourceRequest, Task};

/// Tasks fed before, during and after the outage (each).
const PER_PHASE: usize = 1500;
/// Tasks admitted through the in-process path while the server is down.
const ADMITTED: usize = 50;
const OUTAGE: Duration = Duration::from_secs(3);

/// Starts the server again even if the test fails half-way.
struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            server_ctl("start");
        }
    }
}

fn task_json(id: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","kind":"noop","tenant":"acme","resources":{{"cpu_milli":10}}}}"#)
        .into_bytes()
}

#[test]
fn every_final_record_lands_once_across_a_server_restart() {
    let Some(url) = mongodb_url() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()),
        ))
        .with_test_writer()
        .try_init();
    let database = unique_database("outage");
    let mongo = Mongo::connect(&url, &database);
    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Mongodb;
    config.store.mongodb_url = Some(url.clone());
    config.store.database = database.clone();
    let pipeline = Pipeline::builder(config).start().expect("start");
    let ingress = pipeline.ingress();
    let stats = pipeline.stats();
    let feed = |phase: &str| {
        for i in 0..PER_PHASE {
            ingress
                .submit_json("outage", task_json(&format!("{phase}-{i}")), 0, 0)
                .expect("submit");
        }
    };

    feed("before");
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.finished() < (PER_PHASE / 4) as u64 {
        assert!(Instant::now() < deadline, "no progress before the outage");
        std::thread::sleep(Duration::from_millis(2));
    }
    let guard = RestartGuard;
    server_ctl("stop");
    let at_stop = stats.finished();
    eprintln!("server stopped at {at_stop} outcomes");
    feed("during");
    // Admission through the in-process path waits for the server.
    let store = pipeline.store();
    let admitting = std::thread::spawn(move || {
        let tasks: Vec<Task> = (0..ADMITTED)
            .map(|i| {
                let mut task = Task::new(format!("api-{i}"), "noop", ResourceRequest::cpu(10, 0));
                task.submitted_at_us = 1;
                task
            })
            .collect();
        let started = Instant::now();
        let admitted = store.admit(&tasks).expect("admit");
        (tasks, admitted, started.elapsed())
    });
    std::thread::sleep(OUTAGE);
    let while_down = stats.finished();
    server_ctl("start");
    drop(guard);
    assert!(
        while_down <= at_stop + 1,
        "outcomes were counted while the server was down ({at_stop} -> {while_down})"
    );
    let (tasks, admitted, waited) = admitting.join().expect("admission thread");
    assert!(admitted.iter().all(|a| a.is_new()));
    assert!(
        waited >= OUTAGE - Duration::from_millis(500),
        "admission did not wait for the server ({waited:?})"
    );
    for task in tasks {
        ingress.submit_task("api", task).expect("submit");
    }
    feed("after");

    let total = (3 * PER_PHASE + ADMITTED) as u64;
    let done = mongo.wait_count(
        "tasks",
        doc! { "state": "succeeded" },
        total,
        Duration::from_secs(120),
    );
    assert_eq!(done, total, "every task's final record landed");
    let summary = pipeline.shutdown().expect("shutdown");
    eprintln!("{summary:?}");
    assert_eq!(
        mongo.count("tasks", doc! {}),
        total,
        "one document per task"
    );
    let counts = MongoStore::open(&MongoStoreConfig::new(&url, &database))
        .expect("reopen")
        .counts()
        .expect("counts");
    assert_eq!(counts.succeeded, total, "{counts:?}");
    assert_eq!(counts.queued, 0, "{counts:?}");
}
