//! Online learning of task run times, on the CPU.
//!
//! Features known at submission are hashed into a sparse vector
//! ([`features`]); a linear model on log run time ([`linear`]) is trained
//! in mini-batches as outcomes arrive, and predicts run times that policies
//! use to order and backfill. The GPU path, the failure classifier and the
//! Arrow experience batches of the learning issue are not built yet.

pub mod features;
pub mod linear;

pub use features::{FeatureHasher, SparseFeatures};
pub use linear::LinearModel;
