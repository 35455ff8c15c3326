//! Helpers shared by the MongoDB tests: the server's address from
//! `tests/services/up`, a unique database per test, a small blocking
//! client for checking what the store wrote, and stopping and starting the
//! server for outage tests.
#![allow(dead_code)]

use std::process::Command;
use std::time::Duration;

use mongodb::bson::{doc, Document};
use mongodb::Client;

/// The server's URL (`TIDEWATER_MONGODB_URL`). Missing: under CI (`CI`
/// set) the test fails; elsewhere it prints a skip notice and returns
/// `None`.
pub fn mongodb_url() -> Option<String> {
    match std::env::var("TIDEWATER_MONGODB_URL") {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var_os("CI").is_some() => {
            panic!("TIDEWATER_MONGODB_URL is not set: run `eval \"$(tests/services/up)\"` first")
        }
        _ => {
            eprintln!(
                "skipping: TIDEWATER_MONGODB_URL is not set (run `eval \"$(tests/services/up)\"`)"
            );
            None
        }
    }
}

/// A database name unique to this test run.
pub fn unique_database(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("tw_{prefix}_{}_{nanos}", std::process::id())
}

/// Stops (`stop`) or starts (`start`) the server through
/// `TIDEWATER_MONGODB_CTL`, which `tests/services/up` exports.
pub fn server_ctl(action: &str) {
    let program = std::env::var("TIDEWATER_MONGODB_CTL")
        .expect("TIDEWATER_MONGODB_CTL is not set: run `eval \"$(tests/services/up)\"` first");
    let status = Command::new(&program)
        .arg(action)
        .status()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(status.success(), "{program} {action}: {status}");
}

/// A blocking client on one database, dropped with it at the end.
pub struct Mongo {
    runtime: tokio::runtime::Runtime,
    client: Client,
    database: String,
}

impl Mongo {
    /// Connects to `url` for `database`.
    pub fn connect(url: &str, database: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let client = runtime
            .block_on(Client::with_uri_str(url))
            .expect("connect");
        Mongo {
            runtime,
            client,
            database: database.to_string(),
        }
    }

    /// Inserts documents into `collection`, in order.
    pub fn insert(&self, collection: &str, documents: Vec<Document>) {
        let coll = self
            .client
            .database(&self.database)
            .collection::<Document>(collection);
        self.runtime
            .block_on(async { coll.insert_many(documents).await })
            .expect("insert");
    }

    /// Documents in `collection` matching `filter`.
    pub fn count(&self, collection: &str, filter: Document) -> u64 {
        let coll = self
            .client
            .database(&self.database)
            .collection::<Document>(collection);
        self.runtime
            .block_on(async { coll.count_documents(filter).await })
            .expect("count")
    }

    /// The document with this `_id`.
    pub fn get(&self, collection: &str, id: &str) -> Option<Document> {
        let coll = self
            .client
            .database(&self.database)
            .collection::<Document>(collection);
        self.runtime
            .block_on(async { coll.find_one(doc! { "_id": id }).await })
            .expect("find")
    }

    /// Waits until `collection` holds `count` documents matching `filter`;
    /// returns the last count seen.
    pub fn wait_count(
        &self,
        collection: &str,
        filter: Document,
        count: u64,
        timeout: Duration,
    ) -> u64 {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let seen = self.count(collection, filter.clone());
            if seen >= count || std::time::Instant::now() > deadline {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mongo {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let db = self.client.database(&self.database);
            let _ = self.runtime.block_on(async { db.drop().await });
        }
    }
}
