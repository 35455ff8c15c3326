//! The tasks one transaction reads, changes and writes back.
//!
//! A batch operation loads every task it names (`find` by `_id`, in chunks:
//! a short `$in` is fast on every server, a long one is slow on some) or,
//! when [`super::fresh_hint`] guesses the batch is new, nothing at all,
//! applies the shared transitions of [`crate::store::record`] to them in
//! memory (in batch order, so two outcomes for one id in a batch behave as
//! in the other stores), then writes the changed ones with as few commands
//! as their size allows: one `insert` for the new documents and one
//! `update` with a statement per changed document (this works on every
//! MongoDB version, where `bulkWrite` needs 8.0), and adds the count
//! changes to a counter shard, all in the same transaction.
//!
//! Each update is filtered on the state it was read in, and inserting an
//! id that appeared meanwhile fails on the unique `_id`, so a write that
//! finds its document changed aborts the transaction, which is then made
//! again from what the database holds.

use std::collections::HashMap;

use mongodb::bson::{self, doc, Bson, Document};
use mongodb::ClientSession;

use super::config::TASKS;
use super::counters::CountDelta;
use super::documents::{stored_task, task_document};
use super::error::{Failure, DUPLICATE_KEY, RETRYABLE_CODES};
use super::ops::Collections;
use crate::store::{StoredTask, TaskState};

/// Largest `update` command sent, in bytes of statements (the server takes
/// commands up to 16 MiB).
const MAX_COMMAND_BYTES: usize = 8 << 20;
/// Most statements or documents in one command.
const MAX_STATEMENTS: usize = 10_000;
/// Most ids in one `$in` read.
const READ_CHUNK: usize = 32;

/// How a working set starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Load {
    /// Read every named task from the database.
    Read,
    /// Assume none exists (see [`super::fresh_hint`]): nothing is read,
    /// every changed task is inserted, and an id that does exist fails the
    /// insert on the unique `_id`, aborting the transaction.
    AssumeNew,
}

struct Entry {
    /// The state as read; `None` for a task not in the store.
    original: Option<TaskState>,
    current: StoredTask,
    changed: bool,
}

/// Tasks read in one transaction, with their pending changes.
#[derive(Default)]
pub struct WorkingSet {
    entries: HashMap<String, Entry>,
    /// Count changes besides the records' own (dead letters).
    pub extra: CountDelta,
}

impl WorkingSet {
    /// Reads the tasks with these ids (each once), inside `session`'s
    /// transaction; with [`Load::AssumeNew`] reads nothing.
    pub async fn load<'a>(
        collections: &Collections,
        session: &mut ClientSession,
        load: Load,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> Result<WorkingSet, Failure> {
        if load == Load::AssumeNew {
            return Ok(WorkingSet::default());
        }
        let mut ids: Vec<&str> = ids.into_iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let mut set = WorkingSet::default();
        if ids.is_empty() {
            return Ok(set);
        }
        for chunk in ids.chunks(READ_CHUNK) {
            let mut cursor = collections
                .tasks
                .find(doc! { "_id": { "$in": chunk } })
                .session(&mut *session)
                .await?;
            while let Some(document) = cursor.next(&mut *session).await.transpose()? {
                let stored = stored_task(document, &collections.codec)?;
                set.entries.insert(
                    stored.record.id.clone(),
                    Entry {
                        original: Some(stored.record.state),
                        current: stored,
                        changed: false,
                    },
                );
            }
        }
        Ok(set)
    }

    /// The task with this id, as changed so far.
    pub fn get(&self, id: &str) -> Option<&StoredTask> {
        self.entries.get(id).map(|e| &e.current)
    }

    /// Applies `change` to the task with this id, when it is known; a
    /// change that returns `true` is written back.
    pub fn change(
        &mut self,
        id: &str,
        change: impl FnOnce(&mut StoredTask) -> bool,
    ) -> Option<bool> {
        let entry = self.entries.get_mut(id)?;
        let changed = change(&mut entry.current);
        entry.changed |= changed;
        Some(changed)
    }

    /// Stores `stored` under its id, replacing what was there.
    pub fn put(&mut self, stored: StoredTask) {
        match self.entries.get_mut(&stored.record.id) {
            Some(entry) => {
                entry.current = stored;
                entry.changed = true;
            }
            None => {
                self.entries.insert(
                    stored.record.id.clone(),
                    Entry {
                        original: None,
                        current: stored,
                        changed: true,
                    },
                );
            }
        }
    }

    /// Writes the changed tasks, and the count changes to counter document
    /// `shard`, in `session`'s transaction.
    pub async fn write(
        self,
        collections: &Collections,
        session: &mut ClientSession,
        shard: &str,
    ) -> Result<(), Failure> {
        let mut delta = self.extra;
        let mut inserts = Vec::new();
        let mut updates = Vec::new();
        for entry in self.entries.into_values().filter(|e| e.changed) {
            delta.moved(entry.original, entry.current.record.state);
            let document = task_document(&entry.current, &collections.codec)?;
            match entry.original {
                None => inserts.push(document),
                Some(state) => {
                    let id = entry.current.record.id.clone();
                    updates.push(doc! {
                        "q": { "_id": id, "state": state_bson(state)? },
                        "u": document,
                    });
                }
            }
        }
        for chunk in chunks(inserts) {
            let expected = chunk.len() as i64;
            let reply = collections
                .db
                .run_command(doc! { "insert": TASKS, "documents": chunk, "ordered": true })
                .session(&mut *session)
                .await?;
            check_reply(&reply, expected)?;
        }
        for chunk in chunks(updates) {
            let expected = chunk.len() as i64;
            let reply = collections
                .db
                .run_command(doc! { "update": TASKS, "updates": chunk, "ordered": true })
                .session(&mut *session)
                .await?;
            check_reply(&reply, expected)?;
        }
        if !delta.is_empty() {
            collections
                .counters
                .update_one(doc! { "_id": shard }, delta.update())
                .upsert(true)
                .session(&mut *session)
                .await?;
        }
        Ok(())
    }
}

/// A state as its stored word.
fn state_bson(state: TaskState) -> Result<Bson, Failure> {
    bson::to_bson(&state).map_err(|e| super::error::encode("task state", e))
}

/// Statements or documents split into commands within the size and count
/// bounds.
fn chunks(statements: Vec<Document>) -> Vec<Vec<Document>> {
    let mut out: Vec<Vec<Document>> = Vec::new();
    let mut bytes = 0;
    for statement in statements {
        // An estimate is enough: the bound leaves half the server's limit.
        let size = bson::to_vec(&statement).map_or(0, |v| v.len());
        let full = out
            .last()
            .is_none_or(|c| c.len() >= MAX_STATEMENTS || bytes + size > MAX_COMMAND_BYTES);
        if full {
            out.push(Vec::new());
            bytes = 0;
        }
        bytes += size;
        if let Some(chunk) = out.last_mut() {
            chunk.push(statement);
        }
    }
    out
}

/// Checks an `insert` or `update` reply: no write errors, and every
/// document inserted or statement matched.
fn check_reply(reply: &Document, expected: i64) -> Result<(), Failure> {
    if let Ok(errors) = reply.get_array("writeErrors") {
        let first = errors.first().and_then(Bson::as_document);
        let code = first.and_then(|e| e.get_i32("code").ok()).unwrap_or(0);
        let message = first
            .and_then(|e| e.get_str("errmsg").ok())
            .unwrap_or("write error")
            .to_string();
        // A duplicate id means the task existed (a guess that it was new
        // was wrong) or another writer inserted it first.
        if code == DUPLICATE_KEY {
            return Err(Failure::ExistingId(message));
        }
        if RETRYABLE_CODES.contains(&code) {
            return Err(Failure::Conflict(format!("task write ({message})")));
        }
        return Err(Failure::Write { code, message });
    }
    if let Ok(concern) = reply.get_document("writeConcernError") {
        return Err(Failure::Write {
            code: concern.get_i32("code").unwrap_or(0),
            message: concern
                .get_str("errmsg")
                .unwrap_or("write concern error")
                .to_string(),
        });
    }
    let n = match reply.get("n") {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        _ => -1,
    };
    if n != expected {
        return Err(Failure::Conflict(format!(
            "tasks ({n} of {expected} writes matched)"
        )));
    }
    Ok(())
}
