//! Capacity summaries: what a shard could still place, in a few slots.
//!
//! Every shard publishes a summary of its free capacity to the others each
//! epoch in which it changed. A task its own shard cannot place now moves to
//! a shard whose latest summary says it fits; the sender takes the task's
//! request out of its copy of that summary, so that one stale summary does
//! not attract a stampede. Summaries are advisory: the receiving shard
//! places or queues the task as usual.

use serde::{Deserialize, Serialize};

use crate::model::{GpuRequest, Name, ResourceRequest, GPU_MILLI_PER_DEVICE};

use super::ExecutorState;

/// Most slots a summary keeps (the executors with the most free capacity).
pub const SUMMARY_SLOTS: usize = 16;

/// The free capacity of one executor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FreeSlot {
    /// Free CPU, thousandths of a core.
    pub cpu_milli: u64,
    /// Free memory, MiB.
    pub memory_mib: u64,
    /// Wholly free GPU devices.
    pub whole_gpus: u8,
    /// The largest free share of one GPU device, thousandths.
    pub largest_share: u16,
    /// The executor's GPU model (the first device's), if it has GPUs.
    pub gpu_model: Option<Name>,
}

impl FreeSlot {
    fn of(e: &ExecutorState) -> FreeSlot {
        FreeSlot {
            cpu_milli: e.free_cpu_milli,
            memory_mib: e.free_memory_mib,
            whole_gpus: e
                .free_gpu_milli
                .iter()
                .filter(|&&m| m == GPU_MILLI_PER_DEVICE)
                .count()
                .min(usize::from(u8::MAX)) as u8,
            largest_share: e.free_gpu_milli.iter().copied().max().unwrap_or(0),
            gpu_model: e.spec.gpus.first().map(|g| g.model.clone()),
        }
    }

    fn fits(&self, req: &ResourceRequest) -> bool {
        let model_ok = || {
            self.gpu_model
                .as_deref()
                .is_some_and(|m| req.allows_gpu_model(m))
        };
        u64::from(req.cpu_milli) <= self.cpu_milli
            && u64::from(req.memory_mib) <= self.memory_mib
            && match req.gpu {
                GpuRequest::None => true,
                GpuRequest::Fraction(m) => self.largest_share >= m && model_ok(),
                GpuRequest::Whole(n) => self.whole_gpus >= n && model_ok(),
            }
    }

    fn take(&mut self, req: &ResourceRequest) {
        self.cpu_milli -= u64::from(req.cpu_milli);
        self.memory_mib -= u64::from(req.memory_mib);
        match req.gpu {
            GpuRequest::None => {}
            GpuRequest::Fraction(m) => self.largest_share -= m,
            GpuRequest::Whole(n) => self.whole_gpus -= n,
        }
    }
}

/// A shard's free capacity, as its largest free slots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapacitySummary {
    /// The slots, most free first.
    pub slots: Vec<FreeSlot>,
}

impl CapacitySummary {
    /// The summary of `executors` (only those taking work).
    pub fn of(executors: &[ExecutorState]) -> Self {
        let mut slots: Vec<FreeSlot> = executors
            .iter()
            .filter(|e| e.accepting)
            .map(FreeSlot::of)
            .filter(|s| s.cpu_milli > 0)
            .collect();
        slots.sort_by(|a, b| {
            (b.whole_gpus, b.largest_share, b.cpu_milli, b.memory_mib).cmp(&(
                a.whole_gpus,
                a.largest_share,
                a.cpu_milli,
                a.memory_mib,
            ))
        });
        slots.truncate(SUMMARY_SLOTS);
        CapacitySummary { slots }
    }

    /// Whether some slot fits `req` (custom resources are not summarized:
    /// requests that need them never move by summary).
    pub fn fits(&self, req: &ResourceRequest) -> bool {
        req.custom.is_empty() && self.slots.iter().any(|s| s.fits(req))
    }

    /// Takes `req` out of the first slot that fits it; returns whether one did.
    pub fn take(&mut self, req: &ResourceRequest) -> bool {
        if !req.custom.is_empty() {
            return false;
        }
        match self.slots.iter_mut().find(|s| s.fits(req)) {
            Some(slot) => {
                slot.take(req);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ExecutorSpec;

    #[test]
    fn summaries_fit_what_one_executor_could_hold_and_shrink_as_used() {
        let mut a = ExecutorState::new(ExecutorSpec::cpu("a", 4000, 4000).with_gpus(2, "A100"));
        let pick = a
            .fit(&ResourceRequest {
                gpu: GpuRequest::Fraction(300),
                ..ResourceRequest::cpu(1000, 0)
            })
            .expect("fits");
        a.take(
            &ResourceRequest {
                gpu: GpuRequest::Fraction(300),
                ..ResourceRequest::cpu(1000, 0)
            },
            &pick,
        );
        let b = ExecutorState::new(ExecutorSpec::cpu("b", 8000, 1000));
        let mut summary = CapacitySummary::of(&[a, b]);
        let whole = ResourceRequest {
            gpu: GpuRequest::Whole(1),
            ..ResourceRequest::cpu(3000, 100)
        };
        assert!(summary.fits(&whole));
        assert!(
            !summary.fits(&ResourceRequest {
                gpu: GpuRequest::Whole(2),
                ..ResourceRequest::cpu(100, 100)
            }),
            "only one device is wholly free"
        );
        assert!(!summary.fits(&ResourceRequest {
            gpu_models: Box::new([Name::from("V100")]),
            ..whole.clone()
        }));
        // CPU and memory must fit on the same executor.
        assert!(!summary.fits(&ResourceRequest::cpu(5000, 2000)));
        assert!(summary.take(&whole));
        assert!(!summary.fits(&whole), "taken out of the summary");
    }
}
