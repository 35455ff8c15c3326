//! Which shards could ever hold a request, for infeasibility rejection and
//! for moving tasks to a shard that can run them.

use std::collections::HashMap;

use crate::model::{ExecutorSpec, ResourceRequest};

use super::ExecutorState;

const MEMO_LIMIT: usize = 4096;

/// Knows every executor in the cluster (by shard) at full capacity and
/// answers, with a memo per request shape, which shards could hold a request.
pub struct FeasibilityIndex {
    shards: Vec<Vec<ExecutorState>>,
    memo: HashMap<ResourceRequest, Vec<u32>>,
    /// Executors declared lost (no heartbeat within their TTL): they may
    /// join again, so a task only they could hold waits instead of being
    /// refused. Cleared of an executor when it joins again or leaves.
    lost: Vec<ExecutorState>,
}

impl FeasibilityIndex {
    /// An index over `executors`, each tagged with the shard that owns it.
    pub fn new(
        shard_count: usize,
        executors: impl IntoIterator<Item = (u32, ExecutorSpec)>,
    ) -> Self {
        let mut shards = vec![Vec::new(); shard_count.max(1)];
        for (shard, spec) in executors {
            if let Some(list) = shards.get_mut(shard as usize) {
                list.push(ExecutorState::new(spec));
            }
        }
        FeasibilityIndex {
            shards,
            memo: HashMap::new(),
            lost: Vec::new(),
        }
    }

    /// Number of shards.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Every executor with the shard that owns it.
    pub fn executors(&self) -> impl Iterator<Item = (u32, &ExecutorSpec)> {
        self.shards
            .iter()
            .enumerate()
            .flat_map(|(i, list)| list.iter().map(move |e| (i as u32, &e.spec)))
    }

    /// Adds an executor that joined at run time.
    pub fn add(&mut self, shard: u32, spec: ExecutorSpec) {
        self.lost.retain(|e| e.spec.id != spec.id);
        if let Some(list) = self.shards.get_mut(shard as usize) {
            list.push(ExecutorState::new(spec));
            self.memo.clear();
        }
    }

    /// Removes an executor that left.
    pub fn remove(&mut self, id: &str) {
        for list in &mut self.shards {
            list.retain(|e| e.spec.id != id);
        }
        self.lost.retain(|e| e.spec.id != id);
        self.memo.clear();
    }

    /// Removes an executor declared lost, remembering it as one that may
    /// join again (see [`lost_could_hold`](Self::lost_could_hold)).
    pub fn mark_lost(&mut self, id: &str) {
        for list in &mut self.shards {
            if let Some(at) = list.iter().position(|e| e.spec.id == id) {
                let executor = list.remove(at);
                self.lost.retain(|e| e.spec.id != id);
                self.lost.push(ExecutorState::new(executor.spec));
            }
        }
        self.memo.clear();
    }

    /// Whether an executor that was lost (and has not joined again or left
    /// since) could hold `req` when empty: a task that only such an
    /// executor could hold waits for one to join.
    pub fn lost_could_hold(&self, req: &ResourceRequest) -> bool {
        self.lost.iter().any(|e| e.could_ever_fit(req))
    }

    /// Shards with at least one executor that could hold `req` when empty.
    /// Empty means the request can never run anywhere.
    pub fn capable_shards(&mut self, req: &ResourceRequest) -> &[u32] {
        if !self.memo.contains_key(req) {
            if self.memo.len() >= MEMO_LIMIT {
                self.memo.clear();
            }
            let capable = self
                .shards
                .iter()
                .enumerate()
                .filter(|(_, list)| list.iter().any(|e| e.could_ever_fit(req)))
                .map(|(i, _)| i as u32)
                .collect();
            self.memo.insert(req.clone(), capable);
        }
        self.memo.get(req).map_or(&[], Vec::as_slice)
    }

    /// A human-readable account of why nothing in the cluster can hold `req`.
    pub fn explain(&self, req: &ResourceRequest) -> String {
        let all = || self.shards.iter().flatten();
        let max_cpu = all().map(|e| e.spec.cpu_milli).max().unwrap_or(0);
        let max_mem = all().map(|e| e.spec.memory_mib).max().unwrap_or(0);
        let max_gpus = all()
            .map(|e| {
                e.spec
                    .gpus
                    .iter()
                    .filter(|g| req.allows_gpu_model(&g.model))
                    .count()
            })
            .max()
            .unwrap_or(0);
        if all().next().is_none() {
            return "no executors are registered".to_string();
        }
        if u64::from(req.cpu_milli) > max_cpu {
            return format!(
                "cpu_milli {} exceeds the largest executor's {max_cpu}",
                req.cpu_milli
            );
        }
        if u64::from(req.memory_mib) > max_mem {
            return format!(
                "memory_mib {} exceeds the largest executor's {max_mem}",
                req.memory_mib
            );
        }
        if req.gpu.milli() > 0 && max_gpus == 0 {
            return if req.gpu_models.is_empty() {
                "GPU requested but no executor has a GPU".to_string()
            } else {
                format!(
                    "no executor has a GPU of the allowed models {:?}",
                    req.gpu_models
                )
            };
        }
        if let crate::model::GpuRequest::Whole(n) = req.gpu {
            if usize::from(n) > max_gpus {
                return format!(
                    "{n} GPUs requested but no executor has more than {max_gpus} suitable GPUs"
                );
            }
        }
        for (name, amount) in req.custom.iter() {
            let max = all()
                .filter_map(|e| e.spec.custom.get(name))
                .max()
                .copied()
                .unwrap_or(0);
            if *amount > max {
                return format!(
                    "custom resource {name:?}: {amount} requested, at most {max} on any executor"
                );
            }
        }
        "no single executor has all the requested resources together".to_string()
    }
}
