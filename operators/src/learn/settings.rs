//! The learner's settings (`[learner]` in the runtime's config), parsed and
//! validated with typed errors.
//!
//! ```toml
//! [learner]
//! enabled = true
//! device = "auto"        # "auto" | "cpu" | "cuda:N"
//! model = "linear"       # "linear" | "mlp"
//! hidden = 32            # MLP hidden units
//! batch_size = 64
//! learning_rate = 0.01
//! optimizer = "adam"     # "adam" | "sgd"
//! feature_dim = 4096
//! publish_every = 1      # publish a version every N mini-batches
//! max_batch_delay_ms = 10000  # train a partial batch when its oldest experience waited this long
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::loss::Loss;
use super::model::{ModelKind, ModelSpec};
use super::optim::OptimizerKind;

/// Where training runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The first CUDA device if a driver and a device are found, else the CPU.
    #[default]
    Auto,
    /// The CPU.
    Cpu,
    /// CUDA device `N` (an error at start if it cannot be opened).
    Cuda(usize),
}

/// Why a setting is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// `device` is not `auto`, `cpu` or `cuda:N`.
    #[error("device {0:?}: use \"auto\", \"cpu\" or \"cuda:N\"")]
    Device(String),
    /// A value is out of range.
    #[error("{key} = {value}: {detail}")]
    Range {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// The allowed range.
        detail: &'static str,
    },
}

impl FromStr for DeviceChoice {
    type Err = SettingsError;

    fn from_str(s: &str) -> Result<Self, SettingsError> {
        match s.trim() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| SettingsError::Device(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl Serialize for DeviceChoice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for DeviceChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Model family by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelChoice {
    /// Linear regression and logistic regression.
    #[default]
    Linear,
    /// One hidden layer.
    Mlp,
}

/// Update rule by name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerChoice {
    /// Adam.
    #[default]
    Adam,
    /// Plain SGD.
    Sgd,
}

/// The learner's settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearnerSettings {
    /// Whether the pipeline runs a learner.
    pub enabled: bool,
    /// Where training runs.
    pub device: DeviceChoice,
    /// Model family.
    pub model: ModelChoice,
    /// Hidden units of the MLP.
    pub hidden: u32,
    /// Experiences per mini-batch.
    pub batch_size: usize,
    /// Step size.
    pub learning_rate: f32,
    /// Update rule.
    pub optimizer: OptimizerChoice,
    /// L2 regularization strength.
    pub l2: f32,
    /// Hashed feature dimensions.
    pub feature_dim: u32,
    /// Publish a new version every this many mini-batches.
    pub publish_every: u32,
    /// When an experience arrives and the oldest one waiting for a full
    /// mini-batch has waited at least this long, train on the partial batch
    /// and publish (so a slow stream still yields versions).
    pub max_batch_delay_ms: u64,
}

impl Default for LearnerSettings {
    fn default() -> Self {
        LearnerSettings {
            enabled: false,
            device: DeviceChoice::Auto,
            model: ModelChoice::Linear,
            hidden: 32,
            batch_size: 64,
            learning_rate: 0.01,
            optimizer: OptimizerChoice::Adam,
            l2: 1e-6,
            feature_dim: 1 << 12,
            publish_every: 1,
            max_batch_delay_ms: 10_000,
        }
    }
}

impl LearnerSettings {
    /// Checks every value's range.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let range = |key, value: String, detail| SettingsError::Range { key, value, detail };
        if self.batch_size == 0 || self.batch_size > 1 << 20 {
            return Err(range(
                "batch_size",
                self.batch_size.to_string(),
                "must be in 1..=1048576",
            ));
        }
        if !(self.learning_rate.is_finite()
            && self.learning_rate > 0.0
            && self.learning_rate <= 10.0)
        {
            return Err(range(
                "learning_rate",
                self.learning_rate.to_string(),
                "must be in (0, 10]",
            ));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(range("l2", self.l2.to_string(), "must be finite and >= 0"));
        }
        if !(2..=1 << 24).contains(&self.feature_dim) {
            return Err(range(
                "feature_dim",
                self.feature_dim.to_string(),
                "must be in 2..=16777216",
            ));
        }
        if self.model == ModelChoice::Mlp {
            if !(1..=1024).contains(&self.hidden) {
                return Err(range(
                    "hidden",
                    self.hidden.to_string(),
                    "must be in 1..=1024",
                ));
            }
            if u64::from(self.feature_dim) * u64::from(self.hidden) > 1 << 28 {
                return Err(range(
                    "hidden",
                    self.hidden.to_string(),
                    "feature_dim × hidden must be at most 2^28 parameters",
                ));
            }
        }
        if self.publish_every == 0 {
            return Err(range(
                "publish_every",
                self.publish_every.to_string(),
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The model family.
    pub fn kind(&self) -> ModelKind {
        match self.model {
            ModelChoice::Linear => ModelKind::Linear,
            ModelChoice::Mlp => ModelKind::Mlp {
                hidden: self.hidden,
            },
        }
    }

    /// The update rule.
    pub fn optimizer_kind(&self) -> OptimizerKind {
        match self.optimizer {
            OptimizerChoice::Adam => OptimizerKind::Adam {
                learning_rate: self.learning_rate,
            },
            OptimizerChoice::Sgd => OptimizerKind::Sgd {
                learning_rate: self.learning_rate,
            },
        }
    }

    /// The spec of a model trained with `loss`.
    pub fn spec(&self, loss: Loss, seed: u64) -> ModelSpec {
        ModelSpec {
            kind: self.kind(),
            dim: self.feature_dim,
            loss,
            optimizer: self.optimizer_kind(),
            l2: self.l2,
            seed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() {
        assert_eq!("auto".parse(), Ok(DeviceChoice::Auto));
        assert_eq!("cpu".parse(), Ok(DeviceChoice::Cpu));
        assert_eq!("cuda:1".parse(), Ok(DeviceChoice::Cuda(1)));
        for bad in ["gpu", "cuda:", "cuda:x", "cuda:-1", ""] {
            assert_eq!(
                bad.parse::<DeviceChoice>(),
                Err(SettingsError::Device(bad.to_string()))
            );
        }
        assert_eq!(DeviceChoice::Cuda(3).to_string(), "cuda:3");
    }

    #[test]
    fn ranges_are_checked() {
        assert_eq!(LearnerSettings::default().validate(), Ok(()));
        let bad = [
            LearnerSettings {
                batch_size: 0,
                ..Default::default()
            },
            LearnerSettings {
                learning_rate: f32::NAN,
                ..Default::default()
            },
            LearnerSettings {
                model: ModelChoice::Mlp,
                hidden: 0,
                ..Default::default()
            },
            LearnerSettings {
                feature_dim: 1,
                ..Default::default()
            },
            LearnerSettings {
                publish_every: 0,
                ..Default::default()
            },
        ];
        for settings in bad {
            assert!(
                matches!(settings.validate(), Err(SettingsError::Range { .. })),
                "{settings:?}"
            );
        }
    }
}
