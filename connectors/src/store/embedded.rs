//! The embedded store: one redb database file.
//!
//! redb is a pure-Rust, ACID, crash-safe (copy-on-write B-trees with
//! checksummed commits) embedded key-value store: no server, no C toolchain,
//! one file. Every write transaction here commits with immediate durability,
//! so an outcome is on disk before its source is acknowledged. Values are
//! JSON: readable when debugging, and the records are small next to the
//! fsync that dominates a commit.
//!
//! Beside the records, the same transaction keeps the listing indexes
//! (by acceptance time, and by state, tenant and kind, each ordered by
//! `(submitted_at_us, id)`) and the counters by state, so listings page in
//! flat time and counts are read, not computed. A database written before
//! the indexes existed is indexed once when opened.
//!
//! With a [`KeyRing`] ([`EmbeddedStore::open_encrypted`]), task entries and
//! dead letters are sealed (AES-256-GCM, see [`ValueCodec`]) before they
//! are written, bound to their key; the index tables and counters hold
//! only ids, times, states, tenants and kinds, and stay plain.

use std::path::Path;

use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, Table, TableDefinition,
    WriteTransaction,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use tidewater_operators::model::{Completion, ModelTarget, Rejection, Task};

use super::memory::target_key;
use super::{
    Admission, KeyRing, ModelRecord, StateCounts, StoreError, StoredTask, TaskCursor, TaskPage,
    TaskQuery, TaskRecord, TaskStore, TokenRecord, ValueCodec,
};

/// Task id → [`StoredTask`].
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// Ids of tasks without a final outcome.
const UNFINISHED: TableDefinition<&str, ()> = TableDefinition::new("unfinished");
/// Sequence number → [`Rejection`].
const REJECTIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("rejections");
/// `target/version` → [`ModelRecord`].
const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");
/// Token id → [`TokenRecord`] (argon2 hashes, no secrets).
const TOKENS: TableDefinition<&str, &[u8]> = TableDefinition::new("tokens");
/// `(submitted_at_us, id)` of every task.
const BY_TIME: TableDefinition<(u64, &str), ()> = TableDefinition::new("tasks_by_time");
/// `(field, value, submitted_at_us, id)` for the filters: field `s` (state),
/// `t` (tenant), `k` (kind).
const BY_FIELD: TableDefinition<(&str, &str, u64, &str), ()> =
    TableDefinition::new("tasks_by_field");
/// The [`StateCounts`], as one JSON value under `counts`; `indexed` marks a
/// database whose indexes are complete.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

const STATE: &str = "s";
const TENANT: &str = "t";
const KIND: &str = "k";

/// A store in one redb file.
pub struct EmbeddedStore {
    db: Database,
    codec: ValueCodec,
}

/// Associated data of a sealed task entry: binds it to its id.
fn task_aad(id: &str) -> Vec<u8> {
    [b"task:".as_slice(), id.as_bytes()].concat()
}

/// Associated data of a sealed dead letter: binds it to its sequence number.
fn rejection_aad(seq: u64) -> Vec<u8> {
    [b"rejection:".as_slice(), &seq.to_be_bytes()].concat()
}

impl ValueCodec {
    fn encode_task(&self, entry: &StoredTask) -> Result<Vec<u8>, StoreError> {
        self.seal(&task_aad(&entry.record.id), encode(entry, "task")?)
    }

    fn decode_task(&self, id: &str, bytes: &[u8]) -> Result<StoredTask, StoreError> {
        decode(&self.open(&task_aad(id), bytes, id)?, id)
    }

    fn encode_rejection(&self, seq: u64, r: &Rejection) -> Result<Vec<u8>, StoreError> {
        self.seal(&rejection_aad(seq), encode(r, "rejection")?)
    }

    fn decode_rejection(&self, seq: u64, bytes: &[u8]) -> Result<Rejection, StoreError> {
        decode(
            &self.open(&rejection_aad(seq), bytes, &seq.to_string())?,
            seq,
        )
    }
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

macro_rules! db {
    ($op:expr, $e:expr) => {
        $e.map_err(|e| StoreError::db($op)(e.into()))?
    };
}

/// The tables a task write touches, open in one transaction.
struct TaskTables<'txn> {
    op: &'static str,
    codec: &'txn ValueCodec,
    tasks: Table<'txn, &'static str, &'static [u8]>,
    unfinished: Table<'txn, &'static str, ()>,
    by_time: Table<'txn, (u64, &'static str), ()>,
    by_field: Table<'txn, (&'static str, &'static str, u64, &'static str), ()>,
    meta: Table<'txn, &'static str, &'static [u8]>,
    counts: StateCounts,
}

impl<'txn> TaskTables<'txn> {
    fn open(
        txn: &'txn WriteTransaction,
        op: &'static str,
        codec: &'txn ValueCodec,
    ) -> Result<Self, StoreError> {
        let meta = db!(op, txn.open_table(META));
        let counts = match db!(op, meta.get("counts")) {
            Some(bytes) => decode(bytes.value(), "counts")?,
            None => StateCounts::default(),
        };
        Ok(TaskTables {
            op,
            codec,
            tasks: db!(op, txn.open_table(TASKS)),
            unfinished: db!(op, txn.open_table(UNFINISHED)),
            by_time: db!(op, txn.open_table(BY_TIME)),
            by_field: db!(op, txn.open_table(BY_FIELD)),
            meta,
            counts,
        })
    }

    fn get(&self, id: &str) -> Result<Option<StoredTask>, StoreError> {
        let op = self.op;
        match db!(op, self.tasks.get(id)) {
            Some(bytes) => Ok(Some(self.codec.decode_task(id, bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Writes `entry` over `before` (the entry it replaces, if any),
    /// moving its index entries and counters.
    fn put(&mut self, entry: &StoredTask, before: Option<&StoredTask>) -> Result<(), StoreError> {
        let op = self.op;
        let r = &entry.record;
        if let Some(old) = before {
            self.unindex(&old.record)?;
        }
        let bytes = self.codec.encode_task(entry)?;
        db!(op, self.tasks.insert(r.id.as_str(), bytes.as_slice()));
        if entry.task.is_some() {
            db!(op, self.unfinished.insert(r.id.as_str(), ()));
        } else {
            db!(op, self.unfinished.remove(r.id.as_str()));
        }
        self.index(r)?;
        self.counts
            .moved(before.map(|old| old.record.state), r.state);
        Ok(())
    }

    fn index(&mut self, r: &TaskRecord) -> Result<(), StoreError> {
        let op = self.op;
        let (at, id) = (r.submitted_at_us, r.id.as_str());
        db!(op, self.by_time.insert((at, id), ()));
        for (field, value) in fields(r) {
            db!(op, self.by_field.insert((field, value, at, id), ()));
        }
        Ok(())
    }

    fn unindex(&mut self, r: &TaskRecord) -> Result<(), StoreError> {
        let op = self.op;
        let (at, id) = (r.submitted_at_us, r.id.as_str());
        db!(op, self.by_time.remove((at, id)));
        for (field, value) in fields(r) {
            db!(op, self.by_field.remove((field, value, at, id)));
        }
        Ok(())
    }

    /// Saves the counters; call once before the transaction commits.
    fn close(mut self) -> Result<(), StoreError> {
        let op = self.op;
        let bytes = encode(&self.counts, "counters")?;
        db!(op, self.meta.insert("counts", bytes.as_slice()));
        Ok(())
    }
}

/// The filter index entries of a record.
fn fields(r: &TaskRecord) -> [(&'static str, &str); 3] {
    [
        (STATE, r.state.as_str()),
        (TENANT, r.tenant.as_str()),
        (KIND, r.kind.as_str()),
    ]
}

impl EmbeddedStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with(path, ValueCodec::default())
    }

    /// Opens (or creates) the database at `path`, sealing task entries and
    /// dead letters with `keys` (values written before stay readable).
    pub fn open_encrypted(path: &Path, keys: std::sync::Arc<KeyRing>) -> Result<Self, StoreError> {
        Self::open_with(path, ValueCodec::new(Some(keys)))
    }

    fn open_with(path: &Path, codec: ValueCodec) -> Result<Self, StoreError> {
        const OP: &str = "initialising";
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.display().to_string(),
            detail: e.to_string(),
        })?;
        let store = EmbeddedStore { db, codec };
        store.write(OP, |txn| {
            db!(OP, txn.open_table(REJECTIONS));
            db!(OP, txn.open_table(MODELS));
            db!(OP, txn.open_table(TOKENS));
            let indexed = db!(OP, db!(OP, txn.open_table(META)).get("indexed")).is_some();
            let mut tables = TaskTables::open(txn, OP, &store.codec)?;
            if !indexed {
                reindex(&mut tables, txn)?;
            }
            db!(OP, tables.meta.insert("indexed", [1u8].as_slice()));
            tables.close()
        })?;
        Ok(store)
    }

    fn write<R>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&WriteTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = db!(operation, self.db.begin_write());
        let result = body(&txn)?;
        db!(operation, txn.commit());
        Ok(result)
    }

    fn read<R>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&redb::ReadTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let txn = db!(operation, self.db.begin_read());
        body(&txn)
    }

    /// A write of task records: `body` runs with the task tables open, and
    /// the counters are saved before the commit.
    fn write_tasks<R>(
        &self,
        operation: &'static str,
        body: impl FnOnce(&mut TaskTables<'_>, &WriteTransaction) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.write(operation, |txn| {
            let mut tables = TaskTables::open(txn, operation, &self.codec)?;
            let result = body(&mut tables, txn)?;
            tables.close()?;
            Ok(result)
        })
    }
}

/// Reads the records behind index `keys` (in listing order; `None` ends
/// the walk) into a page for `query`.
fn walk(
    keys: impl Iterator<Item = Result<Option<TaskCursor>, StoreError>>,
    tasks: &redb::ReadOnlyTable<&str, &[u8]>,
    query: &TaskQuery,
    codec: &ValueCodec,
) -> Result<TaskPage, StoreError> {
    const OP: &str = "listing tasks";
    let mut page = Vec::with_capacity(query.limit + 1);
    for key in keys {
        let Some(cursor) = key? else { break };
        if !query.is_past_start(&cursor) {
            continue;
        }
        if let Some(bytes) = db!(OP, tasks.get(cursor.id.as_str())) {
            let record = codec.decode_task(&cursor.id, bytes.value())?.record;
            if query.matches(&record) {
                page.push(record);
                if page.len() > query.limit {
                    break;
                }
            }
        }
    }
    Ok(TaskPage::from_overfull(page, query.limit))
}

/// Builds the indexes and counters of a database written before they
/// existed, from its records and dead letters.
fn reindex(tables: &mut TaskTables<'_>, txn: &WriteTransaction) -> Result<(), StoreError> {
    let op = tables.op;
    let mut records = Vec::new();
    for entry in db!(op, tables.tasks.iter()) {
        let (id, bytes) = db!(op, entry);
        // A record that does not decode stays unindexed; reading it reports
        // the corruption with its key, and the rest of the store opens.
        match tables.codec.decode_task(id.value(), bytes.value()) {
            Ok(stored) => records.push(stored.record),
            Err(e) => tracing::warn!(error = %e, "not indexing a corrupt task record"),
        }
    }
    let mut counts = StateCounts {
        rejected: db!(op, db!(op, txn.open_table(REJECTIONS)).len()),
        ..StateCounts::default()
    };
    for record in &records {
        tables.index(record)?;
        counts.add(record.state);
    }
    tables.counts = counts;
    Ok(())
}

impl TaskStore for EmbeddedStore {
    fn admit(&self, tasks: &[Task]) -> Result<Vec<Admission>, StoreError> {
        self.write_tasks("admitting tasks", |tables, _| {
            let mut answers = Vec::with_capacity(tasks.len());
            for task in tasks {
                let existing = tables.get(task.id.as_str())?;
                let admission = StoredTask::admission(existing.as_ref(), task);
                if admission.is_new() {
                    tables.put(&StoredTask::accepted(task), existing.as_ref())?;
                }
                answers.push(admission);
            }
            Ok(answers)
        })
    }

    fn record_finished(&self, completions: &[Completion]) -> Result<Vec<bool>, StoreError> {
        self.write_tasks("recording results", |tables, _| {
            let mut fresh = Vec::with_capacity(completions.len());
            for c in completions {
                let existing = tables.get(c.task.id.as_str())?;
                let changed = match &existing {
                    Some(old) => {
                        let mut entry = old.clone();
                        let changed = entry.finish(c);
                        if changed {
                            tables.put(&entry, Some(old))?;
                        }
                        changed
                    }
                    None => {
                        tables.put(&StoredTask::from_completion(c), None)?;
                        true
                    }
                };
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
                Some(bytes) => Ok(Some(self.codec.decode_task(id, bytes.value())?.record)),
                None => Ok(None),
            }
        })
    }

    fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        const OP: &str = "listing tasks";
        self.read(OP, |txn| {
            let tasks = db!(OP, txn.open_table(TASKS));
            let since = query.since_us.unwrap_or(0);
            // Where the walk starts: just at the cursor (skipped as already
            // listed), else at the oldest or the newest possible key.
            let (at, id) = match (&query.after, query.descending) {
                (Some(after), _) => (after.submitted_at_us, after.id.as_str()),
                (None, false) => (since, ""),
                (None, true) => (u64::MAX, ""),
            };
            // Walk the most selective index the query names.
            let filter = query
                .state
                .map(|s| (STATE, s.as_str().to_string()))
                .or_else(|| query.tenant.clone().map(|t| (TENANT, t)))
                .or_else(|| query.kind.clone().map(|k| (KIND, k)));
            match filter {
                Some((field, value)) => {
                    let index = db!(OP, txn.open_table(BY_FIELD));
                    let value = value.as_str();
                    let range = if query.descending {
                        db!(
                            OP,
                            index.range((field, value, since, "")..=(field, value, at, id))
                        )
                    } else {
                        db!(OP, index.range((field, value, at, id)..))
                    };
                    let keys = range.map(|entry| {
                        let (key, _) = db!(OP, entry);
                        let (f, v, at, id) = key.value();
                        Ok((f == field && v == value).then(|| TaskCursor {
                            submitted_at_us: at,
                            id: id.to_string(),
                        }))
                    });
                    if query.descending {
                        walk(keys.rev(), &tasks, query, &self.codec)
                    } else {
                        walk(keys, &tasks, query, &self.codec)
                    }
                }
                None => {
                    let index = db!(OP, txn.open_table(BY_TIME));
                    let range = if query.descending {
                        db!(OP, index.range((since, "")..=(at, id)))
                    } else {
                        db!(OP, index.range((at, id)..))
                    };
                    let keys = range.map(|entry| {
                        let (key, _) = db!(OP, entry);
                        let (at, id) = key.value();
                        Ok(Some(TaskCursor {
                            submitted_at_us: at,
                            id: id.to_string(),
                        }))
                    });
                    if query.descending {
                        walk(keys.rev(), &tasks, query, &self.codec)
                    } else {
                        walk(keys, &tasks, query, &self.codec)
                    }
                }
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
                let stored = self.codec.decode_task(id, bytes.value())?;
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
            let meta = db!(OP, txn.open_table(META));
            match db!(OP, meta.get("counts")) {
                Some(bytes) => decode(bytes.value(), "counts"),
                None => Ok(StateCounts::default()),
            }
        })
    }

    fn record_rejections(&self, rejections: &[Rejection]) -> Result<(), StoreError> {
        const OP: &str = "dead-lettering rejections";
        if rejections.is_empty() {
            return Ok(());
        }
        self.write_tasks(OP, |tables, txn| {
            let mut table = db!(OP, txn.open_table(REJECTIONS));
            let first = match db!(OP, table.last()) {
                Some((key, _)) => key.value() + 1,
                None => 0,
            };
            for (seq, r) in (first..).zip(rejections) {
                let bytes = tables.codec.encode_rejection(seq, r)?;
                db!(OP, table.insert(seq, bytes.as_slice()));
                tables.counts.rejected += 1;
                let Some(id) = r.task_id.as_deref() else {
                    continue;
                };
                match tables.get(id)? {
                    Some(old) => {
                        let mut entry = old.clone();
                        if entry.reject(r.reason.to_string()) {
                            tables.put(&entry, Some(&old))?;
                        }
                    }
                    None => tables.put(&StoredTask::rejected(r, id), None)?,
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
                out.push(self.codec.decode_rejection(seq.value(), bytes.value())?);
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

    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        const OP: &str = "storing a token";
        let bytes = encode(token, "token")?;
        self.write(OP, |txn| {
            let mut table = db!(OP, txn.open_table(TOKENS));
            db!(OP, table.insert(token.id.as_str(), bytes.as_slice()));
            Ok(())
        })
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        const OP: &str = "reading a token";
        self.read(OP, |txn| {
            let table = db!(OP, txn.open_table(TOKENS));
            match db!(OP, table.get(id)) {
                Some(bytes) => Ok(Some(decode(bytes.value(), id)?)),
                None => Ok(None),
            }
        })
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        const OP: &str = "reading tokens";
        self.read(OP, |txn| {
            let table = db!(OP, txn.open_table(TOKENS));
            let mut out = Vec::new();
            for entry in db!(OP, table.iter()) {
                let (key, bytes) = db!(OP, entry);
                out.push(decode(bytes.value(), key.value())?);
            }
            Ok(out)
        })
    }
}
