//! An in-memory store: the same behaviour as the embedded one, nothing kept.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use tidewater_operators::model::{Completion, ModelTarget, Rejection, Task};

use super::{ModelRecord, StateCounts, StoreError, StoredTask, TaskRecord, TaskStore};

/// Rejections kept in memory at most.
const MAX_REJECTIONS: usize = 100_000;

#[derive(Default)]
struct Inner {
    tasks: HashMap<String, StoredTask>,
    rejections: VecDeque<Rejection>,
    rejected_total: u64,
    models: BTreeMap<(String, u64), ModelRecord>,
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
    fn record_accepted(&self, tasks: &[Task]) -> Result<Vec<bool>, StoreError> {
        let mut inner = self.lock()?;
        Ok(tasks
            .iter()
            .map(|task| match inner.tasks.entry(task.id.to_string()) {
                std::collections::hash_map::Entry::Occupied(_) => false,
                std::collections::hash_map::Entry::Vacant(slot) => {
                    slot.insert(StoredTask::accepted(task));
                    true
                }
            })
            .collect())
    }

    fn record_finished(&self, completions: &[Completion]) -> Result<Vec<bool>, StoreError> {
        let mut inner = self.lock()?;
        Ok(completions
            .iter()
            .map(|c| match inner.tasks.get_mut(c.task.id.as_str()) {
                Some(entry) => entry.finish(c),
                None => {
                    inner
                        .tasks
                        .insert(c.task.id.to_string(), StoredTask::from_completion(c));
                    true
                }
            })
            .collect())
    }

    fn get(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        Ok(self.lock()?.tasks.get(id).map(|e| e.record.clone()))
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
        let inner = self.lock()?;
        let mut counts = StateCounts {
            rejected: inner.rejected_total,
            ..Default::default()
        };
        inner
            .tasks
            .values()
            .for_each(|e| counts.add(e.record.state));
        Ok(counts)
    }

    fn record_rejections(&self, rejections: &[Rejection]) -> Result<(), StoreError> {
        let mut inner = self.lock()?;
        for r in rejections {
            if let Some(entry) = r
                .task_id
                .as_ref()
                .and_then(|id| inner.tasks.get_mut(id.as_str()))
            {
                entry.reject(r.reason.to_string());
            }
            if inner.rejections.len() == MAX_REJECTIONS {
                inner.rejections.pop_front();
            }
            inner.rejections.push_back(r.clone());
        }
        inner.rejected_total += rejections.len() as u64;
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
}
