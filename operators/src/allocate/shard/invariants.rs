//! The accounting invariants: for every executor, allocated resources are
//! the sum of the running placements' requests (inside reservations: of the
//! reservations' holdings) and never above capacity.

use crate::allocate::{ExecutorState, GpuPick, Reservation};
use crate::model::ResourceRequest;

use super::{InvariantViolation, ShardAllocator};

impl ShardAllocator {
    /// Checks that each executor's free capacity equals its capacity minus
    /// the requests of the leases and reservations placed on it, never
    /// negative, and that each reservation's pool balances likewise.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let violation = |executor: &str, detail: String| InvariantViolation {
            executor: executor.to_string(),
            detail,
        };
        let mut expected: Vec<ExecutorState> = self
            .placer
            .executors()
            .iter()
            .map(|e| ExecutorState::new(e.spec.clone()))
            .collect();
        let mut pools: Vec<ExecutorState> = self
            .reservations
            .iter()
            .map(|r| {
                let mut fresh = Reservation::new(
                    r.id.clone(),
                    r.holder.clone(),
                    r.executor,
                    &self.placer.executors()[r.executor],
                    r.request.clone(),
                    r.gpu.clone(),
                    r.expires_at_us,
                );
                fresh.pool.running = 0;
                fresh.pool
            })
            .collect();
        for r in &self.reservations {
            let e = &mut expected[r.executor];
            if !gpu_pick_fits(e, &r.request, &r.gpu) {
                return Err(violation(
                    &e.spec.id,
                    format!("reservation {} exceeds capacity", r.id),
                ));
            }
            e.take(&r.request, &r.gpu);
        }
        for p in self.running.values() {
            let e = &mut expected[p.executor];
            match &p.reservation {
                Some((id, pool_pick)) => {
                    let Some(r) = self.reservations.iter().position(|r| r.id == *id) else {
                        return Err(violation(
                            &e.spec.id,
                            format!("task {} inside unknown reservation {id}", p.task_id),
                        ));
                    };
                    if !gpu_pick_fits(&pools[r], &p.request, pool_pick) {
                        return Err(violation(
                            &e.spec.id,
                            format!("reservation {id} overfull at task {}", p.task_id),
                        ));
                    }
                    pools[r].take(&p.request, pool_pick);
                    e.running += 1;
                }
                None => {
                    if !gpu_pick_fits(e, &p.request, &p.gpu) {
                        return Err(violation(
                            &e.spec.id,
                            format!("running leases exceed capacity at task {}", p.task_id),
                        ));
                    }
                    e.take(&p.request, &p.gpu);
                }
            }
        }
        let differs = |a: &ExecutorState, b: &ExecutorState| {
            a.free_cpu_milli != b.free_cpu_milli
                || a.free_memory_mib != b.free_memory_mib
                || a.free_gpu_milli != b.free_gpu_milli
                || a.free_custom != b.free_custom
                || a.running != b.running
        };
        for (actual, expected) in self.placer.executors().iter().zip(&expected) {
            if differs(actual, expected) {
                return Err(violation(
                    &actual.spec.id,
                    format!(
                        "free cpu {} mem {} gpu {:?} running {}, expected cpu {} mem {} gpu {:?} running {}",
                        actual.free_cpu_milli,
                        actual.free_memory_mib,
                        actual.free_gpu_milli,
                        actual.running,
                        expected.free_cpu_milli,
                        expected.free_memory_mib,
                        expected.free_gpu_milli,
                        expected.running
                    ),
                ));
            }
        }
        for (r, expected) in self.reservations.iter().zip(&pools) {
            let mut actual = r.pool.clone();
            actual.running = expected.running;
            if differs(&actual, expected) {
                return Err(violation(&r.id, "reservation pool does not balance".into()));
            }
        }
        Ok(())
    }
}

/// Whether `req` with the given device pick fits `e` now.
fn gpu_pick_fits(e: &ExecutorState, req: &ResourceRequest, pick: &GpuPick) -> bool {
    let base = ResourceRequest {
        gpu: crate::model::GpuRequest::None,
        ..req.clone()
    };
    let devices_ok = match pick {
        GpuPick::None => true,
        GpuPick::Share { device, milli } => e
            .free_gpu_milli
            .get(usize::from(*device))
            .is_some_and(|free| free >= milli),
        GpuPick::Whole(ds) => ds.iter().all(|d| {
            e.free_gpu_milli
                .get(usize::from(*d))
                .is_some_and(|free| *free == crate::model::GPU_MILLI_PER_DEVICE)
        }),
    };
    let mut probe = e.clone();
    probe.accepting = true;
    devices_ok && probe.fit(&base).is_some()
}
