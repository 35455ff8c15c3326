//! The executor registry: which executors are alive, on every shard.
//!
//! Every shard sees every join, heartbeat and leave (control commands are
//! broadcast), so each keeps the same registry of the whole cluster: the
//! owner of an executor uses it to declare the executor lost and re-queue
//! its tasks, the others to stop routing work to it. An executor with a
//! heartbeat TTL is lost when no heartbeat arrived within the TTL; one
//! without (local, static executors) lives until it leaves.

use std::collections::HashMap;

use crate::model::{ExecutorId, Name};

/// How an executor stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Takes work.
    Live,
    /// Leaving: takes no new work, finishes what it runs.
    Leaving,
}

/// One registered executor.
#[derive(Clone, Debug, PartialEq)]
pub struct RegistryEntry {
    /// The shard that allocates on it.
    pub owner: u32,
    /// Heartbeat TTL, microseconds; `None` never expires.
    pub ttl_us: Option<u64>,
    /// Last heartbeat (or join), microseconds since the Unix epoch.
    pub last_seen_us: u64,
    /// Live or leaving.
    pub liveness: Liveness,
}

/// The registry of live executors.
#[derive(Clone, Debug, Default)]
pub struct ExecutorRegistry {
    entries: HashMap<ExecutorId, RegistryEntry>,
    /// Whether any entry ever had a TTL, to skip expiry scans when none can expire.
    any_ttl: bool,
}

impl ExecutorRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers or refreshes an executor; returns whether it is new.
    pub fn join(&mut self, id: &Name, owner: u32, ttl_us: Option<u64>, now_us: u64) -> bool {
        self.any_ttl |= ttl_us.is_some();
        match self.entries.get_mut(id) {
            Some(entry) => {
                entry.ttl_us = ttl_us;
                entry.last_seen_us = now_us;
                entry.liveness = Liveness::Live;
                false
            }
            None => {
                self.entries.insert(
                    id.clone(),
                    RegistryEntry {
                        owner,
                        ttl_us,
                        last_seen_us: now_us,
                        liveness: Liveness::Live,
                    },
                );
                true
            }
        }
    }

    /// Records a heartbeat; returns whether the executor is known.
    pub fn heartbeat(&mut self, id: &str, now_us: u64) -> bool {
        match self.entries.get_mut(id) {
            Some(entry) => {
                entry.last_seen_us = entry.last_seen_us.max(now_us);
                true
            }
            None => false,
        }
    }

    /// Marks an executor as leaving; returns its entry.
    pub fn leave(&mut self, id: &str) -> Option<&RegistryEntry> {
        let entry = self.entries.get_mut(id)?;
        entry.liveness = Liveness::Leaving;
        Some(entry)
    }

    /// Forgets an executor (it left, or was lost).
    pub fn remove(&mut self, id: &str) -> Option<RegistryEntry> {
        self.entries.remove(id)
    }

    /// The entry of an executor.
    pub fn get(&self, id: &str) -> Option<&RegistryEntry> {
        self.entries.get(id)
    }

    /// Removes and returns the executors whose heartbeat is older than their
    /// TTL at `now_us`.
    pub fn expire(&mut self, now_us: u64) -> Vec<(ExecutorId, RegistryEntry)> {
        if !self.any_ttl {
            return Vec::new();
        }
        let lost: Vec<ExecutorId> = self
            .entries
            .iter()
            .filter(|(_, e)| e.ttl_us.is_some_and(|ttl| now_us > e.last_seen_us + ttl))
            .map(|(id, _)| id.clone())
            .collect();
        lost.into_iter()
            .filter_map(|id| self.entries.remove(&id).map(|e| (id, e)))
            .collect()
    }

    /// When the next executor would be declared lost if no heartbeat came,
    /// microseconds since the Unix epoch.
    pub fn next_expiry_us(&self) -> Option<u64> {
        self.entries
            .values()
            .filter_map(|e| e.ttl_us.map(|ttl| e.last_seen_us + ttl + 1))
            .min()
    }

    /// Number of registered executors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is registered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
