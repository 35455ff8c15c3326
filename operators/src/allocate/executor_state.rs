//! One executor's free capacity, accounted per GPU device.

use crate::model::{ExecutorSpec, GpuRequest, ResourceRequest, GPU_MILLI_PER_DEVICE};

/// Which GPU devices a placement would take, and how much of each.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum GpuPick {
    /// No GPU.
    #[default]
    None,
    /// A share of one device.
    Share {
        /// Device index.
        device: u8,
        /// Thousandths taken.
        milli: u16,
    },
    /// Whole devices.
    Whole(Vec<u8>),
}

impl GpuPick {
    /// Device indices taken.
    pub fn devices(&self) -> Vec<u8> {
        match self {
            GpuPick::None => Vec::new(),
            GpuPick::Share { device, .. } => vec![*device],
            GpuPick::Whole(devices) => devices.clone(),
        }
    }
}

/// An executor's capacity and what is free of it right now.
#[derive(Clone, Debug)]
pub struct ExecutorState {
    /// Identity and capacity.
    pub spec: ExecutorSpec,
    /// Free CPU, thousandths of a core.
    pub free_cpu_milli: u64,
    /// Free memory, MiB.
    pub free_memory_mib: u64,
    /// Free thousandths of each GPU device.
    pub free_gpu_milli: Vec<u16>,
    /// Free amount of each custom resource, in the spec's order.
    pub free_custom: Vec<u64>,
    /// Attempts running here.
    pub running: u32,
    /// Whether the executor takes new work.
    pub accepting: bool,
}

impl ExecutorState {
    /// A fully free executor.
    pub fn new(spec: ExecutorSpec) -> Self {
        ExecutorState {
            free_cpu_milli: spec.cpu_milli,
            free_memory_mib: spec.memory_mib,
            free_gpu_milli: vec![GPU_MILLI_PER_DEVICE; spec.gpus.len()],
            free_custom: spec.custom.values().copied().collect(),
            running: 0,
            accepting: true,
            spec,
        }
    }

    /// Where the request's GPU part would go if placed now, or `None` if the
    /// request does not fit. Fractional shares go to the fullest device that
    /// still fits them, to keep whole devices free.
    pub fn fit(&self, req: &ResourceRequest) -> Option<GpuPick> {
        if !self.accepting
            || u64::from(req.cpu_milli) > self.free_cpu_milli
            || u64::from(req.memory_mib) > self.free_memory_mib
            || !self.custom_fits(req)
        {
            return None;
        }
        self.pick_gpus(req, &self.free_gpu_milli)
    }

    /// Whether the request would fit if the executor were empty.
    pub fn could_ever_fit(&self, req: &ResourceRequest) -> bool {
        let full = vec![GPU_MILLI_PER_DEVICE; self.spec.gpus.len()];
        u64::from(req.cpu_milli) <= self.spec.cpu_milli
            && u64::from(req.memory_mib) <= self.spec.memory_mib
            && req
                .custom
                .iter()
                .all(|(name, amount)| self.spec.custom.get(name).is_some_and(|cap| cap >= amount))
            && self.pick_gpus(req, &full).is_some()
    }

    fn custom_fits(&self, req: &ResourceRequest) -> bool {
        req.custom.iter().all(|(name, amount)| {
            self.custom_index(name)
                .is_some_and(|i| self.free_custom[i] >= *amount)
        })
    }

    fn custom_index(&self, name: &str) -> Option<usize> {
        self.spec.custom.keys().position(|k| k == name)
    }

    fn pick_gpus(&self, req: &ResourceRequest, free: &[u16]) -> Option<GpuPick> {
        let allowed = |i: usize| req.allows_gpu_model(&self.spec.gpus[i].model);
        match req.gpu {
            GpuRequest::None => Some(GpuPick::None),
            GpuRequest::Fraction(milli) => (0..free.len())
                .filter(|&i| allowed(i) && free[i] >= milli)
                .min_by_key(|&i| (free[i], i))
                .map(|i| GpuPick::Share {
                    device: i as u8,
                    milli,
                }),
            GpuRequest::Whole(n) => {
                let devices: Vec<u8> = (0..free.len())
                    .filter(|&i| allowed(i) && free[i] == GPU_MILLI_PER_DEVICE)
                    .take(usize::from(n))
                    .map(|i| i as u8)
                    .collect();
                (devices.len() == usize::from(n)).then_some(GpuPick::Whole(devices))
            }
        }
    }

    /// Takes the request's resources. The caller must have checked [`fit`](Self::fit).
    pub fn take(&mut self, req: &ResourceRequest, gpu: &GpuPick) {
        self.free_cpu_milli -= u64::from(req.cpu_milli);
        self.free_memory_mib -= u64::from(req.memory_mib);
        for (name, amount) in req.custom.iter() {
            if let Some(i) = self.custom_index(name) {
                self.free_custom[i] -= amount;
            }
        }
        match gpu {
            GpuPick::None => {}
            GpuPick::Share { device, milli } => self.free_gpu_milli[usize::from(*device)] -= milli,
            GpuPick::Whole(devices) => {
                for d in devices {
                    self.free_gpu_milli[usize::from(*d)] = 0;
                }
            }
        }
        self.running += 1;
    }

    /// Gives back what [`take`](Self::take) took.
    pub fn give_back(&mut self, req: &ResourceRequest, gpu: &GpuPick) {
        self.free_cpu_milli += u64::from(req.cpu_milli);
        self.free_memory_mib += u64::from(req.memory_mib);
        for (name, amount) in req.custom.iter() {
            if let Some(i) = self.custom_index(name) {
                self.free_custom[i] += amount;
            }
        }
        match gpu {
            GpuPick::None => {}
            GpuPick::Share { device, milli } => self.free_gpu_milli[usize::from(*device)] += milli,
            GpuPick::Whole(devices) => {
                for d in devices {
                    self.free_gpu_milli[usize::from(*d)] = GPU_MILLI_PER_DEVICE;
                }
            }
        }
        self.running -= 1;
    }

    /// Free GPU thousandths summed over devices.
    pub fn free_gpu_total(&self) -> u64 {
        self.free_gpu_milli.iter().map(|&m| u64::from(m)).sum()
    }

    /// The largest of the CPU, memory and GPU shares in use, 0..=1.
    pub fn utilization(&self) -> f64 {
        let used = |free: u64, cap: u64| {
            if cap == 0 {
                0.0
            } else {
                1.0 - free as f64 / cap as f64
            }
        };
        let gpu_cap = self.spec.gpus.len() as u64 * u64::from(GPU_MILLI_PER_DEVICE);
        used(self.free_cpu_milli, self.spec.cpu_milli)
            .max(used(self.free_memory_mib, self.spec.memory_mib))
            .max(used(self.free_gpu_total(), gpu_cap))
    }

    /// Fraction of CPU in use, 0..=1.
    pub fn cpu_utilization(&self) -> f64 {
        if self.spec.cpu_milli == 0 {
            0.0
        } else {
            1.0 - self.free_cpu_milli as f64 / self.spec.cpu_milli as f64
        }
    }
}
