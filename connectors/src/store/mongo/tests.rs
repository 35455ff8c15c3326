//! The shared store suite against a real MongoDB-protocol server, and what
//! only this store has to show: concurrent writers keeping the counters
//! right, batches larger than one command, reopening, and readable
//! documents. Needs `TIDEWATER_MONGODB_URL` (from `tests/services/up`);
//! under CI a missing server fails the tests.

use std::collections::HashSet;
use std::sync::Arc;

use mongodb::bson::{doc, Bson, Document};
use tidewater_operators::model::{
    AckToken, Completion, Lease, ModelTarget, Name, Outcome, ResourceRequest, Task, TaskResult,
};

use super::{MongoStore, MongoStoreConfig};
use crate::store::tests::{behaves, lists_in_pages};
use crate::store::{TaskState, TaskStore};

/// The server's URL, or `None` (with a notice) outside CI.
fn url() -> Option<String> {
    match std::env::var("TIDEWATER_MONGODB_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var_os("CI").is_some() => {
            panic!("TIDEWATER_MONGODB_URL is not set: run `eval \"$(tests/services/up)\"` first")
        }
        _ => {
            eprintln!("skipping: TIDEWATER_MONGODB_URL is not set");
            None
        }
    }
}

/// A database of its own for one test, dropped at the end.
struct Scratch {
    url: String,
    database: String,
}

impl Scratch {
    fn new(url: &str, name: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        Scratch {
            url: url.to_string(),
            database: format!("tw_unit_{name}_{}_{nanos}", std::process::id()),
        }
    }

    fn open(&self) -> MongoStore {
        MongoStore::open(&MongoStoreConfig::new(&self.url, &self.database)).expect("open")
    }

    /// Runs `f` with a plain driver handle on the database.
    fn raw<T>(&self, f: impl AsyncFnOnce(mongodb::Database) -> T) -> T {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        runtime.block_on(async {
            let client = mongodb::Client::with_uri_str(&self.url)
                .await
                .expect("client");
            f(client.database(&self.database)).await
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.raw(async |db| db.drop().await.ok());
        }
    }
}

fn task(id: &str) -> Task {
    let mut t = Task::new(id, "noop", ResourceRequest::cpu(10, 0));
    t.submitted_at_us = 1_000;
    t.tenant = Name::from("acme");
    t
}

fn done(id: &str) -> Completion {
    Completion {
        task: task(id),
        executor: Name::from("e1"),
        shard: 0,
        lease: Lease(1),
        outcome: Outcome::Succeeded,
        started_at_us: 2_000,
        finished_at_us: 3_000,
        exit_code: Some(0),
        output_bytes: 5,
        is_final: true,
        result: Some(TaskResult {
            value: Some(tidewater_operators::model::JsonText::new(
                &serde_json::json!({ "$weird": [1, 2], "a.b": u64::MAX }),
            )),
            stdout: Some("out".into()),
            stderr: None,
            truncated: true,
        }),
    }
}

#[test]
fn mongo_store_behaves() {
    let Some(url) = url() else { return };
    let scratch = Scratch::new(&url, "behaves");
    behaves(&scratch.open());
    let pages = Scratch::new(&url, "pages");
    lists_in_pages(&pages.open());
}

#[test]
fn concurrent_writers_record_each_outcome_once_and_keep_the_counts() {
    let Some(url) = url() else { return };
    let scratch = Scratch::new(&url, "concurrent");
    let store = Arc::new(scratch.open());
    let ids: Vec<String> = (0..400).map(|i| format!("c{i}")).collect();
    let tasks: Vec<Task> = ids.iter().map(|id| task(id)).collect();
    store.admit(&tasks).expect("admit");
    // Four writers finish overlapping halves in batches of 50.
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            let mine: Vec<Completion> = ids
                .iter()
                .enumerate()
                .filter(|(i, _)| (i / 100 + w) % 4 < 2)
                .map(|(_, id)| done(id))
                .collect();
            std::thread::spawn(move || {
                let mut fresh = Vec::new();
                for batch in mine.chunks(50) {
                    let answers = store.record_finished(batch).expect("finish");
                    fresh.extend(
                        batch
                            .iter()
                            .zip(answers)
                            .filter(|(_, f)| *f)
                            .map(|(c, _)| c.task.id.to_string()),
                    );
                }
                fresh
            })
        })
        .collect();
    let mut firsts = Vec::new();
    for writer in writers {
        firsts.extend(writer.join().expect("writer"));
    }
    let distinct: HashSet<&String> = firsts.iter().collect();
    assert_eq!(firsts.len(), ids.len(), "each outcome is new exactly once");
    assert_eq!(distinct.len(), ids.len());
    let counts = store.counts().expect("counts");
    assert_eq!(
        (counts.queued, counts.succeeded),
        (0, ids.len() as u64),
        "{counts:?}"
    );
}

#[test]
fn batches_larger_than_one_command_are_split() {
    let Some(url) = url() else { return };
    let scratch = Scratch::new(&url, "large");
    let store = scratch.open();
    let tasks: Vec<Task> = (0..10_200).map(|i| task(&format!("l{i:05}"))).collect();
    let admitted = store.admit(&tasks).expect("admit");
    assert!(admitted.iter().all(|a| a.is_new()));
    assert_eq!(store.counts().expect("counts").queued, 10_200);
    assert_eq!(store.unfinished().expect("unfinished").len(), 10_200);
}

#[test]
fn records_results_and_counts_survive_reopening_and_read_plainly() {
    let Some(url) = url() else { return };
    let scratch = Scratch::new(&url, "reopen");
    {
        let store = scratch.open();
        store.admit(&[task("keep"), task("done")]).expect("admit");
        store.record_finished(&[done("done")]).expect("finish");
    }
    let store = scratch.open();
    assert_eq!(store.unfinished().expect("unfinished"), vec![task("keep")]);
    let record = store.get("done").expect("get").expect("present");
    assert_eq!(record.state, TaskState::Succeeded);
    assert_eq!(
        record.result,
        done("done").result,
        "any JSON value round-trips"
    );
    let counts = store.counts().expect("counts");
    assert_eq!((counts.queued, counts.succeeded), (1, 1));
    assert_eq!(
        store.latest_model(ModelTarget::Failure).expect("model"),
        None
    );

    // The documents are for people and other tools too.
    let stored: Document = scratch
        .raw(async |db| {
            db.collection::<Document>("tasks")
                .find_one(doc! { "_id": "done" })
                .await
        })
        .expect("find")
        .expect("stored");
    assert_eq!(stored.get_str("state").ok(), Some("succeeded"));
    assert_eq!(stored.get_str("tenant").ok(), Some("acme"));
    assert_eq!(stored.get_i64("finished_at_us").ok(), Some(3_000));
    assert!(stored.get("task_json").is_none());
    let indexes: Vec<String> = scratch
        .raw(async |db| db.collection::<Document>("tasks").list_index_names().await)
        .expect("indexes");
    for name in ["by_submitted", "by_state", "by_tenant", "by_kind"] {
        assert!(indexes.iter().any(|i| i == name), "{name} in {indexes:?}");
    }
    let _ = AckToken::NONE;
}

/// Encryption at rest: the raw documents, read with the driver directly,
/// hold no plaintext of payloads, results or dead letters; listings still
/// work on the plain index fields; keys rotate; wrong keys are errors.
#[test]
fn encrypted_documents_hold_no_plaintext_and_keys_rotate() {
    use crate::store::encrypted_tests::{
        leaked_markers, ring, secret_rejection, secret_task, writes_secrets_and_reads_them_back,
    };
    use crate::store::StoreError;
    let Some(url) = url() else { return };
    let scratch = Scratch::new(&url, "sealed");
    let config = MongoStoreConfig::new(&scratch.url, &scratch.database);
    {
        let store = MongoStore::open_encrypted(&config, ring("a", &[("a", 1)])).expect("open");
        writes_secrets_and_reads_them_back(&store);
    }
    // Every raw document, as BSON bytes.
    let raw = |scratch: &Scratch| -> (Vec<u8>, Vec<Document>) {
        scratch.raw(async |db| {
            let mut bytes = Vec::new();
            let mut tasks = Vec::new();
            for name in ["tasks", "rejections"] {
                let docs: Vec<Document> = futures_lite::StreamExt::try_collect(
                    db.collection::<Document>(name)
                        .find(doc! {})
                        .await
                        .expect("find"),
                )
                .await
                .expect("docs");
                for d in docs {
                    d.to_writer(&mut bytes).expect("bson");
                    if name == "tasks" {
                        tasks.push(d);
                    }
                }
            }
            (bytes, tasks)
        })
    };
    let (bytes, tasks) = raw(&scratch);
    assert_eq!(
        leaked_markers(&bytes),
        Vec::<&str>::new(),
        "plaintext in MongoDB"
    );
    for d in &tasks {
        // Index fields stay plain; the bodies are sealed under key `a`.
        assert_eq!(d.get_str("tenant").ok(), Some("acme-tenant"));
        assert!(d.get("task_json").is_none() && matches!(d.get("result"), None | Some(Bson::Null)));
        let sealed = d
            .get_document("task_sealed")
            .or_else(|_| d.get_document("result_sealed"))
            .expect("sealed");
        assert_eq!(sealed.get_str("key_id").ok(), Some("a"));
    }

    // Rotate to B, keeping A for reading.
    {
        let store =
            MongoStore::open_encrypted(&config, ring("b", &[("a", 1), ("b", 2)])).expect("open");
        assert_eq!(
            store.unfinished().expect("unfinished"),
            vec![secret_task("open-1")]
        );
        assert_eq!(
            store.rejections(10).expect("rejections"),
            vec![secret_rejection()]
        );
        store.admit(&[secret_task("new-1")]).expect("admit");
    }
    let (_, tasks) = raw(&scratch);
    let key_of = |id: &str| {
        let d = tasks
            .iter()
            .find(|d| d.get_str("_id").ok() == Some(id))
            .expect("doc");
        d.get_document("task_sealed")
            .expect("sealed")
            .get_str("key_id")
            .expect("key id")
            .to_string()
    };
    assert_eq!(key_of("open-1"), "a");
    assert_eq!(key_of("new-1"), "b");

    // A wrong key and a missing one are typed errors.
    let wrong = MongoStore::open_encrypted(&config, ring("a", &[("a", 9)])).expect("open");
    assert!(matches!(
        wrong.get("done-1"),
        Err(StoreError::Decrypt { .. })
    ));
    let plain = MongoStore::open(&config).expect("open");
    assert!(matches!(
        plain.unfinished(),
        Err(StoreError::MissingKey { .. })
    ));
}
