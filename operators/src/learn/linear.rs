//! A linear model on sparse features, trained online in mini-batches: with
//! [`Loss::Squared`] or [`Loss::Huber`] a regressor (used on log run time),
//! with [`Loss::Logistic`] a logistic classifier (used on failure).
//!
//! A batch's gradient touches only the weights its features name (and the
//! bias), so a step costs time proportional to the batch's non-zeros; the
//! L2 penalty is applied to the touched weights only.

use super::loss::Loss;
use super::optim::{Optimizer, OptimizerKind};
use super::SparseFeatures;

/// Weights of a linear model, with its loss, L2 penalty and optimizer.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearModel {
    /// One weight per feature dimension.
    pub weights: Vec<f32>,
    /// What the output is scored against.
    pub loss: Loss,
    /// L2 regularization strength.
    pub l2: f32,
    /// Samples trained on.
    pub samples: u64,
    optimizer: Optimizer,
    gradient: Vec<f32>,
    touched: Vec<u32>,
    marked: Vec<bool>,
}

impl LinearModel {
    /// A zero squared-error regressor over `dim` dimensions, trained by SGD.
    pub fn new(dim: u32, learning_rate: f32, l2: f32) -> Self {
        Self::with(dim, Loss::Squared, OptimizerKind::Sgd { learning_rate }, l2)
    }

    /// A zero logistic classifier over `dim` dimensions, trained by SGD.
    pub fn logistic(dim: u32, learning_rate: f32, l2: f32) -> Self {
        Self::with(
            dim,
            Loss::Logistic,
            OptimizerKind::Sgd { learning_rate },
            l2,
        )
    }

    /// A zero model with the given loss and optimizer.
    pub fn with(dim: u32, loss: Loss, optimizer: OptimizerKind, l2: f32) -> Self {
        let dim = dim.max(1) as usize;
        LinearModel {
            weights: vec![0.0; dim],
            loss,
            l2,
            samples: 0,
            optimizer: Optimizer::new(optimizer, dim),
            gradient: vec![0.0; dim],
            touched: Vec::new(),
            marked: vec![false; dim],
        }
    }

    /// A model with the given weights (a published version), ready to
    /// predict or to train further.
    pub fn from_weights(weights: Vec<f32>, loss: Loss, optimizer: OptimizerKind, l2: f32) -> Self {
        let mut model = Self::with(weights.len() as u32, loss, optimizer, l2);
        model.weights = weights;
        model
    }

    /// The optimizer's settings.
    pub fn optimizer(&self) -> OptimizerKind {
        self.optimizer.kind()
    }

    /// The raw output (before the loss's link) for one sample.
    pub fn raw(&self, x: &SparseFeatures) -> f32 {
        x.iter()
            .map(|&(i, v)| self.weights.get(i as usize).copied().unwrap_or(0.0) * v)
            .sum()
    }

    /// The prediction for one sample: the raw output for regression, the
    /// probability of label 1 for the logistic loss.
    pub fn predict(&self, x: &SparseFeatures) -> f32 {
        self.loss.output(self.raw(x))
    }

    /// Mean loss plus the L2 penalty (halved, over every weight) over a
    /// batch, and its dense gradient with respect to the weights.
    pub fn loss_and_gradient(&self, batch: &[(SparseFeatures, f32)]) -> (f32, Vec<f32>) {
        let mut gradient = vec![0.0f32; self.weights.len()];
        if batch.is_empty() {
            return (0.0, gradient);
        }
        let n = batch.len() as f32;
        let mut loss = 0.0;
        for (x, y) in batch {
            let z = self.raw(x);
            loss += self.loss.value(z, *y) / n;
            let d = self.loss.derivative(z, *y) / n;
            for &(i, v) in x {
                if let Some(g) = gradient.get_mut(i as usize) {
                    *g += d * v;
                }
            }
        }
        for (g, w) in gradient.iter_mut().zip(&self.weights) {
            *g += self.l2 * w;
        }
        loss += 0.5 * self.l2 * self.weights.iter().map(|w| w * w).sum::<f32>();
        (loss, gradient)
    }

    /// One optimizer step on a mini-batch; returns the mean batch loss
    /// (without the penalty) before the step.
    pub fn train_batch(&mut self, batch: &[(SparseFeatures, f32)]) -> f32 {
        if batch.is_empty() {
            return 0.0;
        }
        let n = batch.len() as f32;
        let mut loss = 0.0;
        for (x, y) in batch {
            let z = self.raw(x);
            loss += self.loss.value(z, *y);
            let d = self.loss.derivative(z, *y) / n;
            for &(i, v) in x {
                let k = i as usize;
                if let (Some(g), Some(m)) = (self.gradient.get_mut(k), self.marked.get_mut(k)) {
                    *g += d * v;
                    if !*m {
                        *m = true;
                        self.touched.push(i);
                    }
                }
            }
        }
        for &i in &self.touched {
            let k = i as usize;
            self.gradient[k] += self.l2 * self.weights[k];
        }
        self.optimizer
            .step(&mut self.weights, &self.gradient, &self.touched);
        for &i in &self.touched {
            self.gradient[i as usize] = 0.0;
            self.marked[i as usize] = false;
        }
        self.touched.clear();
        self.samples += batch.len() as u64;
        loss / n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::FeatureHasher;

    fn sample(h: &FeatureHasher, user: &str, size: f32) -> SparseFeatures {
        let mut x = h.start();
        h.categorical(&mut x, "user", user);
        h.numeric(&mut x, "size", size);
        x
    }

    fn check_gradient(mut model: LinearModel, batch: &[(SparseFeatures, f32)]) {
        for (i, w) in model.weights.iter_mut().enumerate() {
            *w = (i as f32 * 0.37).sin() * 0.5;
        }
        let (_, gradient) = model.loss_and_gradient(batch);
        let eps = 1e-2;
        for (i, analytic) in gradient.iter().enumerate() {
            let mut plus = model.clone();
            plus.weights[i] += eps;
            let mut minus = model.clone();
            minus.weights[i] -= eps;
            let numeric =
                (plus.loss_and_gradient(batch).0 - minus.loss_and_gradient(batch).0) / (2.0 * eps);
            assert!(
                (numeric - analytic).abs() < 2e-3,
                "{:?} dimension {i}: numeric {numeric}, analytic {analytic}",
                model.loss
            );
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let h = FeatureHasher::new(64);
        let batch = vec![
            (sample(&h, "a", 1.5), 2.0),
            (sample(&h, "b", -0.5), -1.0),
            (sample(&h, "a", 3.0), 0.5),
        ];
        check_gradient(LinearModel::new(64, 0.1, 0.01), &batch);
        let huber = LinearModel::with(
            64,
            Loss::Huber { delta: 0.7 },
            OptimizerKind::Sgd { learning_rate: 0.1 },
            0.01,
        );
        check_gradient(huber, &batch);
    }

    #[test]
    fn logistic_gradient_matches_finite_differences() {
        let h = FeatureHasher::new(64);
        let batch = vec![
            (sample(&h, "a", 1.5), 1.0),
            (sample(&h, "b", -0.5), 0.0),
            (sample(&h, "c", 3.0), 1.0),
            (sample(&h, "a", -2.0), 0.0),
        ];
        check_gradient(LinearModel::logistic(64, 0.1, 0.01), &batch);
    }

    #[test]
    fn training_learns_a_known_relationship() {
        let h = FeatureHasher::new(256);
        let target = |user: usize, size: f32| user as f32 * 0.5 + 0.8 * size + 1.0;
        let data: Vec<(SparseFeatures, f32)> = (0..4000)
            .map(|i| {
                let (user, size) = (i % 5, ((i * 7) % 11) as f32 / 5.0);
                (sample(&h, &format!("u{user}"), size), target(user, size))
            })
            .collect();
        for mut model in [
            LinearModel::new(256, 0.05, 0.0),
            LinearModel::with(
                256,
                Loss::Squared,
                OptimizerKind::Adam {
                    learning_rate: 0.02,
                },
                0.0,
            ),
        ] {
            let first = model.loss_and_gradient(&data).0;
            for _ in 0..30 {
                for batch in data.chunks(32) {
                    model.train_batch(batch);
                }
            }
            let last = model.loss_and_gradient(&data).0;
            assert!(last < first * 0.01, "loss {first} -> {last}");
            let error = (model.predict(&sample(&h, "u3", 1.0)) - target(3, 1.0)).abs();
            assert!(error < 0.1, "prediction error {error}");
        }
    }

    #[test]
    fn logistic_learns_which_users_fail() {
        let h = FeatureHasher::new(128);
        let mut model = LinearModel::logistic(128, 0.5, 0.0);
        // User "bad" fails 90% of the time, "good" 10%.
        let data: Vec<(SparseFeatures, f32)> = (0..2000)
            .map(|i| {
                let bad = i % 2 == 0;
                let fails = if bad {
                    (i / 2) % 10 != 0
                } else {
                    (i / 2) % 10 == 1
                };
                let user = if bad { "bad" } else { "good" };
                (sample(&h, user, 0.0), if fails { 1.0 } else { 0.0 })
            })
            .collect();
        for _ in 0..20 {
            for batch in data.chunks(16) {
                model.train_batch(batch);
            }
        }
        let bad = model.predict(&sample(&h, "bad", 0.0));
        let good = model.predict(&sample(&h, "good", 0.0));
        assert!((bad - 0.9).abs() < 0.05, "bad {bad}");
        assert!((good - 0.1).abs() < 0.05, "good {good}");
    }
}
