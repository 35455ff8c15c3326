//! A fast evaluator of expected GPU fragmentation for one task mix.
//!
//! [`node_fragmentation`](super::node_fragmentation) walks every class and
//! every GPU. Classes share few distinct GPU requests (the default openb
//! trace has 25 among its 64 most popular classes), and the GPU part of a
//! class's fragmentation depends only on its GPU request, so this model
//! groups classes by GPU request: per node state it computes each group's
//! GPU fragmentation once, then adds each member's weight with a CPU and
//! memory check. The result equals `node_fragmentation` (tested).

use crate::model::{GpuRequest, Name, GPU_MILLI_PER_DEVICE};

use super::{ExecutorState, TaskClass};

/// Classes sharing one GPU request.
#[derive(Clone, Debug)]
struct GpuGroup {
    gpu: GpuRequest,
    models: Box<[Name]>,
    /// `(cpu_milli, memory_mib, weight)` of each member class.
    members: Vec<(u64, u64, f64)>,
}

/// The task mix, grouped for fast fragmentation evaluation.
#[derive(Clone, Debug, Default)]
pub struct FragmentationModel {
    groups: Vec<GpuGroup>,
}

impl FragmentationModel {
    /// The model of `classes`.
    pub fn new(classes: &[TaskClass]) -> Self {
        let mut groups: Vec<GpuGroup> = Vec::new();
        for class in classes {
            let req = &class.request;
            let member = (
                u64::from(req.cpu_milli),
                u64::from(req.memory_mib),
                class.weight,
            );
            match groups
                .iter_mut()
                .find(|g| g.gpu == req.gpu && g.models == req.gpu_models)
            {
                Some(group) => group.members.push(member),
                None => groups.push(GpuGroup {
                    gpu: req.gpu,
                    models: req.gpu_models.clone(),
                    members: vec![member],
                }),
            }
        }
        FragmentationModel { groups }
    }

    /// Expected fragmentation, in thousandths of a GPU, of `node` with the
    /// given free resources.
    pub fn fragmentation(
        &self,
        node: &ExecutorState,
        free_cpu: u64,
        free_mem: u64,
        free_gpu: &[u16],
    ) -> f64 {
        let total: u64 = free_gpu.iter().map(|&m| u64::from(m)).sum();
        if total == 0 {
            return 0.0;
        }
        let total_f = total as f64;
        let mut sum = 0.0;
        for group in &self.groups {
            let allowed = |i: usize| {
                group.models.is_empty() || group.models.contains(&node.spec.gpus[i].model)
            };
            let gpu_part = match group.gpu {
                GpuRequest::None => 0.0,
                GpuRequest::Fraction(milli) => {
                    let (mut fragmented, mut usable) = (0u64, false);
                    for (i, &free) in free_gpu.iter().enumerate() {
                        if free >= milli && allowed(i) {
                            usable = true;
                        } else {
                            fragmented += u64::from(free);
                        }
                    }
                    if usable {
                        fragmented as f64
                    } else {
                        total_f
                    }
                }
                GpuRequest::Whole(n) => {
                    let (mut fragmented, mut whole) = (0u64, 0usize);
                    for (i, &free) in free_gpu.iter().enumerate() {
                        if free == GPU_MILLI_PER_DEVICE && allowed(i) {
                            whole += 1;
                        } else {
                            fragmented += u64::from(free);
                        }
                    }
                    if whole >= usize::from(n) {
                        fragmented as f64
                    } else {
                        total_f
                    }
                }
            };
            for &(cpu, mem, weight) in &group.members {
                let part = if cpu > free_cpu || mem > free_mem {
                    total_f
                } else {
                    gpu_part
                };
                sum += weight * part;
            }
        }
        sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::allocate::{node_fragmentation, TaskMix};
    use crate::model::{ExecutorSpec, ResourceRequest};

    #[test]
    fn equals_the_reference_on_many_states() {
        let mut requests = Vec::new();
        for i in 0..40u32 {
            let gpu = match i % 4 {
                0 => GpuRequest::None,
                1 => GpuRequest::Whole((i % 3 + 1) as u8),
                _ => GpuRequest::Fraction((i * 97 % 999 + 1) as u16),
            };
            let models: Box<[Name]> = if i % 7 == 0 {
                Box::new([Name::from("A")])
            } else {
                Box::new([])
            };
            requests.push(ResourceRequest {
                cpu_milli: i * 500 % 7000 + 1,
                memory_mib: i * 900 % 9000,
                gpu,
                gpu_models: models,
                custom: Box::new([]),
            });
        }
        let mut mix = TaskMix::from_requests(&requests);
        let classes = mix.classes().to_vec();
        let model = FragmentationModel::new(&classes);
        let mut node = ExecutorSpec::cpu("n", 8000, 8000).with_gpus(3, "A");
        node.gpus.push(crate::model::GpuDevice {
            model: Name::from("B"),
        });
        let node = ExecutorState::new(node);
        let mut seed = 7u64;
        for _ in 0..2000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let free: Vec<u16> = (0..4)
                .map(|d| ((seed >> (d * 10)) % 1001) as u16)
                .map(|m| if m > 900 { 1000 } else { m })
                .collect();
            let (cpu, mem) = ((seed >> 40) % 8001, (seed >> 20) % 8001);
            let reference = node_fragmentation(&node, cpu, mem, &free, &classes);
            let fast = model.fragmentation(&node, cpu, mem, &free);
            assert!(
                (reference - fast).abs() < 1e-6,
                "{reference} vs {fast} at {free:?} {cpu} {mem}"
            );
        }
    }
}
