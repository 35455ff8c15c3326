//! Mini-batches uploaded to the device once and trained on repeatedly.
//!
//! ```text
//!  [batch] ─► CsrPacker (host) ─► one upload ─► ResidentBatches
//!     CudaTrainer::train_resident(set, i): queue batch i's step, no host traffic
//!     CudaTrainer::train_resident_steps(set, i, k): k steps from batch i on
//!         (linear model, batches ≤ 1024 rows: one launch for all k)
//! ```
//!
//! This is how training throughput is measured apart from host packing and
//! PCIe transfers (`tidewater bench-learner --device cuda:N`), and how a
//! replay or a retraining pass would feed a model from data already known.

use cudarc::driver::CudaSlice;

use super::csr::BatchExtent;
use super::DeviceCsr;

/// Packed batches in device memory; made by
/// [`CudaTrainer::upload_batches`](super::CudaTrainer::upload_batches).
pub struct ResidentBatches {
    pub(super) arrays: DeviceCsr,
    /// Batch b's rows are `first_row[b] .. first_row[b + 1]` (n + 1 entries).
    pub(super) first_row: CudaSlice<i32>,
    /// Batch b's touched parameters, likewise.
    pub(super) first_touched: CudaSlice<i32>,
    /// The largest batch, in rows.
    pub(super) max_rows: usize,
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
