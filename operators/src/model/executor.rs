//! Executors: where tasks run, and what they can hold.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Name;

/// An executor's identifier.
pub type ExecutorId = Name;

/// One GPU device of an executor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GpuDevice {
    /// GPU model name (for example `V100M16`), matched against a task's
    /// allowed models.
    pub model: Name,
}

/// An executor's identity and capacity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecutorSpec {
    /// Unique identifier.
    pub id: ExecutorId,
    /// CPU capacity in thousandths of a core.
    pub cpu_milli: u64,
    /// Memory capacity in MiB.
    pub memory_mib: u64,
    /// GPU devices, each accounted separately.
    pub gpus: Vec<GpuDevice>,
    /// Named custom resources and their capacities.
    pub custom: BTreeMap<Name, u64>,
    /// Free-form labels (zone, class, ...); `class` names the executor class
    /// used as a learning feature.
    pub labels: BTreeMap<String, String>,
}

impl ExecutorSpec {
    /// A CPU-only executor.
    pub fn cpu(id: impl Into<ExecutorId>, cpu_milli: u64, memory_mib: u64) -> Self {
        ExecutorSpec {
            id: id.into(),
            cpu_milli,
            memory_mib,
            gpus: Vec::new(),
            custom: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }

    /// Adds `count` GPUs of `model`.
    pub fn with_gpus(mut self, count: usize, model: &str) -> Self {
        self.gpus.extend((0..count).map(|_| GpuDevice {
            model: Name::from(model),
        }));
        self
    }

    /// Adds a custom resource capacity.
    pub fn with_custom(mut self, name: &str, amount: u64) -> Self {
        self.custom.insert(Name::from(name), amount);
        self
    }

    /// The executor's class label, or `default`.
    pub fn class(&self) -> &str {
        self.labels.get("class").map_or("default", String::as_str)
    }
}
