//! Resource requests and quality-of-service classes.

use serde::{Deserialize, Serialize};

use super::Name;

/// A whole GPU is 1000 thousandths; fractional requests share one device.
pub const GPU_MILLI_PER_DEVICE: u16 = 1000;

/// The GPU part of a request: nothing, a share of one device, or whole devices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GpuRequest {
    /// No GPU.
    #[default]
    None,
    /// A share of one device in thousandths (1..=999); several tasks may share
    /// the device as long as their shares sum to at most 1000.
    Fraction(u16),
    /// This many whole devices, each used exclusively.
    Whole(u8),
}

impl GpuRequest {
    /// The request in thousandths of a GPU (whole devices count 1000 each).
    pub fn milli(&self) -> u32 {
        match *self {
            GpuRequest::None => 0,
            GpuRequest::Fraction(m) => u32::from(m),
            GpuRequest::Whole(n) => u32::from(n) * u32::from(GPU_MILLI_PER_DEVICE),
        }
    }
}

/// What a task needs from the executor that runs it. Validated on decode:
/// every value here is within range.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceRequest {
    /// CPU in thousandths of a core (at least 1).
    pub cpu_milli: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// GPUs: none, a share of one, or whole devices.
    pub gpu: GpuRequest,
    /// Allowed GPU models; empty means any model.
    pub gpu_models: Box<[Name]>,
    /// Named custom resources (licences, ports, ...) and the amounts needed.
    pub custom: Box<[(Name, u64)]>,
}

impl ResourceRequest {
    /// A CPU-only request.
    pub fn cpu(cpu_milli: u32, memory_mib: u32) -> Self {
        ResourceRequest {
            cpu_milli,
            memory_mib,
            ..Default::default()
        }
    }

    /// Whether a GPU of `model` satisfies the request's model constraint.
    pub fn allows_gpu_model(&self, model: &str) -> bool {
        self.gpu_models.is_empty() || self.gpu_models.iter().any(|m| m == model)
    }
}

/// Quality-of-service class; the coordinator serves classes in this order.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum QosClass {
    /// Served first: interactive, latency-sensitive work ("LS" in traces).
    #[serde(alias = "LS", alias = "ls")]
    LatencySensitive,
    /// Served second ("Burstable" in traces).
    #[serde(alias = "Burstable")]
    #[default]
    Burstable,
    /// Served last ("BE" in traces).
    #[serde(alias = "BE", alias = "be")]
    BestEffort,
}

impl QosClass {
    /// The class's name as used in metrics and configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            QosClass::LatencySensitive => "latency_sensitive",
            QosClass::Burstable => "burstable",
            QosClass::BestEffort => "best_effort",
        }
    }
}
