//! Losses of the online models: what a raw model output is scored against.
//!
//! A model produces one raw output `z` per sample; the loss turns it into
//! a prediction ([`Loss::output`]), a per-sample loss ([`Loss::value`]) and
//! the loss's derivative with respect to `z` ([`Loss::derivative`]), which
//! is all that back-propagation needs.

use serde::{Deserialize, Serialize};

/// How a raw output is scored.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Loss {
    /// Half squared error; the output is `z` (regression).
    Squared,
    /// Huber loss with threshold `delta`: squared near the target, absolute
    /// beyond, so outliers pull less (robust regression).
    Huber {
        /// Where the loss turns from squared to absolute.
        delta: f32,
    },
    /// Log loss of a logistic model; the output is `sigmoid(z)`, the
    /// probability that the label is 1 (classification).
    Logistic,
}

/// The logistic function, computed without overflow.
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

impl Loss {
    /// The prediction for raw output `z`.
    pub fn output(self, z: f32) -> f32 {
        match self {
            Loss::Squared | Loss::Huber { .. } => z,
            Loss::Logistic => sigmoid(z),
        }
    }

    /// The loss of raw output `z` against target `y`.
    pub fn value(self, z: f32, y: f32) -> f32 {
        match self {
            Loss::Squared => 0.5 * (z - y) * (z - y),
            Loss::Huber { delta } => {
                let e = (z - y).abs();
                if e <= delta {
                    0.5 * e * e
                } else {
                    delta * (e - 0.5 * delta)
                }
            }
            // log(1 + e^z) - y z, stable for large |z|.
            Loss::Logistic => z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z,
        }
    }

    /// d value / d z.
    pub fn derivative(self, z: f32, y: f32) -> f32 {
        match self {
            Loss::Squared => z - y,
            Loss::Huber { delta } => (z - y).clamp(-delta, delta),
            Loss::Logistic => sigmoid(z) - y,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivatives_match_finite_differences() {
        let eps = 1e-3;
        for loss in [Loss::Squared, Loss::Huber { delta: 0.5 }, Loss::Logistic] {
            for &(z, y) in &[(0.3f32, 1.0f32), (-2.0, 0.0), (1.7, 0.0), (0.1, 0.2)] {
                let numeric = (loss.value(z + eps, y) - loss.value(z - eps, y)) / (2.0 * eps);
                let analytic = loss.derivative(z, y);
                assert!(
                    (numeric - analytic).abs() < 1e-2,
                    "{loss:?} at z={z} y={y}: {numeric} vs {analytic}"
                );
            }
        }
    }

    #[test]
    fn logistic_is_stable_for_large_outputs() {
        assert!(Loss::Logistic.value(100.0, 1.0).abs() < 1e-6);
        assert!((Loss::Logistic.value(-100.0, 1.0) - 100.0).abs() < 1e-3);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
    }
}
