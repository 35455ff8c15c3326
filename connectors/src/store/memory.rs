//! An in-memory store: the same behaviour as the embedded one, nothing kept.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use tidewater_operators::model::{Completion, ModelTarget, Rejection, Task};

use super::{
    Admission, ModelRecord, StateCounts, StoreError, StoredTask, TaskCursor, TaskPage, TaskQuery,
    TaskRecord, TaskStore, TokenRecord,
};

/// Rejections kept in memory at most.
const MAX_REJECTIONS: usize = 100_000;

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, StoredTask>,
    /// Every task id in listing order.
    order: BTreeSet<TaskCursor>,
    counts: StateCounts,
    rejections: VecDeque<Rejection>,
    models: BTreeMap<(String, u64), ModelRecord>,
    tokens: BTreeMap<String, TokenRecord>,
}

impl Inner {
    /// Stores `entry`, keeping the order index and the counters.
    fn put(&mut self, entry: StoredTask) {
        let cursor = TaskCursor::of(&entry.record);
        let before = self.tasks.get(&entry.record.id).map(|old| {
            self.order.remove(&TaskCursor::of(&old.record));
            old.record.state
        });
        self.counts.moved(before, entry.record.state);
        self.order.insert(cursor);
        self.tasks.insert(entry.record.id.clone(), entry);
    }
}

/// A store that keeps everything in memory.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Database {
            operation: "lock",
            detail: "poisoned".into(),
        })
    }
}

pub(crate) fn target_key(target: ModelTarget) -> &'static str {
    match target {
        ModelTarget::RunTime => "run_time",
        ModelTarget::Failure => "failure",
    }
}

impl TaskStore for MemoryStore {
    fn admit(&self, tasks: &[Task]) -> Result<Vec<Admission>, StoreError> {
        let mut inner = self.lock()?;
        Ok(tasks
            .iter()
            .map(|task| {
                let admission = StoredTask::admission(inner.tasks.get(task.id.as_str()), task);
                if admission.is_new() {
                    inner.put(StoredTask::accepted(task));
                }
                admission
            })
            .collect())
    }

    fn record_finished(&self, completions: &[Completion]) -> Result<Vec<bool>, StoreError> {
        let mut inner = self.lock()?;
        Ok(completions
            .iter()
            .map(|c| {
                let mut entry = match inner.tasks.get(c.task.id.as_str()) {
                    Some(entry) => entry.clone(),
                    None => {
                        inner.put(StoredTask::from_completion(c));
                        return true;
                    }
                };
                let changed = entry.finish(c);
                if changed {
                    inner.put(entry);
                }
                changed
            })
            .collect())
    }

    fn get(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.lock()?.tasks.get(id).map(|e| e.record.clone()))
    }

    fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let inner = self.lock()?;
        let matching = |cursor: &&TaskCursor| {
            query.is_past_start(cursor)
                && inner
                    .tasks
                    .get(&cursor.id)
                    .is_some_and(|e| query.matches(&e.record))
        };
        let record = |cursor: &TaskCursor| inner.tasks[&cursor.id].record.clone();
        let tasks: Vec<TaskRecord> = if query.descending {
            inner
                .order
                .iter()
                .rev()
                .filter(matching)
                .take(query.limit + 1)
                .map(record)
                .collect()
        } else {
            inner
                .order
                .iter()
                .filter(matching)
                .take(query.limit + 1)
                .map(record)
                .collect()
        };
        Ok(TaskPage::from_overfull(tasks, query.limit))
    }

    fn unfinished(&self) -> Result<Vec<Task>, StoreError> {
        let mut tasks: Vec<Task> = self
            .lock()?
            .tasks
            .values()
            .filter_map(|e| e.task.clone())
            .collect();
        tasks.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(tasks)
    }

    fn counts(&self) -> Result<StateCounts, StoreError> {
        Ok(self.lock()?.counts.clone())
    }

    fn record_rejections(&self, rejections: &[Rejection]) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        for r in rejections {
            if let Some(id) = r.task_id.as_deref() {
                match inner.tasks.get(id).cloned() {
                    Some(mut entry) => {
                        if entry.reject(r.reason.to_string()) {
                            inner.put(entry);
                        }
                    }
                    None => inner.put(StoredTask::rejected(r, id)),
                }
            }
            if inner.rejections.len() == MAX_REJECTIONS {
                inner.rejections.pop_front();
            }
            inner.rejections.push_back(r.clone());
            inner.counts.rejected += 1;
        }
        Ok(())
    }

    fn rejections(&self, limit: usize) -> Result<Vec<Rejection>, StoreError> {
        let inner = self.lock()?;
        let skip = inner.rejections.len().saturating_sub(limit);
        Ok(inner.rejections.iter().skip(skip).cloned().collect())
    }

    fn put_model(&self, record: &ModelRecord) -> Result<(), StoreError> {
        let key = (
            target_key(record.update.target).to_string(),
            record.update.version,
        );
        self.lock()?.models.insert(key, record.clone());
        Ok(())
    }

    fn models(&self, target: ModelTarget) -> Result<Vec<ModelRecord>, StoreError> {
        let name = target_key(target);
        Ok(self
            .lock()?
            .models
            .iter()
            .filter(|((t, _), _)| t == name)
            .map(|(_, r)| r.clone())
            .collect())
    }

    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        self.lock()?.tokens.insert(token.id.clone(), token.clone());
        Ok(())
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.lock()?.tokens.get(id).cloned())
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self.lock()?.tokens.values().cloned().collect())
    }
}
