//! A linear model on sparse features, trained by mini-batch SGD on squared
//! error (used on log run time).

use super::SparseFeatures;

/// Weights of a linear model, with the learning rate and an L2 penalty.
#[derive(Clone, Debug, PartialEq)]
pub struct LinearModel {
    /// One weight per feature dimension.
    pub weights: Vec<f32>,
    /// Step size.
    pub learning_rate: f32,
    /// L2 regularization strength.
    pub l2: f32,
    /// Samples trained on.
    pub samples: u64,
}

impl LinearModel {
    /// A zero model over `dim` dimensions.
    pub fn new(dim: u32, learning_rate: f32, l2: f32) -> Self {
        LinearModel {
            weights: vec![0.0; dim as usize],
            learning_rate,
            l2,
            samples: 0,
        }
    }

    /// The prediction for one sample.
    pub fn predict(&self, x: &SparseFeatures) -> f32 {
        x.iter()
            .map(|&(i, v)| self.weights.get(i as usize).copied().unwrap_or(0.0) * v)
            .sum()
    }

    /// Mean squared-error loss (halved) plus the L2 penalty over a batch,
    /// and its gradient with respect to the weights.
    pub fn loss_and_gradient(&self, batch: &[(SparseFeatures, f32)]) -> (f32, Vec<f32>) {
        let mut gradient = vec![0.0f32; self.weights.len()];
        if batch.is_empty() {
            return (0.0, gradient);
        }
        let n = batch.len() as f32;
        let mut loss = 0.0;
        for (x, y) in batch {
            let error = self.predict(x) - y;
            loss += 0.5 * error * error / n;
            for &(i, v) in x {
                if let Some(g) = gradient.get_mut(i as usize) {
                    *g += error * v / n;
                }
            }
        }
        for (g, w) in gradient.iter_mut().zip(&self.weights) {
            *g += self.l2 * w;
        }
        loss += 0.5 * self.l2 * self.weights.iter().map(|w| w * w).sum::<f32>();
        (loss, gradient)
    }

    /// One SGD step on a mini-batch; returns the batch loss before the step.
    /// Only the weights the batch touches (and the bias) move, so a step
    /// costs time proportional to the batch's non-zeros.
    pub fn train_batch(&mut self, batch: &[(SparseFeatures, f32)]) -> f32 {
        if batch.is_empty() {
            return 0.0;
        }
        let n = batch.len() as f32;
        let mut loss = 0.0;
        let errors: Vec<f32> = batch
            .iter()
            .map(|(x, y)| {
                let e = self.predict(x) - y;
                loss += 0.5 * e * e / n;
                e
            })
            .collect();
        for ((x, _), e) in batch.iter().zip(errors) {
            for &(i, v) in x {
                if let Some(w) = self.weights.get_mut(i as usize) {
                    *w -= self.learning_rate * (e * v / n + self.l2 * *w / n);
                }
            }
        }
        self.samples += batch.len() as u64;
        loss
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

    #[test]
    fn gradient_matches_finite_differences() {
        let h = FeatureHasher::new(64);
        let mut model = LinearModel::new(64, 0.1, 0.01);
        for (i, w) in model.weights.iter_mut().enumerate() {
            *w = (i as f32 * 0.37).sin() * 0.5;
        }
        let batch = vec![
            (sample(&h, "a", 1.5), 2.0),
            (sample(&h, "b", -0.5), -1.0),
            (sample(&h, "a", 3.0), 0.5),
        ];
        let (_, gradient) = model.loss_and_gradient(&batch);
        let eps = 1e-2;
        for (i, analytic) in gradient.iter().enumerate() {
            let mut plus = model.clone();
            plus.weights[i] += eps;
            let mut minus = model.clone();
            minus.weights[i] -= eps;
            let numeric = (plus.loss_and_gradient(&batch).0 - minus.loss_and_gradient(&batch).0)
                / (2.0 * eps);
            assert!(
                (numeric - analytic).abs() < 1e-3,
                "dimension {i}: numeric {numeric}, analytic {}",
                analytic
            );
        }
    }

    #[test]
    fn training_learns_a_known_relationship() {
        let h = FeatureHasher::new(256);
        let mut model = LinearModel::new(256, 0.05, 0.0);
        let target = |user: usize, size: f32| user as f32 * 0.5 + 0.8 * size + 1.0;
        let data: Vec<(SparseFeatures, f32)> = (0..4000)
            .map(|i| {
                let (user, size) = (i % 5, ((i * 7) % 11) as f32 / 5.0);
                (sample(&h, &format!("u{user}"), size), target(user, size))
            })
            .collect();
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
