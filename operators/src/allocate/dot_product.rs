//! The dot-product policy (Tetris): align the request with free capacity.

use crate::model::ResourceRequest;

use super::policy::Score;
use super::{ExecutorState, GpuPick, PlacementPolicy};

/// Places each task where the dot product of its demand vector and the
/// executor's free-capacity vector (both as fractions of the executor's
/// capacity, over CPU, memory and GPU) is largest, the packing heuristic of
/// Tetris (Grandl et al., SIGCOMM '14) used as a baseline by the FGD paper.
#[derive(Debug, Default, Clone, Copy)]
pub struct DotProduct;

/// The dot product of a request with an executor's free capacity.
pub(crate) fn alignment(req: &ResourceRequest, e: &ExecutorState) -> f64 {
    let ratio = |x: u64, cap: u64| if cap == 0 { 0.0 } else { x as f64 / cap as f64 };
    let gpu_cap = e.spec.gpus.len() as u64 * 1000;
    ratio(u64::from(req.cpu_milli), e.spec.cpu_milli) * ratio(e.free_cpu_milli, e.spec.cpu_milli)
        + ratio(u64::from(req.memory_mib), e.spec.memory_mib)
            * ratio(e.free_memory_mib, e.spec.memory_mib)
        + ratio(u64::from(req.gpu.milli()), gpu_cap) * ratio(e.free_gpu_total(), gpu_cap)
}

impl PlacementPolicy for DotProduct {
    fn name(&self) -> &'static str {
        "dot_product"
    }
    fn score(
        &mut self,
        req: &ResourceRequest,
        _index: usize,
        e: &ExecutorState,
        _pick: &GpuPick,
    ) -> Score {
        // The best aligned (largest dot product) is best.
        Score::of(-alignment(req, e))
    }
}
