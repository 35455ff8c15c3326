//! A small multilayer perceptron: sparse hashed features, one hidden layer
//! of `tanh` units, one output scored by a [`Loss`]; trained online in
//! mini-batches by SGD or Adam.
//!
//! Parameters are one flat vector (the order published in
//! [`ModelUpdate::params`](crate::model::ModelUpdate)):
//!
//! ```text
//!  W1: dim × hidden, row i = the hidden weights of input i   [0, dim·h)
//!  b1: hidden                                                [dim·h, dim·h + h)
//!  w2: hidden                                                [dim·h + h, dim·h + 2h)
//!  b2: 1                                                     dim·h + 2h
//! ```
//!
//! A batch touches only the rows of `W1` its features name (and the other
//! layers), so a step costs time proportional to non-zeros × hidden.

use super::loss::Loss;
use super::optim::{Optimizer, OptimizerKind};
use super::SparseFeatures;

/// A one-hidden-layer perceptron.
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    dim: usize,
    hidden: usize,
    /// Flat parameters, in the order of the module documentation.
    pub params: Vec<f32>,
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

/// Parameters of an MLP over `dim` inputs with `hidden` units.
pub fn mlp_param_count(dim: u32, hidden: u32) -> usize {
    let (d, h) = (dim as usize, hidden as usize);
    d * h + 2 * h + 1
}

/// A deterministic uniform value in [-1, 1) (SplitMix64).
fn uniform(state: &mut u64) -> f32 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

impl Mlp {
    /// A randomly initialized network (deterministic in `seed`).
    pub fn new(
        dim: u32,
        hidden: u32,
        loss: Loss,
        optimizer: OptimizerKind,
        l2: f32,
        seed: u64,
    ) -> Self {
        let (d, h) = (dim.max(1) as usize, hidden.max(1) as usize);
        let mut params = vec![0.0f32; d * h + 2 * h + 1];
        let mut state = seed;
        for p in &mut params[..d * h] {
            *p = 0.1 * uniform(&mut state);
        }
        let scale = 1.0 / (h as f32).sqrt();
        for p in &mut params[d * h + h..d * h + 2 * h] {
            *p = scale * uniform(&mut state);
        }
        Self::build(d, h, params, loss, optimizer, l2)
    }

    /// A network with published parameters; `None` if their count does not
    /// match `dim` and `hidden`.
    pub fn from_params(
        dim: u32,
        hidden: u32,
        params: Vec<f32>,
        loss: Loss,
        optimizer: OptimizerKind,
        l2: f32,
    ) -> Result<Self, usize> {
        let expected = mlp_param_count(dim, hidden);
        if dim == 0 || hidden == 0 || params.len() != expected {
            return Err(expected);
        }
        Ok(Self::build(
            dim as usize,
            hidden as usize,
            params,
            loss,
            optimizer,
            l2,
        ))
    }

    fn build(
        dim: usize,
        hidden: usize,
        params: Vec<f32>,
        loss: Loss,
        optimizer: OptimizerKind,
        l2: f32,
    ) -> Self {
        let n = params.len();
        Mlp {
            dim,
            hidden,
            params,
            loss,
            l2,
            samples: 0,
            optimizer: Optimizer::new(optimizer, n),
            gradient: vec![0.0; n],
            touched: Vec::new(),
            marked: vec![false; dim],
        }
    }

    /// Input dimensions.
    pub fn dim(&self) -> u32 {
        self.dim as u32
    }

    /// Hidden units.
    pub fn hidden(&self) -> u32 {
        self.hidden as u32
    }

    /// The optimizer's settings.
    pub fn optimizer(&self) -> OptimizerKind {
        self.optimizer.kind()
    }

    fn b1(&self) -> usize {
        self.dim * self.hidden
    }

    fn w2(&self) -> usize {
        self.b1() + self.hidden
    }

    fn b2(&self) -> usize {
        self.w2() + self.hidden
    }

    /// Hidden activations into `h`, and the raw output.
    fn forward(&self, x: &SparseFeatures, h: &mut [f32]) -> f32 {
        let hidden = self.hidden;
        h.copy_from_slice(&self.params[self.b1()..self.b1() + hidden]);
        for &(i, v) in x {
            let i = i as usize;
            if i >= self.dim {
                continue;
            }
            let row = &self.params[i * hidden..(i + 1) * hidden];
            for (a, w) in h.iter_mut().zip(row) {
                *a += w * v;
            }
        }
        let w2 = &self.params[self.w2()..self.w2() + hidden];
        let mut z = self.params[self.b2()];
        for (a, w) in h.iter_mut().zip(w2) {
            *a = a.tanh();
            z += *a * w;
        }
        z
    }

    /// The raw output for one sample.
    pub fn raw(&self, x: &SparseFeatures) -> f32 {
        let mut h = vec![0.0; self.hidden];
        self.forward(x, &mut h)
    }

    /// The prediction for one sample (see [`Loss::output`]).
    pub fn predict(&self, x: &SparseFeatures) -> f32 {
        self.loss.output(self.raw(x))
    }

    /// Adds the gradient of one sample's loss (scaled by `scale`) into
    /// `gradient`; calls `touch` with each `W1` row it writes. Returns the
    /// sample's loss.
    fn backward(
        &self,
        x: &SparseFeatures,
        y: f32,
        scale: f32,
        h: &mut [f32],
        gradient: &mut [f32],
        mut touch: impl FnMut(usize),
    ) -> f32 {
        let hidden = self.hidden;
        let z = self.forward(x, h);
        let d = self.loss.derivative(z, y) * scale;
        let (b1, w2, b2) = (self.b1(), self.w2(), self.b2());
        gradient[b2] += d;
        for j in 0..hidden {
            gradient[w2 + j] += d * h[j];
            // Reuse h for the pre-activation gradient.
            h[j] = d * self.params[w2 + j] * (1.0 - h[j] * h[j]);
            gradient[b1 + j] += h[j];
        }
        for &(i, v) in x {
            let i = i as usize;
            if i >= self.dim {
                continue;
            }
            touch(i);
            let row = &mut gradient[i * hidden..(i + 1) * hidden];
            for (g, dh) in row.iter_mut().zip(h.iter()) {
                *g += dh * v;
            }
        }
        self.loss.value(z, y)
    }

    /// Mean loss plus the L2 penalty (halved, over every parameter) over a
    /// batch, and its dense gradient.
    pub fn loss_and_gradient(&self, batch: &[(SparseFeatures, f32)]) -> (f32, Vec<f32>) {
        let mut gradient = vec![0.0f32; self.params.len()];
        let mut loss = 0.0;
        if !batch.is_empty() {
            let n = batch.len() as f32;
            let mut h = vec![0.0; self.hidden];
            for (x, y) in batch {
                loss += self.backward(x, *y, 1.0 / n, &mut h, &mut gradient, |_| ()) / n;
            }
        }
        for (g, p) in gradient.iter_mut().zip(&self.params) {
            *g += self.l2 * p;
        }
        loss += 0.5 * self.l2 * self.params.iter().map(|p| p * p).sum::<f32>();
        (loss, gradient)
    }

    /// One optimizer step on a mini-batch; returns the mean batch loss
    /// (without the penalty) before the step.
    pub fn train_batch(&mut self, batch: &[(SparseFeatures, f32)]) -> f32 {
        if batch.is_empty() {
            return 0.0;
        }
        let n = batch.len() as f32;
        let mut h = vec![0.0; self.hidden];
        let mut gradient = std::mem::take(&mut self.gradient);
        let mut marked = std::mem::take(&mut self.marked);
        let mut rows = Vec::new();
        let mut loss = 0.0;
        for (x, y) in batch {
            loss += self.backward(x, *y, 1.0 / n, &mut h, &mut gradient, |i| {
                if !marked[i] {
                    marked[i] = true;
                    rows.push(i);
                }
            });
        }
        let hidden = self.hidden;
        self.touched.clear();
        for &i in &rows {
            marked[i] = false;
            self.touched
                .extend((i * hidden..(i + 1) * hidden).map(|k| k as u32));
        }
        self.touched
            .extend((self.b1()..self.params.len()).map(|k| k as u32));
        for &k in &self.touched {
            gradient[k as usize] += self.l2 * self.params[k as usize];
        }
        self.optimizer
            .step(&mut self.params, &gradient, &self.touched);
        for &k in &self.touched {
            gradient[k as usize] = 0.0;
        }
        self.gradient = gradient;
        self.marked = marked;
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

    fn check_gradient(model: &Mlp, batch: &[(SparseFeatures, f32)]) {
        let (_, gradient) = model.loss_and_gradient(batch);
        let eps = 1e-2;
        let mut checked = 0;
        for (i, analytic) in gradient.iter().enumerate() {
            let mut plus = model.clone();
            plus.params[i] += eps;
            let mut minus = model.clone();
            minus.params[i] -= eps;
            let numeric =
                (plus.loss_and_gradient(batch).0 - minus.loss_and_gradient(batch).0) / (2.0 * eps);
            assert!(
                (numeric - analytic).abs() < 3e-3,
                "{:?} parameter {i}: numeric {numeric}, analytic {analytic}",
                model.loss
            );
            checked += 1;
        }
        assert_eq!(checked, mlp_param_count(16, 4));
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let h = FeatureHasher::new(16);
        let regression = vec![
            (sample(&h, "a", 1.5), 2.0),
            (sample(&h, "b", -0.5), -1.0),
            (sample(&h, "a", 0.7), 0.5),
        ];
        let sgd = OptimizerKind::Sgd { learning_rate: 0.1 };
        let model = Mlp::new(16, 4, Loss::Squared, sgd, 0.01, 7);
        check_gradient(&model, &regression);
        let classification = vec![
            (sample(&h, "a", 1.5), 1.0),
            (sample(&h, "b", -0.5), 0.0),
            (sample(&h, "c", 0.3), 1.0),
        ];
        let model = Mlp::new(16, 4, Loss::Logistic, sgd, 0.01, 9);
        check_gradient(&model, &classification);
    }

    #[test]
    fn training_fits_an_interaction_a_linear_model_cannot() {
        // y = 1 when exactly one of two flags is set (XOR).
        let h = FeatureHasher::new(64);
        let point = |a: bool, b: bool| {
            let mut x = h.start();
            h.numeric(&mut x, "a", if a { 1.0 } else { -1.0 });
            h.numeric(&mut x, "b", if b { 1.0 } else { -1.0 });
            (x, if a != b { 1.0 } else { 0.0 })
        };
        let data: Vec<(SparseFeatures, f32)> = (0..400)
            .map(|i| point(i % 2 == 0, (i / 2) % 2 == 0))
            .collect();
        let mut model = Mlp::new(
            64,
            8,
            Loss::Squared,
            OptimizerKind::Adam {
                learning_rate: 0.02,
            },
            0.0,
            3,
        );
        for _ in 0..100 {
            for batch in data.chunks(16) {
                model.train_batch(batch);
            }
        }
        for (a, b) in [(false, false), (false, true), (true, false), (true, true)] {
            let (x, y) = point(a, b);
            let p = model.predict(&x);
            assert!((p - y).abs() < 0.15, "xor({a}, {b}) = {p}");
        }
        assert_eq!(model.samples, 40_000);
    }

    #[test]
    fn published_parameters_must_match_the_shape() {
        let sgd = OptimizerKind::Sgd { learning_rate: 0.1 };
        assert_eq!(
            Mlp::from_params(8, 2, vec![0.0; 3], Loss::Squared, sgd, 0.0).err(),
            Some(mlp_param_count(8, 2))
        );
        let model = Mlp::new(8, 2, Loss::Squared, sgd, 0.0, 1);
        let copy = Mlp::from_params(8, 2, model.params.clone(), Loss::Squared, sgd, 0.0)
            .expect("same shape");
        let x = vec![(0, 1.0), (3, 0.5)];
        assert_eq!(copy.raw(&x), model.raw(&x));
    }
}
