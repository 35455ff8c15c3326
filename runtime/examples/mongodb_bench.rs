//! Pipeline throughput with the MongoDB store, against a raw driver write
//! loop on the same server in the same run, and with the embedded and
//! in-memory stores.
//!
//! Each round feeds `TASKS` noop tasks as broker records would arrive
//! (`submit_json`, no admission) and times until every final outcome is
//! recorded. The MongoDB run wraps the store to note the size of every
//! batch the result sink wrote; the raw loop then writes documents of the
//! same shape in exactly those batch sizes, one `insert_many` each (the
//! least a driver user could do per batch), and, as a second reference,
//! one transaction per batch as the store does (upsert statements in one
//! `update` command, a counter `$inc`, majority commit).
//!
//! ```sh
//! eval "$(tests/services/up)"
//! cargo run --release -p tidewater --example mongodb_bench -- 20000 3
//! ```
//! Arguments: tasks per round (default 20000), rounds (default 3).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document};
use mongodb::options::{Acknowledgment, TransactionOptions, WriteConcern};
use mongodb::Client;

use tidewater::config::{Config, StoreKind};
use tidewater::Pipeline;
use tidewater_connectors::store::{
    Admission, EmbeddedStore, MemoryStore, ModelRecord, MongoStore, MongoStoreConfig, StateCounts,
    StoreError, TaskPage, TaskQuery, TaskRecord, TaskStore, TokenRecord,
};
use tidewater_operators::model::{Completion, ModelTarget, Rejection, Task};

/// A store that notes the size of each batch of final outcomes.
struct Recording {
    inner: Arc<dyn TaskStore>,
    batches: Mutex<Vec<usize>>,
}

impl TaskStore for Recording {
    fn admit(&self, tasks: &[Task]) -> Result<Vec<Admission>, StoreError> {
        self.inner.admit(tasks)
    }
    fn record_finished(&self, completions: &[Completion]) -> Result<Vec<bool>, StoreError> {
        if let Ok(mut batches) = self.batches.lock() {
            batches.push(completions.len());
        }
        self.inner.record_finished(completions)
    }
    fn get(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        self.inner.get(id)
    }
    fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        self.inner.list(query)
    }
    fn unfinished(&self) -> Result<Vec<Task>, StoreError> {
        self.inner.unfinished()
    }
    fn counts(&self) -> Result<StateCounts, StoreError> {
        self.inner.counts()
    }
    fn record_rejections(&self, rejections: &[Rejection]) -> Result<(), StoreError> {
        self.inner.record_rejections(rejections)
    }
    fn rejections(&self, limit: usize) -> Result<Vec<Rejection>, StoreError> {
        self.inner.rejections(limit)
    }
    fn put_model(&self, record: &ModelRecord) -> Result<(), StoreError> {
        self.inner.put_model(record)
    }
    fn models(&self, target: ModelTarget) -> Result<Vec<ModelRecord>, StoreError> {
        self.inner.models(target)
    }
    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.inner.put_token(token)
    }
    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.inner.token(id)
    }
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.inner.tokens()
    }
}

fn task_json(round: usize, i: usize) -> Vec<u8> {
    format!(
        r#"{{"id":"r{round}-{i}","kind":"noop","tenant":"acme","resources":{{"cpu_milli":10}}}}"#
    )
    .into_bytes()
}

/// Tasks per second through a pipeline with `store`.
fn pipeline_rate(store: Arc<dyn TaskStore>, tasks: usize, round: usize) -> f64 {
    let mut config = Config {
        workers: 2,
        metrics: false,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    let pipeline = Pipeline::builder(config)
        .store(store)
        .start()
        .expect("start the pipeline");
    let ingress = pipeline.ingress();
    let started = Instant::now();
    for i in 0..tasks {
        ingress
            .submit_json("bench", task_json(round, i), 0, 0)
            .expect("submit");
    }
    assert!(
        pipeline.wait_for_outcomes(tasks as u64, Duration::from_secs(600)),
        "the pipeline did not finish"
    );
    let elapsed = started.elapsed();
    pipeline.shutdown().expect("shutdown");
    tasks as f64 / elapsed.as_secs_f64()
}

/// A final task document of the store's shape.
fn final_document(round: usize, i: usize, now_us: i64) -> Document {
    doc! {
        "_id": format!("raw{round}-{i}"),
        "state": "succeeded", "kind": "noop", "tenant": "acme", "attempts": 1,
        "executor": "local-0", "submitted_at_us": now_us, "started_at_us": now_us,
        "finished_at_us": now_us, "exit_code": mongodb::bson::Bson::Null, "output_bytes": 0_i64,
        "reason": mongodb::bson::Bson::Null, "result": mongodb::bson::Bson::Null,
        "fingerprint": 0_i64,
    }
}

/// Documents per second written raw, in `batches`; transactional or not.
async fn raw_rate(
    client: &Client,
    database: &str,
    batches: &[usize],
    round: usize,
    transactional: bool,
) -> f64 {
    let db = client.database(database);
    let tasks = db.collection::<Document>("tasks");
    let counters = db.collection::<Document>("counters");
    let now_us = 1_700_000_000_000_000_i64;
    let total: usize = batches.iter().sum();
    let started = Instant::now();
    let mut next = 0;
    for &size in batches {
        let documents: Vec<Document> = (next..next + size)
            .map(|i| final_document(round, i, now_us))
            .collect();
        next += size;
        if !transactional {
            tasks.insert_many(documents).await.expect("insert_many");
            continue;
        }
        let mut session = client.start_session().await.expect("session");
        let options = TransactionOptions::builder()
            .write_concern(
                WriteConcern::builder()
                    .w(Acknowledgment::Majority)
                    .journal(true)
                    .build(),
            )
            .build();
        session
            .start_transaction()
            .with_options(options)
            .await
            .expect("start");
        let ids: Vec<&str> = documents
            .iter()
            .filter_map(|d| d.get_str("_id").ok())
            .collect();
        let mut found = tasks
            .find(doc! { "_id": { "$in": ids } })
            .session(&mut session)
            .await
            .expect("find");
        while found
            .next(&mut session)
            .await
            .transpose()
            .expect("read")
            .is_some()
        {}
        let updates: Vec<Document> = documents
            .into_iter()
            .map(|d| doc! { "q": { "_id": d.get_str("_id").unwrap_or_default() }, "u": { "$setOnInsert": d }, "upsert": true })
            .collect();
        db.run_command(doc! { "update": "tasks", "updates": updates, "ordered": true })
            .session(&mut session)
            .await
            .expect("update");
        counters
            .update_one(
                doc! { "_id": "states/0" },
                doc! { "$inc": { "succeeded": size as i64 } },
            )
            .upsert(true)
            .session(&mut session)
            .await
            .expect("counters");
        session.commit_transaction().await.expect("commit");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let url = std::env::var("TIDEWATER_MONGODB_URL")
        .expect("TIDEWATER_MONGODB_URL (eval \"$(tests/services/up)\")");
    let mut args = std::env::args().skip(1);
    let tasks: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let rounds: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(3);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let client = runtime
        .block_on(Client::with_uri_str(&url))
        .expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");

    let (mut mongo, mut raw, mut raw_txn, mut embedded, mut memory, mut mean_batch) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    for round in 0..rounds {
        let database = format!("tw_bench_{}_{round}", std::process::id());
        let store = Arc::new(Recording {
            inner: Arc::new(
                MongoStore::open(&MongoStoreConfig::new(&url, &database)).expect("open"),
            ),
            batches: Mutex::new(Vec::new()),
        });
        mongo.push(pipeline_rate(store.clone(), tasks, round));
        let batches = store.batches.lock().expect("batches").clone();
        mean_batch.push(tasks as f64 / batches.len().max(1) as f64);
        let raw_db = format!("{database}_raw");
        raw.push(runtime.block_on(raw_rate(&client, &raw_db, &batches, round, false)));
        let txn_db = format!("{database}_txn");
        raw_txn.push(runtime.block_on(raw_rate(&client, &txn_db, &batches, round, true)));
        let path = dir.path().join(format!("bench-{round}.redb"));
        embedded.push(pipeline_rate(
            Arc::new(EmbeddedStore::open(&path).expect("embedded")),
            tasks,
            round,
        ));
        memory.push(pipeline_rate(Arc::new(MemoryStore::new()), tasks, round));
        for name in [database, raw_db, txn_db] {
            let _ = runtime.block_on(async { client.database(&name).drop().await });
        }
        eprintln!(
            "round {round}: mongo store {:.0}/s, raw insert_many {:.0}/s, raw transactions {:.0}/s, embedded {:.0}/s, memory {:.0}/s, {} batches (mean {:.1})",
            mongo[round], raw[round], raw_txn[round], embedded[round], memory[round], batches.len(), mean_batch[round]
        );
    }
    let (m, r, t) = (median(mongo), median(raw), median(raw_txn));
    println!(
        "tasks per round: {tasks}, rounds: {rounds}, mean batch: {:.1}",
        median(mean_batch)
    );
    println!("pipeline, MongoDB store:      {m:>9.0} tasks/s");
    println!(
        "raw insert_many, same batches:{r:>9.0} docs/s  (pipeline/raw = {:.2})",
        m / r
    );
    println!(
        "raw transactions, same batches:{t:>8.0} docs/s  (pipeline/raw = {:.2})",
        m / t
    );
    println!(
        "pipeline, embedded store:     {:>9.0} tasks/s",
        median(embedded)
    );
    println!(
        "pipeline, memory store:       {:>9.0} tasks/s",
        median(memory)
    );
}
