//! The JSON schema of a task submission.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::model::{
    GpuRequest, Name, QosClass, RejectReason, ResourceRequest, GPU_MILLI_PER_DEVICE,
};

/// A task as a client submits it. Unknown fields are an error, so that a
/// misspelt option is reported instead of silently ignored.
///
/// ```json
/// {"id": "job-1", "kind": "sleep", "payload": {"ms": 20},
///  "resources": {"cpu_milli": 500, "memory_mib": 256, "gpu_milli": 250, "gpu_models": ["A100"]},
///  "qos": "latency_sensitive", "priority": 5, "tenant": "acme",
///  "max_attempts": 3, "timeout_ms": 60000, "deadline_ms": 1795000000000}
/// ```
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSubmission {
    /// Unique id; generated when absent. Brokers should set it so that a
    /// redelivered message is recognised.
    #[serde(default)]
    pub id: Option<String>,
    /// Handler name.
    pub kind: String,
    /// Handler input, any JSON value.
    #[serde(default)]
    pub payload: Option<Box<RawValue>>,
    /// Resource request; defaults to 100 milli-CPU and no memory.
    #[serde(default)]
    pub resources: ResourcesSubmission,
    /// QoS class: `latency_sensitive`, `burstable` (default) or `best_effort`.
    #[serde(default)]
    pub qos: QosClass,
    /// Priority within the class; higher first.
    #[serde(default)]
    pub priority: i32,
    /// Latest acceptable start, milliseconds since the Unix epoch.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
    /// Owner; `default` when absent.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Total attempts allowed; 1 when absent.
    #[serde(default)]
    pub max_attempts: Option<u16>,
    /// Per-attempt timeout in milliseconds; one hour when absent.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// The submitter's run-time estimate in seconds.
    #[serde(default)]
    pub requested_runtime_s: Option<u32>,
    /// The submitting agent's name, for lineage.
    #[serde(default)]
    pub agent: Option<String>,
    /// Ids of the tasks whose results this one consumes, for lineage.
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// The resource request as submitted.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesSubmission {
    /// CPU in thousandths of a core; at least 1.
    #[serde(default = "default_cpu_milli")]
    pub cpu_milli: u32,
    /// Memory in MiB.
    #[serde(default)]
    pub memory_mib: u32,
    /// Whole GPUs.
    #[serde(default)]
    pub gpus: u8,
    /// A share of one GPU in thousandths (1..=1000); not with `gpus`.
    #[serde(default)]
    pub gpu_milli: u16,
    /// Allowed GPU models; empty means any.
    #[serde(default)]
    pub gpu_models: Vec<String>,
    /// Named custom resources.
    #[serde(default)]
    pub custom: BTreeMap<String, u64>,
}

impl ResourcesSubmission {
    /// The request this submission describes, or why it is invalid (both
    /// whole and fractional GPUs, or a share above one GPU).
    pub fn into_request(self) -> Result<ResourceRequest, RejectReason> {
        let invalid = |detail: String| RejectReason::InvalidValue {
            path: "resources.gpu_milli".into(),
            detail,
        };
        let gpu =
            match (self.gpus, self.gpu_milli) {
                (0, 0) => GpuRequest::None,
                (0, GPU_MILLI_PER_DEVICE) => GpuRequest::Whole(1),
                (0, m) if m < GPU_MILLI_PER_DEVICE => GpuRequest::Fraction(m),
                (0, m) => {
                    return Err(invalid(format!(
                        "{m} is more than one GPU (1000); ask for whole GPUs with `gpus`"
                    )))
                }
                (n, 0) => GpuRequest::Whole(n),
                (_, _) => return Err(invalid(
                    "set either `gpus` (whole devices) or `gpu_milli` (a share of one), not both"
                        .into(),
                )),
            };
        Ok(ResourceRequest {
            cpu_milli: self.cpu_milli,
            memory_mib: self.memory_mib,
            gpu,
            gpu_models: self.gpu_models.into_iter().map(Name::from).collect(),
            custom: self
                .custom
                .into_iter()
                .map(|(k, v)| (Name::from(k), v))
                .collect(),
        })
    }
}

fn default_cpu_milli() -> u32 {
    100
}

impl Default for ResourcesSubmission {
    fn default() -> Self {
        ResourcesSubmission {
            cpu_milli: default_cpu_milli(),
            memory_mib: 0,
            gpus: 0,
            gpu_milli: 0,
            gpu_models: Vec::new(),
            custom: BTreeMap::new(),
        }
    }
}
