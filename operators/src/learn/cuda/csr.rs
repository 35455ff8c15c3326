//! Host-side packing of mini-batches into the CSR arrays the kernels read.
//!
//! ```text
//!  [(SparseFeatures, target)] per batch ─► CsrPacker::push ─► CsrBatches
//!     idx/val: every in-range non-zero, batch after batch
//!     row_ptr: absolute offsets into idx/val (rows + 1 entries in all)
//!     y:       one target per row
//!     touched: per batch, the parameters its features reach (sorted by
//!              first appearance), which the optimizer updates
//!     extents: where each batch's rows and touched parameters start
//! ```
//!
//! Offsets are absolute, so a batch is a window of the arrays: one upload
//! serves one batch ([`CudaTrainer::train_batch`](super::CudaTrainer)) or a
//! whole set ([`ResidentBatches`](super::ResidentBatches)).

use crate::learn::SparseFeatures;

/// Where one batch lies in a [`CsrBatches`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct BatchExtent {
    /// Index of the batch's first row.
    pub first_row: usize,
    /// Rows in the batch.
    pub rows: usize,
    /// Index of the batch's first touched parameter in `touched`.
    pub first_touched: usize,
    /// Touched parameters.
    pub touched: usize,
}

/// One or more mini-batches in CSR form.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct CsrBatches {
    pub idx: Vec<i32>,
    pub val: Vec<f32>,
    pub row_ptr: Vec<i32>,
    pub y: Vec<f32>,
    pub touched: Vec<i32>,
    pub extents: Vec<BatchExtent>,
}

impl Default for CsrBatches {
    fn default() -> Self {
        CsrBatches {
            idx: Vec::new(),
            val: Vec::new(),
            row_ptr: vec![0],
            y: Vec::new(),
            touched: Vec::new(),
            extents: Vec::new(),
        }
    }
}

impl CsrBatches {
    /// Makes every array non-empty, as a device allocation must be: a
    /// padding index of -1 is skipped by the kernels, and padding beyond
    /// the extents is never read as a row or a touched parameter.
    pub fn pad(&mut self) {
        if self.idx.is_empty() {
            self.idx.push(-1);
            self.val.push(0.0);
        }
        if self.y.is_empty() {
            self.y.push(0.0);
        }
        if self.touched.is_empty() {
            self.touched.push(0);
        }
    }

    /// Whether every offset fits the kernels' 32-bit indices.
    pub fn fits_i32(&self) -> bool {
        i32::try_from(self.idx.len()).is_ok() && i32::try_from(self.touched.len()).is_ok()
    }
}

/// Packs batches for a model of `dim` features and `hidden` units (0 for
/// the linear model).
pub(super) struct CsrPacker {
    dim: usize,
    hidden: usize,
    /// Scratch: which features the current batch has reached.
    marked: Vec<bool>,
}

impl CsrPacker {
    pub fn new(dim: u32, hidden: u32) -> Self {
        CsrPacker {
            dim: dim as usize,
            hidden: hidden as usize,
            marked: vec![false; dim as usize],
        }
    }

    /// Appends one batch. Features at or beyond `dim` are dropped, as the
    /// CPU model ignores them.
    pub fn push(&mut self, out: &mut CsrBatches, batch: &[(SparseFeatures, f32)]) {
        let (dim, hidden) = (self.dim, self.hidden);
        let first_row = out.y.len();
        let first_touched = out.touched.len();
        let mut reached = Vec::new();
        for (x, y) in batch {
            for &(i, v) in x {
                let k = i as usize;
                if k >= dim {
                    continue;
                }
                out.idx.push(i as i32);
                out.val.push(v);
                if !self.marked[k] {
                    self.marked[k] = true;
                    reached.push(k);
                }
            }
            out.row_ptr.push(out.idx.len() as i32);
            out.y.push(*y);
        }
        for &k in &reached {
            self.marked[k] = false;
            if hidden == 0 {
                out.touched.push(k as i32);
            } else {
                out.touched
                    .extend((k * hidden..(k + 1) * hidden).map(|p| p as i32));
            }
        }
        if hidden > 0 {
            // b1, w2 and b2 take part in every step.
            out.touched
                .extend((dim * hidden..dim * hidden + 2 * hidden + 1).map(|p| p as i32));
        }
        out.extents.push(BatchExtent {
            first_row,
            rows: batch.len(),
            first_touched,
            touched: out.touched.len() - first_touched,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_share_absolute_offsets_and_list_touched_parameters() {
        let mut packer = CsrPacker::new(8, 0);
        let mut csr = CsrBatches::default();
        packer.push(
            &mut csr,
            &[(vec![(1, 0.5), (3, 1.0)], 2.0), (vec![(3, 2.0)], 1.0)],
        );
        packer.push(&mut csr, &[(vec![(9, 1.0), (0, 1.0)], 3.0)]);
        assert_eq!(csr.idx, vec![1, 3, 3, 0], "index 9 is beyond dim 8");
        assert_eq!(csr.val, vec![0.5, 1.0, 2.0, 1.0]);
        assert_eq!(csr.row_ptr, vec![0, 2, 3, 4]);
        assert_eq!(csr.y, vec![2.0, 1.0, 3.0]);
        assert_eq!(csr.touched, vec![1, 3, 0]);
        assert_eq!(
            csr.extents,
            vec![
                BatchExtent {
                    first_row: 0,
                    rows: 2,
                    first_touched: 0,
                    touched: 2
                },
                BatchExtent {
                    first_row: 2,
                    rows: 1,
                    first_touched: 2,
                    touched: 1
                },
            ]
        );
    }

    #[test]
    fn mlp_batches_touch_whole_rows_and_the_dense_layers() {
        let mut packer = CsrPacker::new(4, 2);
        let mut csr = CsrBatches::default();
        packer.push(&mut csr, &[(vec![(2, 1.0)], 0.0)]);
        // W1 row 2 = params 4, 5; b1 = 8, 9; w2 = 10, 11; b2 = 12.
        assert_eq!(csr.touched, vec![4, 5, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn padding_keeps_extents_and_fills_empty_arrays() {
        let mut packer = CsrPacker::new(4, 0);
        let mut csr = CsrBatches::default();
        packer.push(&mut csr, &[(vec![(7, 1.0)], 1.0)]);
        csr.pad();
        assert_eq!(csr.idx, vec![-1]);
        assert_eq!(csr.row_ptr, vec![0, 0]);
        assert_eq!(csr.touched, vec![0]);
        assert_eq!(csr.extents[0].touched, 0);
        assert!(csr.fits_i32());
    }
}
