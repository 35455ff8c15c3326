//! Fragmentation gradient descent (FGD): place each task where it least
//! increases the expected fragmentation of GPU capacity.
//!
//! After Weng et al., "Beware of Fragmentation: Scheduling GPU-Sharing
//! Workloads with Fragmentation Gradient Descent", USENIX ATC '23. A node's
//! free GPU capacity is *fragmented* with respect to a task class if that
//! class could not use it: all of it when the class cannot run on the node
//! at all (CPU, memory, GPU model or count), otherwise the free share of each
//! GPU too small for the class's request (for fractional requests) or not
//! wholly free (for whole-GPU requests). The node's fragmentation is the
//! expectation over the observed [`TaskMix`]; FGD places a task on the node
//! whose fragmentation grows least (the "gradient"), breaking ties by the
//! tightest fit.

use std::hash::{Hash, Hasher};

use crate::model::{GpuRequest, ResourceRequest, GPU_MILLI_PER_DEVICE};

use super::policy::{leftover_score, Score};
use super::{ExecutorState, FragmentationModel, GpuPick, PlacementPolicy, TaskClass, TaskMix};

/// The fragmentation-aware policy.
///
/// Its score for a node is the growth of the node's expected fragmentation
/// (the "gradient"), then the tightness of the fit. Each node's current
/// fragmentation is cached until its state changes; the task mix is
/// snapshotted, and the snapshot refreshed as observations grow by an eighth
/// (at least 64), so that cached scores stay valid between refreshes.
#[derive(Clone, Debug, Default)]
pub struct Fgd {
    mix: TaskMix,
    /// The mix the scores are computed with.
    classes: Vec<TaskClass>,
    /// `classes`, grouped for fast evaluation.
    model: FragmentationModel,
    /// Bumped when `classes` is refreshed.
    generation: u64,
    observed: u64,
    observed_at_refresh: u64,
    scratch: Vec<u16>,
    /// Fragmentation of each node's current state, keyed by the state.
    current: Vec<(u64, f64)>,
}

/// A fingerprint of a node's shape and free resources.
fn state_key(e: &ExecutorState) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    (
        e.spec.cpu_milli,
        e.spec.memory_mib,
        e.free_cpu_milli,
        e.free_memory_mib,
    )
        .hash(&mut h);
    e.free_gpu_milli.hash(&mut h);
    for gpu in &e.spec.gpus {
        gpu.model.hash(&mut h);
    }
    h.finish()
}

impl Fgd {
    /// A policy that learns the task mix from the requests it observes.
    pub fn new() -> Self {
        Self::default()
    }

    /// A policy seeded with a known task mix (it keeps learning).
    pub fn with_mix(mix: TaskMix) -> Self {
        let mut fgd = Fgd {
            mix,
            ..Default::default()
        };
        fgd.refresh();
        fgd
    }

    fn refresh(&mut self) {
        self.classes = self.mix.classes().to_vec();
        self.model = FragmentationModel::new(&self.classes);
        self.generation += 1;
        self.observed_at_refresh = self.observed;
        self.current.clear();
    }

    fn fragmentation_now(&mut self, index: usize, e: &ExecutorState) -> f64 {
        let key = state_key(e);
        if self.current.len() <= index {
            self.current.resize(index + 1, (0, f64::NAN));
        }
        let (cached_key, cached) = self.current[index];
        if cached_key == key && !cached.is_nan() {
            return cached;
        }
        let value =
            self.model
                .fragmentation(e, e.free_cpu_milli, e.free_memory_mib, &e.free_gpu_milli);
        self.current[index] = (key, value);
        value
    }
}

/// Expected fragmentation, in thousandths of a GPU, of a node with the given
/// free resources, over `classes`.
pub fn node_fragmentation(
    node: &ExecutorState,
    free_cpu: u64,
    free_mem: u64,
    free_gpu: &[u16],
    classes: &[TaskClass],
) -> f64 {
    let free_total: u64 = free_gpu.iter().map(|&m| u64::from(m)).sum();
    if free_total == 0 {
        return 0.0;
    }
    classes
        .iter()
        .map(|class| {
            class.weight
                * class_fragmentation(
                    node,
                    free_cpu,
                    free_mem,
                    free_gpu,
                    free_total,
                    &class.request,
                )
        })
        .sum()
}

fn class_fragmentation(
    node: &ExecutorState,
    free_cpu: u64,
    free_mem: u64,
    free_gpu: &[u16],
    free_total: u64,
    req: &ResourceRequest,
) -> f64 {
    if u64::from(req.cpu_milli) > free_cpu || u64::from(req.memory_mib) > free_mem {
        return free_total as f64;
    }
    let allowed = |i: usize| req.allows_gpu_model(&node.spec.gpus[i].model);
    match req.gpu {
        // A task without GPUs that fits uses none: nothing is fragmented for it.
        GpuRequest::None => 0.0,
        GpuRequest::Fraction(milli) => {
            let mut fragmented = 0u64;
            let mut usable = false;
            for (i, &free) in free_gpu.iter().enumerate() {
                if allowed(i) && free >= milli {
                    usable = true;
                } else {
                    fragmented += u64::from(free);
                }
            }
            if usable {
                fragmented as f64
            } else {
                free_total as f64
            }
        }
        GpuRequest::Whole(n) => {
            let mut fragmented = 0u64;
            let mut whole = 0usize;
            for (i, &free) in free_gpu.iter().enumerate() {
                if allowed(i) && free == GPU_MILLI_PER_DEVICE {
                    whole += 1;
                } else {
                    fragmented += u64::from(free);
                }
            }
            if whole >= usize::from(n) {
                fragmented as f64
            } else {
                free_total as f64
            }
        }
    }
}

impl PlacementPolicy for Fgd {
    fn name(&self) -> &'static str {
        "fgd"
    }

    fn observe(&mut self, req: &ResourceRequest) {
        self.mix.observe(req);
        self.observed += 1;
        let grown = self.observed - self.observed_at_refresh;
        if grown >= 64.max(self.observed_at_refresh / 8) {
            self.refresh();
        }
    }

    fn generation(&self) -> u64 {
        self.generation
    }

    fn score(
        &mut self,
        req: &ResourceRequest,
        index: usize,
        e: &ExecutorState,
        pick: &GpuPick,
    ) -> Score {
        if self.classes.is_empty() {
            // Nothing observed yet: the request itself is the best guess.
            self.mix.observe(req);
            self.refresh();
        }
        let before = self.fragmentation_now(index, e);
        self.scratch.clear();
        self.scratch.extend_from_slice(&e.free_gpu_milli);
        match pick {
            GpuPick::None => {}
            GpuPick::Share { device, milli } => self.scratch[usize::from(*device)] -= milli,
            GpuPick::Whole(devices) => devices
                .iter()
                .for_each(|d| self.scratch[usize::from(*d)] = 0),
        }
        let after = self.model.fragmentation(
            e,
            e.free_cpu_milli - u64::from(req.cpu_milli),
            e.free_memory_mib - u64::from(req.memory_mib),
            &self.scratch,
        );
        // Rounded so that equal gradients computed in different float
        // orders tie, and the tightest fit breaks the tie.
        let gradient = ((after - before) * 1e6).round() / 1e6;
        Score(gradient, leftover_score(req, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ExecutorSpec, Name};

    fn share(milli: u16) -> ResourceRequest {
        ResourceRequest {
            gpu: GpuRequest::Fraction(milli),
            ..ResourceRequest::cpu(100, 0)
        }
    }

    #[test]
    fn fragmentation_counts_what_the_mix_cannot_use() {
        let node = ExecutorState::new(ExecutorSpec::cpu("n", 8000, 8000).with_gpus(2, "A100"));
        let mut mix = TaskMix::from_requests(&[share(600)]);
        let classes = mix.classes().to_vec();
        // Device 0 has 500 free: too little for a 600 share, so fragmented.
        assert_eq!(
            node_fragmentation(&node, 8000, 8000, &[500, 1000], &classes),
            500.0
        );
        assert_eq!(
            node_fragmentation(&node, 8000, 8000, &[1000, 1000], &classes),
            0.0
        );
        // Without the CPU to run the class, every free GPU share is fragmented.
        assert_eq!(
            node_fragmentation(&node, 50, 8000, &[1000, 1000], &classes),
            2000.0
        );
        // A class that needs V100s cannot use these A100s at all.
        let v100 = ResourceRequest {
            gpu_models: Box::new([Name::from("V100")]),
            ..share(100)
        };
        let mut mix = TaskMix::from_requests(&[v100]);
        assert_eq!(
            node_fragmentation(&node, 8000, 8000, &[1000, 1000], mix.classes()),
            2000.0
        );
    }

    #[test]
    fn fgd_keeps_whole_gpus_free_for_whole_gpu_tasks() {
        // Two nodes: one with a half-used GPU, one empty. Whole-GPU tasks
        // dominate the mix, so a 500 share should go to the half-used GPU.
        let mut a = ExecutorState::new(ExecutorSpec::cpu("a", 8000, 8000).with_gpus(2, "A100"));
        let b = ExecutorState::new(ExecutorSpec::cpu("b", 8000, 8000).with_gpus(2, "A100"));
        a.take(
            &share(500),
            &GpuPick::Share {
                device: 0,
                milli: 500,
            },
        );
        let whole = ResourceRequest {
            gpu: GpuRequest::Whole(1),
            ..ResourceRequest::cpu(100, 0)
        };
        let mut policy = Fgd::with_mix(TaskMix::from_requests(&[whole.clone(), whole, share(500)]));
        assert_eq!(policy.choose(&share(500), &[b.clone(), a.clone()]), Some(1));
        assert_eq!(policy.choose(&share(500), &[a, b]), Some(0));
    }
}
