//! Reservations: capacity held ahead on one executor for a task or a tenant.
//!
//! Creating a reservation takes its resources from the executor like a
//! lease. The reservation is then a small pool of its own: tasks of its
//! holder are placed inside it first, taking from the pool instead of the
//! executor, and give back to it. When it expires (or is released) the
//! unused part returns to the executor; tasks still running inside keep
//! their resources and return them to the executor when they finish.

use std::collections::BTreeMap;

use crate::model::{
    ExecutorSpec, GpuDevice, Name, ReservationHolder, ResourceRequest, Task, GPU_MILLI_PER_DEVICE,
};

use super::{ExecutorState, GpuPick};

/// An active reservation.
#[derive(Clone, Debug)]
pub struct Reservation {
    /// Its id.
    pub id: Name,
    /// Who may use it.
    pub holder: ReservationHolder,
    /// Index of the executor in the shard.
    pub executor: usize,
    /// What it holds of the executor.
    pub request: ResourceRequest,
    /// Which of the executor's GPU devices it holds.
    pub gpu: GpuPick,
    /// What is left in it; its GPU device `i` is the executor's `devices[i]`.
    pub pool: ExecutorState,
    /// The executor's device index of each pool device.
    pub devices: Vec<u8>,
    /// When it lapses, microseconds since the Unix epoch.
    pub expires_at_us: u64,
}

impl Reservation {
    /// A reservation of `request` on `executor` (index `index`), which
    /// granted the GPU devices `gpu`.
    pub fn new(
        id: Name,
        holder: ReservationHolder,
        index: usize,
        executor: &ExecutorState,
        request: ResourceRequest,
        gpu: GpuPick,
        expires_at_us: u64,
    ) -> Self {
        let devices = gpu.devices();
        let spec = ExecutorSpec {
            id: id.clone(),
            cpu_milli: u64::from(request.cpu_milli),
            memory_mib: u64::from(request.memory_mib),
            gpus: devices
                .iter()
                .map(|&d| GpuDevice {
                    model: executor.spec.gpus[usize::from(d)].model.clone(),
                })
                .collect(),
            custom: request
                .custom
                .iter()
                .cloned()
                .collect::<BTreeMap<Name, u64>>(),
            labels: executor.spec.labels.clone(),
        };
        let mut pool = ExecutorState::new(spec);
        if let GpuPick::Share { milli, .. } = gpu {
            pool.free_gpu_milli = vec![milli];
        }
        Reservation {
            id,
            holder,
            executor: index,
            request,
            gpu,
            pool,
            devices,
            expires_at_us,
        }
    }

    /// Whether `task` may run inside this reservation.
    pub fn serves(&self, task: &Task) -> bool {
        match &self.holder {
            ReservationHolder::Tenant(tenant) => task.tenant == *tenant,
            ReservationHolder::Task(id) => task.id == *id,
        }
    }

    /// The executor-level devices of a pick made in the pool.
    pub fn to_executor_pick(&self, pool_pick: &GpuPick) -> GpuPick {
        match pool_pick {
            GpuPick::None => GpuPick::None,
            GpuPick::Share { device, milli } => GpuPick::Share {
                device: self.devices[usize::from(*device)],
                milli: *milli,
            },
            GpuPick::Whole(devices) => GpuPick::Whole(
                devices
                    .iter()
                    .map(|&d| self.devices[usize::from(d)])
                    .collect(),
            ),
        }
    }

    /// Returns the pool's unused capacity to `executor` and drops the
    /// reservation's own hold (its running count).
    pub fn return_unused(&self, executor: &mut ExecutorState) {
        executor.free_cpu_milli += self.pool.free_cpu_milli;
        executor.free_memory_mib += self.pool.free_memory_mib;
        for (i, &device) in self.devices.iter().enumerate() {
            let slot = &mut executor.free_gpu_milli[usize::from(device)];
            *slot = (*slot + self.pool.free_gpu_milli[i]).min(GPU_MILLI_PER_DEVICE);
        }
        for ((name, _), free) in self.pool.spec.custom.iter().zip(&self.pool.free_custom) {
            if let Some(i) = executor.spec.custom.keys().position(|k| k == name) {
                executor.free_custom[i] += free;
            }
        }
        executor.running -= 1;
    }
}
