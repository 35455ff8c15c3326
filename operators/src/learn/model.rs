//! One interface over the learner's models, and their publication as
//! [`ModelUpdate`]s.
//!
//! A [`ModelSpec`] says which model to build (linear or one-hidden-layer
//! MLP), over how many hashed dimensions, with which loss and optimizer.
//! [`OnlineModel`] trains on mini-batches of sparse samples and predicts;
//! [`OnlineModel::to_update`] flattens it into a versioned [`ModelUpdate`]
//! (`hidden_dim` 0 for linear) and [`OnlineModel::from_update`] rebuilds a
//! predictor from one, as the coordinators do.

use serde::{Deserialize, Serialize};

use super::linear::LinearModel;
use super::loss::Loss;
use super::mlp::{mlp_param_count, Mlp};
use super::optim::OptimizerKind;
use super::SparseFeatures;
use crate::model::{ModelTarget, ModelUpdate};

/// Which model family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// A linear model (linear regression, logistic regression).
    Linear,
    /// One hidden layer of `tanh` units.
    Mlp {
        /// Hidden units.
        hidden: u32,
    },
}

/// Everything needed to build a fresh model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// The family.
    pub kind: ModelKind,
    /// Hashed feature dimensions.
    pub dim: u32,
    /// The loss.
    pub loss: Loss,
    /// The optimizer.
    pub optimizer: OptimizerKind,
    /// L2 regularization strength.
    pub l2: f32,
    /// Seed of the MLP's initial weights.
    pub seed: u64,
}

/// The loss each published target is trained with, which fixes how its
/// raw output is read.
pub fn loss_for(target: ModelTarget) -> Loss {
    match target {
        ModelTarget::RunTime => Loss::Squared,
        ModelTarget::Failure => Loss::Logistic,
    }
}

/// Why a published model cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// The parameter vector does not fit the declared shape.
    #[error("model {target:?} v{version}: {got} parameters, expected {expected} for dim {dim} hidden {hidden}")]
    Shape {
        /// Target.
        target: ModelTarget,
        /// Version.
        version: u64,
        /// Parameters present.
        got: usize,
        /// Parameters the shape needs.
        expected: usize,
        /// Feature dimensions.
        dim: u32,
        /// Hidden units.
        hidden: u32,
    },
    /// A parameter is NaN or infinite.
    #[error("model {target:?} v{version}: parameter {index} is not finite")]
    NotFinite {
        /// Target.
        target: ModelTarget,
        /// Version.
        version: u64,
        /// The first bad parameter.
        index: usize,
    },
}

/// A model the learner trains and the coordinators query.
#[derive(Clone, Debug, PartialEq)]
pub enum OnlineModel {
    /// Linear.
    Linear(LinearModel),
    /// One hidden layer.
    Mlp(Mlp),
}

impl OnlineModel {
    /// A fresh model.
    pub fn new(spec: &ModelSpec) -> Self {
        match spec.kind {
            ModelKind::Linear => OnlineModel::Linear(LinearModel::with(
                spec.dim,
                spec.loss,
                spec.optimizer,
                spec.l2,
            )),
            ModelKind::Mlp { hidden } => OnlineModel::Mlp(Mlp::new(
                spec.dim,
                hidden,
                spec.loss,
                spec.optimizer,
                spec.l2,
                spec.seed,
            )),
        }
    }

    /// The prediction for one sample ([`Loss::output`] of the raw output).
    pub fn predict(&self, x: &SparseFeatures) -> f32 {
        match self {
            OnlineModel::Linear(m) => m.predict(x),
            OnlineModel::Mlp(m) => m.predict(x),
        }
    }

    /// The raw output for one sample.
    pub fn raw(&self, x: &SparseFeatures) -> f32 {
        match self {
            OnlineModel::Linear(m) => m.raw(x),
            OnlineModel::Mlp(m) => m.raw(x),
        }
    }

    /// One optimizer step; the mean batch loss before it.
    pub fn train_batch(&mut self, batch: &[(SparseFeatures, f32)]) -> f32 {
        match self {
            OnlineModel::Linear(m) => m.train_batch(batch),
            OnlineModel::Mlp(m) => m.train_batch(batch),
        }
    }

    /// Mean loss over a batch without changing the model.
    pub fn evaluate(&self, batch: &[(SparseFeatures, f32)]) -> f32 {
        if batch.is_empty() {
            return 0.0;
        }
        let loss = self.loss();
        batch
            .iter()
            .map(|(x, y)| loss.value(self.raw(x), *y))
            .sum::<f32>()
            / batch.len() as f32
    }

    /// The loss.
    pub fn loss(&self) -> Loss {
        match self {
            OnlineModel::Linear(m) => m.loss,
            OnlineModel::Mlp(m) => m.loss,
        }
    }

    /// Samples trained on.
    pub fn samples(&self) -> u64 {
        match self {
            OnlineModel::Linear(m) => m.samples,
            OnlineModel::Mlp(m) => m.samples,
        }
    }

    /// The flat parameters.
    pub fn params(&self) -> &[f32] {
        match self {
            OnlineModel::Linear(m) => &m.weights,
            OnlineModel::Mlp(m) => &m.params,
        }
    }

    /// Mutable flat parameters (for an accelerator to write back).
    pub fn params_mut(&mut self) -> &mut [f32] {
        match self {
            OnlineModel::Linear(m) => &mut m.weights,
            OnlineModel::Mlp(m) => &mut m.params,
        }
    }

    /// Feature dimensions and hidden units (0 for linear).
    pub fn shape(&self) -> (u32, u32) {
        match self {
            OnlineModel::Linear(m) => (m.weights.len() as u32, 0),
            OnlineModel::Mlp(m) => (m.dim(), m.hidden()),
        }
    }

    /// Counts `samples` trained elsewhere (on an accelerator).
    pub fn add_samples(&mut self, samples: u64) {
        match self {
            OnlineModel::Linear(m) => m.samples += samples,
            OnlineModel::Mlp(m) => m.samples += samples,
        }
    }

    /// Publishes the model as version `version` for `target`.
    pub fn to_update(&self, target: ModelTarget, version: u64) -> ModelUpdate {
        let (feature_dim, hidden_dim) = self.shape();
        ModelUpdate {
            version,
            target,
            feature_dim,
            hidden_dim,
            params: self.params().to_vec(),
            trained_samples: self.samples(),
        }
    }

    /// Rebuilds a model from a published version, checking its shape and
    /// values; it predicts as the learner's did (and can train further with
    /// `optimizer`).
    pub fn from_update(update: &ModelUpdate, optimizer: OptimizerKind) -> Result<Self, ModelError> {
        let (dim, hidden) = (update.feature_dim, update.hidden_dim);
        let expected = if hidden == 0 {
            dim as usize
        } else {
            mlp_param_count(dim, hidden)
        };
        if dim == 0 || update.params.len() != expected {
            return Err(ModelError::Shape {
                target: update.target,
                version: update.version,
                got: update.params.len(),
                expected,
                dim,
                hidden,
            });
        }
        if let Some(index) = update.params.iter().position(|p| !p.is_finite()) {
            return Err(ModelError::NotFinite {
                target: update.target,
                version: update.version,
                index,
            });
        }
        let loss = loss_for(update.target);
        let mut model = if hidden == 0 {
            OnlineModel::Linear(LinearModel::from_weights(
                update.params.clone(),
                loss,
                optimizer,
                0.0,
            ))
        } else {
            let mlp = Mlp::from_params(dim, hidden, update.params.clone(), loss, optimizer, 0.0)
                .map_err(|expected| ModelError::Shape {
                    target: update.target,
                    version: update.version,
                    got: update.params.len(),
                    expected,
                    dim,
                    hidden,
                })?;
            OnlineModel::Mlp(mlp)
        };
        model.add_samples(update.trained_samples);
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn published_models_predict_as_the_learner_did() {
        let sgd = OptimizerKind::Sgd { learning_rate: 0.1 };
        for kind in [ModelKind::Linear, ModelKind::Mlp { hidden: 4 }] {
            let spec = ModelSpec {
                kind,
                dim: 32,
                loss: Loss::Logistic,
                optimizer: sgd,
                l2: 0.0,
                seed: 5,
            };
            let mut model = OnlineModel::new(&spec);
            let batch = vec![
                (vec![(0, 1.0), (5, 1.0)], 1.0),
                (vec![(0, 1.0), (9, 1.0)], 0.0),
            ];
            for _ in 0..10 {
                model.train_batch(&batch);
            }
            let update = model.to_update(ModelTarget::Failure, 3);
            let copy = OnlineModel::from_update(&update, sgd).expect("valid");
            assert_eq!(copy.predict(&batch[0].0), model.predict(&batch[0].0));
            assert_eq!(copy.samples(), 20);
        }
    }

    #[test]
    fn malformed_updates_are_rejected() {
        let sgd = OptimizerKind::Sgd { learning_rate: 0.1 };
        let mut update = ModelUpdate {
            version: 1,
            target: ModelTarget::RunTime,
            feature_dim: 8,
            hidden_dim: 2,
            params: vec![0.0; 5],
            trained_samples: 0,
        };
        assert!(matches!(
            OnlineModel::from_update(&update, sgd),
            Err(ModelError::Shape { expected: 21, .. })
        ));
        update.params = vec![0.0; 21];
        update.params[3] = f32::NAN;
        assert_eq!(
            OnlineModel::from_update(&update, sgd),
            Err(ModelError::NotFinite {
                target: ModelTarget::RunTime,
                version: 1,
                index: 3
            })
        );
    }
}
