//! Feature hashing: categorical and numeric features into a sparse vector,
//! and the fixed feature set of a task ([`TaskFeatures`]) that the learner
//! trains on and the coordinators predict with.

use crate::model::{Experience, Task};

/// A sparse feature vector: (index, value) pairs.
pub type SparseFeatures = Vec<(u32, f32)>;

/// Hashes named features into a fixed number of dimensions. Index 0 is the
/// bias; categorical values hash to one dimension with value 1; numeric
/// features take a dimension by name.
#[derive(Clone, Copy, Debug)]
pub struct FeatureHasher {
    dim: u32,
}

impl FeatureHasher {
    /// A hasher into `dim` dimensions (at least 2).
    pub fn new(dim: u32) -> Self {
        FeatureHasher { dim: dim.max(2) }
    }

    /// Dimensions.
    pub fn dim(&self) -> u32 {
        self.dim
    }

    fn index(&self, name: &str, value: &str) -> u32 {
        // FNV-1a: stable across runs and platforms.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes().chain([0xff]).chain(value.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        1 + (h % u64::from(self.dim - 1)) as u32
    }

    /// Starts a vector with the bias term.
    pub fn start(&self) -> SparseFeatures {
        vec![(0, 1.0)]
    }

    /// Adds a categorical feature `name = value`.
    pub fn categorical(&self, features: &mut SparseFeatures, name: &str, value: &str) {
        features.push((self.index(name, value), 1.0));
    }

    /// Adds a numeric feature.
    pub fn numeric(&self, features: &mut SparseFeatures, name: &str, value: f32) {
        features.push((self.index(name, ""), value));
    }
}

/// Buckets a non-negative quantity by powers of two, for categorical use.
fn log2_bucket(x: f64) -> u32 {
    if x < 1.0 {
        0
    } else {
        x.log2() as u32 + 1
    }
}

/// What is known of a task when it is placed: the learner's inputs. Built
/// from an [`Experience`] when training and from a
/// [`Task`](crate::model::Task) when predicting, so both see the same
/// features.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TaskFeatures<'a> {
    /// Task kind.
    pub kind: &'a str,
    /// Tenant or user.
    pub tenant: &'a str,
    /// Class of the executor that runs it (empty when not yet known).
    pub executor_class: &'a str,
    /// Queue or source.
    pub queue: &'a str,
    /// Hour of day at submission (UTC).
    pub hour_of_day: u8,
    /// Requested CPU, thousandths of a core.
    pub cpu_milli: u32,
    /// Requested memory, MiB.
    pub memory_mib: u32,
    /// Requested GPU, thousandths.
    pub gpu_milli: u32,
    /// The submitter's run-time estimate, seconds.
    pub requested_runtime_s: Option<u32>,
    /// Payload size, bytes.
    pub payload_bytes: u32,
}

impl<'a> TaskFeatures<'a> {
    /// The features of a finished task.
    pub fn from_experience(e: &'a Experience) -> Self {
        TaskFeatures {
            kind: &e.task_kind,
            tenant: &e.tenant,
            executor_class: &e.executor_class,
            queue: &e.queue,
            hour_of_day: e.hour_of_day,
            cpu_milli: e.cpu_milli,
            memory_mib: e.memory_mib,
            gpu_milli: e.gpu_milli,
            requested_runtime_s: e.requested_runtime_s,
            payload_bytes: e.payload_bytes,
        }
    }

    /// The features of a task about to be placed on an executor of
    /// `executor_class`, from `queue`.
    pub fn from_task(task: &'a Task, queue: &'a str, executor_class: &'a str) -> Self {
        TaskFeatures {
            kind: &task.kind,
            tenant: &task.tenant,
            executor_class,
            queue,
            hour_of_day: hour_of_day(task.submitted_at_us),
            cpu_milli: task.resources.cpu_milli,
            memory_mib: task.resources.memory_mib,
            gpu_milli: task.resources.gpu.milli(),
            requested_runtime_s: task.requested_runtime_s,
            payload_bytes: u32::try_from(task.payload_bytes()).unwrap_or(u32::MAX),
        }
    }

    /// Hashes the features: each field as a category (sizes by power of
    /// two), kind × tenant, and log-scaled numeric sizes.
    pub fn hash(&self, h: &FeatureHasher) -> SparseFeatures {
        let mut x = h.start();
        let mut text = String::with_capacity(32);
        let mut category = |x: &mut SparseFeatures, name: &str, value: std::fmt::Arguments| {
            use std::fmt::Write;
            text.clear();
            let _ = text.write_fmt(value);
            h.categorical(x, name, &text);
        };
        category(&mut x, "kind", format_args!("{}", self.kind));
        category(&mut x, "tenant", format_args!("{}", self.tenant));
        category(
            &mut x,
            "kind_tenant",
            format_args!("{}/{}", self.kind, self.tenant),
        );
        category(&mut x, "executor", format_args!("{}", self.executor_class));
        category(&mut x, "queue", format_args!("{}", self.queue));
        category(&mut x, "hour", format_args!("{}", self.hour_of_day));
        category(
            &mut x,
            "cpu",
            format_args!("{}", log2_bucket(f64::from(self.cpu_milli))),
        );
        category(
            &mut x,
            "mem",
            format_args!("{}", log2_bucket(f64::from(self.memory_mib))),
        );
        category(
            &mut x,
            "gpu",
            format_args!("{}", log2_bucket(f64::from(self.gpu_milli))),
        );
        category(
            &mut x,
            "payload",
            format_args!("{}", log2_bucket(f64::from(self.payload_bytes))),
        );
        match self.requested_runtime_s {
            Some(s) => {
                category(
                    &mut x,
                    "requested",
                    format_args!("{}", log2_bucket(f64::from(s))),
                );
                h.numeric(
                    &mut x,
                    "log_requested",
                    (f64::from(s) + 1.0).ln() as f32 / 10.0,
                );
            }
            None => category(&mut x, "requested", format_args!("none")),
        }
        h.numeric(
            &mut x,
            "log_payload",
            (f64::from(self.payload_bytes) + 1.0).ln() as f32 / 20.0,
        );
        x
    }
}

/// Hour of day (UTC) of a time in microseconds since the Unix epoch.
pub fn hour_of_day(at_us: u64) -> u8 {
    ((at_us / 3_600_000_000) % 24) as u8
}

/// The run-time model's target for a run time in seconds: ln of it, with
/// run times under a millisecond counted as a millisecond.
pub fn log_runtime_target(run_time_s: f64) -> f32 {
    run_time_s.max(1e-3).ln() as f32
}

/// Seconds from the run-time model's output (the inverse of
/// [`log_runtime_target`], bounded to [1 ms, 1 year]).
pub fn runtime_from_output(output: f32) -> f64 {
    f64::from(output).clamp(1e-3f64.ln(), (3.2e7f64).ln()).exp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Name, ResourceRequest};

    fn experience() -> Experience {
        Experience {
            task_kind: Name::from("train"),
            tenant: Name::from("alice"),
            cpu_milli: 2000,
            memory_mib: 512,
            gpu_milli: 0,
            requested_runtime_s: Some(60),
            queue: Name::from("http"),
            hour_of_day: 0,
            payload_bytes: 0,
            executor_class: Name::from("cpu"),
            run_time_s: 12.0,
            succeeded: true,
            finished_at_ms: 0,
        }
    }

    #[test]
    fn task_and_experience_hash_alike() {
        let h = FeatureHasher::new(1 << 12);
        let e = experience();
        let mut task = Task::new("t", "train", ResourceRequest::cpu(2000, 512));
        task.tenant = Name::from("alice");
        task.requested_runtime_s = Some(60);
        let a = TaskFeatures::from_experience(&e).hash(&h);
        let b = TaskFeatures::from_task(&task, "http", "cpu").hash(&h);
        assert_eq!(a, b);
        assert!(a.iter().all(|&(i, _)| i < h.dim()));
        let other = TaskFeatures::from_task(&task, "http", "gpu").hash(&h);
        assert_ne!(a, other);
    }

    #[test]
    fn runtime_targets_round_trip() {
        for s in [0.01, 1.0, 3600.0] {
            let back = runtime_from_output(log_runtime_target(s));
            assert!((back - s).abs() / s < 1e-4, "{s} -> {back}");
        }
        assert!((runtime_from_output(f32::NEG_INFINITY) - 1e-3).abs() < 1e-9);
    }
}
