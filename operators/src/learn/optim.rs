//! Optimizers: how a gradient moves parameters.
//!
//! Gradients of sparse models touch few parameters, so [`Optimizer::step`]
//! updates only the listed indices ("lazy" Adam keeps its moments only for
//! parameters that have been touched, and applies the bias correction of
//! the global step count).

use serde::{Deserialize, Serialize};

/// Which update rule, with its settings.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum OptimizerKind {
    /// Plain stochastic gradient descent.
    Sgd {
        /// Step size.
        learning_rate: f32,
    },
    /// Adam (Kingma and Ba) with the usual defaults for the betas.
    Adam {
        /// Step size.
        learning_rate: f32,
    },
}

impl OptimizerKind {
    /// The step size.
    pub fn learning_rate(self) -> f32 {
        match self {
            OptimizerKind::Sgd { learning_rate } | OptimizerKind::Adam { learning_rate } => {
                learning_rate
            }
        }
    }
}

/// Adam's first-moment decay.
pub const ADAM_BETA1: f32 = 0.9;
/// Adam's second-moment decay.
pub const ADAM_BETA2: f32 = 0.999;
/// Adam's denominator guard.
pub const ADAM_EPSILON: f32 = 1e-8;

/// An optimizer with its per-parameter state.
#[derive(Clone, Debug, PartialEq)]
pub struct Optimizer {
    kind: OptimizerKind,
    /// First moments (Adam only).
    m: Vec<f32>,
    /// Second moments (Adam only).
    v: Vec<f32>,
    steps: u64,
}

impl Optimizer {
    /// An optimizer for `params` parameters.
    pub fn new(kind: OptimizerKind, params: usize) -> Self {
        let moments = if matches!(kind, OptimizerKind::Adam { .. }) {
            params
        } else {
            0
        };
        Optimizer {
            kind,
            m: vec![0.0; moments],
            v: vec![0.0; moments],
            steps: 0,
        }
    }

    /// The update rule.
    pub fn kind(&self) -> OptimizerKind {
        self.kind
    }

    /// Steps taken.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Moves `params[i]` against `gradient[i]` for each `i` in `touched`
    /// (indices out of range are ignored).
    pub fn step(&mut self, params: &mut [f32], gradient: &[f32], touched: &[u32]) {
        self.steps += 1;
        match self.kind {
            OptimizerKind::Sgd { learning_rate } => {
                for &i in touched {
                    let i = i as usize;
                    if let (Some(p), Some(g)) = (params.get_mut(i), gradient.get(i)) {
                        *p -= learning_rate * g;
                    }
                }
            }
            OptimizerKind::Adam { learning_rate } => {
                let t = self.steps.min(i32::MAX as u64) as i32;
                let correction1 = 1.0 - ADAM_BETA1.powi(t);
                let correction2 = 1.0 - ADAM_BETA2.powi(t);
                let step = learning_rate * correction2.sqrt() / correction1;
                for &i in touched {
                    let i = i as usize;
                    let (Some(p), Some(&g), Some(m), Some(v)) = (
                        params.get_mut(i),
                        gradient.get(i),
                        self.m.get_mut(i),
                        self.v.get_mut(i),
                    ) else {
                        continue;
                    };
                    *m = ADAM_BETA1 * *m + (1.0 - ADAM_BETA1) * g;
                    *v = ADAM_BETA2 * *v + (1.0 - ADAM_BETA2) * g * g;
                    *p -= step * *m / (v.sqrt() + ADAM_EPSILON);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_rules_minimize_a_quadratic() {
        for kind in [
            OptimizerKind::Sgd { learning_rate: 0.1 },
            OptimizerKind::Adam {
                learning_rate: 0.05,
            },
        ] {
            let mut params = vec![3.0f32, -2.0];
            let mut optimizer = Optimizer::new(kind, 2);
            for _ in 0..2000 {
                let gradient: Vec<f32> = params.iter().map(|p| p - 1.0).collect();
                optimizer.step(&mut params, &gradient, &[0, 1]);
            }
            for p in params {
                assert!((p - 1.0).abs() < 1e-2, "{kind:?}: {p}");
            }
        }
    }

    #[test]
    fn untouched_parameters_do_not_move() {
        let mut params = vec![1.0f32, 1.0];
        let mut optimizer = Optimizer::new(OptimizerKind::Adam { learning_rate: 0.1 }, 2);
        optimizer.step(&mut params, &[1.0, 1.0], &[1, 7]);
        assert_eq!(params[0], 1.0);
        assert!(params[1] < 1.0);
    }
}
