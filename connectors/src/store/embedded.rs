//! The embedded store: one redb database file.
//!
//! redb is a pure-Rust, ACID, crash-safe (copy-on-write B-trees with
//! checksummed commits) embedded key-value store: no server, no C toolchain,
//! one file. Every write transaction here commits with immediate durability,
//! so an outcome is on disk before its source is acknowledged. Values are
//! JSON: readable when debugging, and the records are small next to the
//! fsync that dominates a commit.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use tidewater_operators::model::{Completion, ModelTarget, Rejection, Task};

use super::memory::target_key;
use super::{ModelRecord, StateCounts, StoreError, StoredTask, TaskRecord, TaskStore};

/// Task id → [`StoredTask`].
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// Ids of tasks without a final outcome.
const UNFINISHED: TableDefinition<&str, ()> = TableDefinition::new("unfinished");
/// Sequence number → [`Rejection`].
const REJECTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("rejections");
/// `target/version` → [`ModelRecord`].
const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");

/// A store in one redb file.
pub struct EmbeddedStore {
    db: Database,
}

fn encode<T: Serialize>(value: &T, what: &'static str) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Encode {
        what,
        detail: e.to_string(),
    })
}

fn decode<T: DeserializeOwned>(bytes: &[u8], key: impl ToString) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        key: key.to_string(),
        detail: e.to_string(),
    })
}

fn model_key(target: ModelTarget, version: u64) -> String {
    format!("{}/{version:020}", target_key(target))
}

impl EmbeddedStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let txn = db
            .begin_write()
            .map_err(|e| StoreError::db("initialising")(e.into()))?;
        {
            let init = |e: redb::TableError| StoreError::db("initialising")(e.into());
            txn.open_table(TASKS).map_err(init)?;
            txn.open_table(UNFINISHED).map_err(init)?;
            txn.open_table(REJECTIONS).map_err(init)?;
            txn.open_table(MODELS).map_err(init)?;
        }
        txn.commit()
            .map_err(|e| StoreError::db("initialising")(e.into()))?;
        Ok(EmbeddedStore { db })
    }

    fn write<R>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self
            .db
            .begin_write()
            .map_err(|e| StoreError::db(operation)(e.into()))?;
        let result = body(&txn)?;
        txn.commit()
            .map_err(|e| StoreError::db(operation)(e.into()))?;
        Ok(result)
    }

    fn read<R>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&redb::ReadTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| StoreError::db(operation)(e.into()))?;
        body(&txn)
    }
}

macro_rules! db {
    ($op:expr, $e:expr) => {
        $e.map_err(|e| StoreError::db($op)(e.into()))?
    };
}

impl TaskStore for EmbeddedStore {
    fn record_accepted(&self, tasks: &[Task]) -> Result<Vec<bool>, StoreError> {
        const OP: &str = "recording accepted tasks";
        self.write(OP, |txn| {
            let mut table = db!(OP, txn.open_table(TASKS));
            let mut unfinished = db!(OP, txn.open_table(UNFINISHED));
            let mut fresh = Vec::with_capacity(tasks.len());
            for task in tasks {
                let id = task.id.as_str();
                if db!(OP, table.get(id)).is_some() {
                    fresh.push(false);
                    continue;
                }
                let bytes = encode(&StoredTask::accepted(task), "task")?;
                db!(OP, table.insert(id, bytes.as_slice()));
                db!(OP, unfinished.insert(id, ()));
                fresh.push(true);
            }
            Ok(fresh)
        })
    }

    fn record_finished(&self, completions: &[Completion]) -> Result<Vec<bool>, StoreError> {
        const OP: &str = "recording results";
        self.write(OP, |txn| {
            let mut table = db!(OP, txn.open_table(TASKS));
            let mut unfinished = db!(OP, txn.open_table(UNFINISHED));
            let mut fresh = Vec::with_capacity(completions.len());
            for c in completions {
                let id = c.task.id.as_str();
                let existing: Option<StoredTask> = match db!(OP, table.get(id)) {
                    Some(bytes) => Some(decode(bytes.value(), id)?),
                    None => None,
                };
                let (entry, changed) = match existing {
                    Some(mut entry) => {
                        let changed = entry.finish(c);
                        (entry, changed)
                    }
                    None => (StoredTask::from_completion(c), true),
                };
                if changed {
                    let bytes = encode(&entry, "task")?;
                    db!(OP, table.insert(id, bytes.as_slice()));
                    db!(OP, unfinished.remove(id));
                }
                fresh.push(changed);
            }
            Ok(fresh)
        })
    }

    fn get(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        const OP: &str = "reading a task";
        self.read(OP, |txn| {
            let table = db!(OP, txn.open_table(TASKS));
            match db!(OP, table.get(id)) {
                Some(bytes) => Ok(Some(decode::<StoredTask>(bytes.value(), id)?.record)),
                None => Ok(None),
            }
        })
    }

    fn unfinished(&self) -> Result<Vec<Task>, StoreError> {
        const OP: &str = "listing unfinished tasks";
        self.read(OP, |txn| {
            let table = db!(OP, txn.open_table(TASKS));
            let unfinished = db!(OP, txn.open_table(UNFINISHED));
            let mut tasks = Vec::new();
            for entry in db!(OP, unfinished.iter()) {
                let (id, _) = db!(OP, entry);
                let id = id.value();
                let Some(bytes) = db!(OP, table.get(id)) else {
                    return Err(StoreError::Corrupt {
                        key: id.to_string(),
                        detail: "unfinished id without a task".into(),
                    });
                };
                let stored: StoredTask = decode(bytes.value(), id)?;
                if let Some(task) = stored.task {
                    tasks.push(task);
                }
            }
            Ok(tasks)
        })
    }

    fn counts(&self) -> Result<StateCounts, StoreError> {
        const OP: &str = "counting tasks";
        self.read(OP, |txn| {
            let table = db!(OP, txn.open_table(TASKS));
            let rejections = db!(OP, txn.open_table(REJECTIONS));
            let mut counts = StateCounts {
                rejected: db!(OP, rejections.len()),
                ..Default::default()
            };
            for entry in db!(OP, table.iter()) {
                let (id, bytes) = db!(OP, entry);
                let stored: StoredTask = decode(bytes.value(), id.value())?;
                counts.add(stored.record.state);
            }
            Ok(counts)
        })
    }

    fn record_rejections(&self, rejections: &[Rejection]) -> Result<(), StoreError> {
        const OP: &str = "dead-lettering rejections";
        if rejections.is_empty() {
            return Ok(());
        }
        self.write(OP, |txn| {
            let mut table = db!(OP, txn.open_table(REJECTIONS));
            let mut tasks = db!(OP, txn.open_table(TASKS));
            let mut unfinished = db!(OP, txn.open_table(UNFINISHED));
            let first = match db!(OP, table.last()) {
                Some((key, _)) => key.value() + 1,
                None => 0,
            };
            for (seq, r) in (first..).zip(rejections) {
                let bytes = encode(r, "rejection")?;
                db!(OP, table.insert(seq, bytes.as_slice()));
                let Some(id) = r.task_id.as_deref() else {
                    continue;
                };
                let existing: Option<StoredTask> = match db!(OP, tasks.get(id)) {
                    Some(bytes) => Some(decode(bytes.value(), id)?),
                    None => None,
                };
                if let Some(mut entry) = existing {
                    if entry.reject(r.reason.to_string()) {
                        let bytes = encode(&entry, "task")?;
                        db!(OP, tasks.insert(id, bytes.as_slice()));
                        db!(OP, unfinished.remove(id));
                    }
                }
            }
            Ok(())
        })
    }

    fn rejections(&self, limit: usize) -> Result<Vec<Rejection>, StoreError> {
        const OP: &str = "reading rejections";
        self.read(OP, |txn| {
            let table = db!(OP, txn.open_table(REJECTIONS));
            let mut out = Vec::new();
            for entry in db!(OP, table.iter()).rev().take(limit) {
                let (seq, bytes) = db!(OP, entry);
                out.push(decode(bytes.value(), seq.value())?);
            }
            out.reverse();
            Ok(out)
        })
    }

    fn put_model(&self, record: &ModelRecord) -> Result<(), StoreError> {
        const OP: &str = "storing a model";
        let key = model_key(record.update.target, record.update.version);
        let bytes = encode(record, "model")?;
        self.write(OP, |txn| {
            let mut table = db!(OP, txn.open_table(MODELS));
            db!(OP, table.insert(key.as_str(), bytes.as_slice()));
            Ok(())
        })
    }

    fn models(&self, target: ModelTarget) -> Result<Vec<ModelRecord>, StoreError> {
        const OP: &str = "reading models";
        let prefix = format!("{}/", target_key(target));
        let end = format!("{}0", target_key(target));
        self.read(OP, |txn| {
            let table = db!(OP, txn.open_table(MODELS));
            let mut out = Vec::new();
            for entry in db!(OP, table.range(prefix.as_str()..end.as_str())) {
                let (key, bytes) = db!(OP, entry);
                out.push(decode(bytes.value(), key.value())?);
            }
            Ok(out)
        })
    }
}
