//! Model updates broadcast from the learner to the coordinators.

use serde::{Deserialize, Serialize};

/// Which quantity a model predicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelTarget {
    /// Log run time in seconds.
    RunTime,
    /// Probability of failure.
    Failure,
}

/// A new version of a model: its parameters, flattened, and how to read them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelUpdate {
    /// Monotonically increasing version per target.
    pub version: u64,
    /// What the model predicts.
    pub target: ModelTarget,
    /// Width of the hashed feature vector the parameters expect.
    pub feature_dim: u32,
    /// Hidden width of the optional MLP layer; 0 means a linear model.
    pub hidden_dim: u32,
    /// Parameters, flattened in the learner's documented order.
    pub params: Vec<f32>,
    /// Samples the model has been trained on.
    pub trained_samples: u64,
}
