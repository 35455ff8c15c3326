//! The MongoDB change-stream source: documents inserted into a collection
//! become tasks, bad documents are dead-lettered with their reason, and a
//! restart resumes after the last document recorded as accepted, so inserts
//! made while the pipeline was down are run, and none twice. Needs
//! `TIDEWATER_MONGODB_URL` (from `tests/services/up`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{doc, oid::ObjectId, Document};

use crate::mongodb_common::{mongodb_url, unique_database, Mongo};
use tidewater::config::{Config, StoreKind};
use tidewater::{HandlerOutput, Pipeline, RunningPipeline};
use tidewater_connectors::mongo_source::MongoSourceConfig;

const COLLECTION: &str = "submissions";

type Tally = Arc<Mutex<HashMap<String, usize>>>;

fn start(url: &str, database: &str, tally: &Tally) -> RunningPipeline {
    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Mongodb;
    config.store.mongodb_url = Some(url.to_string());
    config.store.database = database.to_string();
    let mut source = MongoSourceConfig::new(url, database, COLLECTION);
    source.batch_size = 64;
    config.mongodb_source = Some(source);
    let tally = Arc::clone(tally);
    let pipeline = Pipeline::builder(config)
        .inline_handler("tally", move |task| {
            if let Ok(mut seen) = tally.lock() {
                *seen.entry(task.id.to_string()).or_default() += 1;
            }
            Ok(HandlerOutput::default())
        })
        .start()
        .expect("start");
    let source = pipeline
        .brokers()
        .mongodb_source()
        .expect("source configured")
        .clone();
    let runtime = pipeline.runtime().expect("runtime");
    assert!(
        runtime.block_on(source.wait_watching(Duration::from_secs(30))),
        "the change stream did not open"
    );
    pipeline
}

fn submission(id: Option<&str>) -> Document {
    let mut document = doc! {
        "kind": "tally",
        "tenant": "acme",
        "resources": { "cpu_milli": 10 },
    };
    match id {
        Some(id) => document.insert("id", id),
        None => document.insert("_id", ObjectId::new()),
    };
    document
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn inserts_become_tasks_and_a_restart_resumes_after_the_last_accepted() {
    let Some(url) = mongodb_url() else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_test_writer()
        .try_init();
    let database = unique_database("source");
    let mongo = Mongo::connect(&url, &database);
    let tally: Tally = Arc::default();

    let pipeline = start(&url, &database, &tally);
    let mut first: Vec<Document> = (0..40)
        .map(|i| submission(Some(&format!("named-{i}"))))
        .collect();
    first.extend((0..40).map(|_| submission(None)));
    // Bad documents, each for its own reason.
    first.push(doc! { "id": "bad-type", "kind": 5, "resources": { "cpu_milli": 10 } });
    first.push(doc! { "id": "bad-missing", "resources": { "cpu_milli": 10 } });
    first.push(doc! { "id": "bad-field", "kind": "tally", "colour": "red", "resources": { "cpu_milli": 10 } });
    mongo.insert(COLLECTION, first);
    let store = pipeline.store();
    wait_for("the first 80 tasks", Duration::from_secs(60), || {
        store.counts().map(|c| c.succeeded).unwrap_or(0) >= 80
    });
    wait_for("three dead letters", Duration::from_secs(30), || {
        store.rejections(10).map(|r| r.len()).unwrap_or(0) >= 3
    });
    let mut codes: Vec<&'static str> = store
        .rejections(10)
        .expect("rejections")
        .iter()
        .map(|r| {
            assert_eq!(r.source_name.as_str(), "mongodb");
            r.reason.code()
        })
        .collect();
    codes.sort();
    assert_eq!(codes, vec!["missing_field", "unknown_field", "wrong_type"]);
    pipeline.shutdown().expect("shutdown");
    let token_key = format!("{database}.{COLLECTION}");
    assert!(
        mongo.get("tidewater_resume_tokens", &token_key).is_some(),
        "the position was saved"
    );

    // Inserted while no pipeline runs, with one repeat of a known id.
    let mut second: Vec<Document> = (40..60)
        .map(|i| submission(Some(&format!("named-{i}"))))
        .collect();
    second.push(submission(Some("named-3")));
    mongo.insert(COLLECTION, second);

    let pipeline = start(&url, &database, &tally);
    let store = pipeline.store();
    wait_for(
        "the 20 tasks inserted while down",
        Duration::from_secs(60),
        || store.counts().map(|c| c.succeeded).unwrap_or(0) >= 100,
    );
    // The repeat and the resumed stream's start ran nothing again.
    std::thread::sleep(Duration::from_millis(300));
    let counts = store.counts().expect("counts");
    assert_eq!(counts.succeeded, 100, "{counts:?}");
    assert_eq!(
        counts.rejected, 3,
        "dead letters are not repeated: {counts:?}"
    );
    pipeline.shutdown().expect("shutdown");

    let tally = tally.lock().expect("tally");
    assert_eq!(tally.len(), 100, "every inserted task ran");
    let repeated: Vec<(&String, &usize)> = tally.iter().filter(|(_, n)| **n != 1).collect();
    assert!(repeated.is_empty(), "ran more than once: {repeated:?}");
    assert_eq!(mongo.count("tasks", doc! { "state": "succeeded" }), 100);
}
