//! Online learning of task run times and failures.
//!
//! ```text
//!  Experience (final completion) ──► ExperienceBatch (Arrow) ──► TaskFeatures ──► FeatureHasher
//!        ──► mini-batch ──► OnlineModel (linear | MLP; CPU, or CUDA) ──► ModelUpdate vN + metrics
//!        ──► coordinators (RunTimePredictor: order, backfill, deadlines) and the model registry
//! ```
//!
//! Features known at submission are hashed into a sparse vector
//! ([`features`]); a regressor on log run time and a logistic failure
//! classifier ([`linear`], [`mlp`], behind [`model::OnlineModel`]) are
//! trained in mini-batches ([`optim`], [`loss`]) by a [`learner::Learner`]
//! as outcomes arrive; each publication is a versioned
//! [`ModelUpdate`](crate::model::ModelUpdate) with training metrics.
//! [`predict`] turns a published model back into run-time predictions that
//! policies use to order, backfill and check deadlines.

pub mod batch;
pub mod cuda;
pub mod features;
pub mod learner;
pub mod linear;
pub mod loss;
pub mod mlp;
pub mod model;
pub mod optim;
pub mod predict;
pub mod settings;

pub use features::{FeatureHasher, SparseFeatures, TaskFeatures};
pub use linear::LinearModel;
pub use loss::Loss;
pub use mlp::Mlp;
pub use model::{ModelKind, ModelSpec, OnlineModel};
pub use optim::OptimizerKind;
