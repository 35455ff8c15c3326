//! Mini-batches uploaded to the device once and trained on repeatedly.
//!
//! ```text
//!  [batch] ─► CsrPacker (host) ─► one upload ─► ResidentBatches
//!     CudaTrainer::train_resident(set, i): queue batch i's step, no host traffic
//! ```
//!
//! This is how training throughput is measured apart from host packing and
//! PCIe transfers (`tidewater bench-learner --device cuda:N`), and how a
//! replay or a retraining pass would feed a model from data already known.

use super::csr::BatchExtent;
use super::DeviceCsr;

/// Packed batches in device memory; made by
/// [`CudaTrainer::upload_batches`](super::CudaTrainer::upload_batches).
pub struct ResidentBatches {
    pub(super) arrays: DeviceCsr,
    pub(super) extents: Vec<BatchExtent>,
}

impl ResidentBatches {
    /// The number of batches.
    pub fn len(&self) -> usize {
        self.extents.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.extents.is_empty()
    }

    /// Samples in batch `index` (0 if out of range).
    pub fn rows(&self, index: usize) -> usize {
        self.extents.get(index).map_or(0, |e| e.rows)
    }
}
