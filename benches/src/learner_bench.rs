//! Training throughput of the learner's models (`tidewater bench-learner`).
//!
//! Synthetic experiences (task kinds, tenants, sizes, run times with a known
//! structure) are featurized once with the learner's own
//! [`TaskFeatures`] hashing, then the model trains on mini-batches cycling
//! through them for a fixed number of samples, on `threads` threads: each
//! thread trains a replica on its own share of the batches and the replicas
//! are averaged at the end (one-shot parameter averaging). Featurization is
//! timed separately.
//!
//! With `device = cuda:N` one CUDA trainer takes the steps instead. By
//! default the batches are uploaded once and trained on from device memory
//! (`feed = device-resident`: the kernels' throughput, with no host packing
//! or PCIe transfer per step). With `host_batches` each step packs its
//! batch on the host, uploads it and reads the outputs back, as the
//! pipeline's learner does (`feed = host-batches`).

use std::time::Instant;

use serde::Serialize;

use tidewater_operators::learn::cuda::CudaTrainer;
use tidewater_operators::learn::features::log_runtime_target;
use tidewater_operators::learn::learner::{LearnError, Trainer};
use tidewater_operators::learn::settings::DeviceChoice;
use tidewater_operators::learn::{
    FeatureHasher, Loss, ModelKind, ModelSpec, OnlineModel, OptimizerKind, SparseFeatures,
    TaskFeatures,
};
use tidewater_operators::model::{Experience, Name};

/// What to measure.
#[derive(Clone, Debug)]
pub struct LearnerBenchOptions {
    /// `linear` or `mlp`.
    pub model: String,
    /// Hidden units for the MLP.
    pub hidden: u32,
    /// Samples to train on, in total.
    pub samples: usize,
    /// Samples per mini-batch.
    pub batch_size: usize,
    /// Training threads.
    pub threads: usize,
    /// Hashed feature dimensions.
    pub feature_dim: u32,
    /// `adam` or `sgd`.
    pub optimizer: String,
    /// `cpu`, `cuda:N`, or `auto` (the first CUDA device if any).
    pub device: String,
    /// On a CUDA device, pack and upload each batch per step instead of
    /// training on batches uploaded once.
    pub host_batches: bool,
}

impl Default for LearnerBenchOptions {
    fn default() -> Self {
        LearnerBenchOptions {
            model: "linear".into(),
            hidden: 32,
            samples: 5_000_000,
            batch_size: 256,
            threads: 2,
            feature_dim: 1 << 16,
            optimizer: "adam".into(),
            device: "cpu".into(),
            host_batches: false,
        }
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum LearnerBenchError {
    /// An option is out of range or unknown.
    #[error("bench-learner: {0}")]
    Invalid(String),
    /// A training thread panicked.
    #[error("bench-learner: a training thread failed")]
    Thread,
    /// The device could not be opened or failed.
    #[error("bench-learner: {0}")]
    Device(#[from] LearnError),
}

/// The measurement.
#[derive(Clone, Debug, Serialize)]
pub struct LearnerBenchReport {
    /// Model family (with hidden units for the MLP).
    pub model: String,
    /// Optimizer.
    pub optimizer: String,
    /// `cpu` or `cuda:N`.
    pub device: String,
    /// How batches reach the trainer: `host` (CPU), `device-resident` or
    /// `host-batches` (CUDA).
    pub feed: String,
    /// Training threads.
    pub threads: usize,
    /// Samples trained on.
    pub samples: usize,
    /// Samples per mini-batch.
    pub batch_size: usize,
    /// Mean non-zero features per sample.
    pub nnz_per_sample: f64,
    /// Training wall time, seconds.
    pub train_s: f64,
    /// Samples trained per second (all threads).
    pub samples_per_s: f64,
    /// Experiences featurized per second (one thread).
    pub featurize_per_s: f64,
    /// Mean squared error on the first 10,000 samples before training.
    pub loss_before: f64,
    /// The same after training (the averaged model).
    pub loss_after: f64,
}

fn experience(i: u64) -> Experience {
    let kind = i % 13;
    let tenant = (i / 13) % 97;
    let size = 1 + (i * 7919) % 64;
    // log run time: by kind, tenant and size, with some noise.
    let noise = ((i.wrapping_mul(2_654_435_761) >> 7) % 1000) as f64 / 1000.0 - 0.5;
    let log_run = kind as f64 * 0.4 + (tenant % 5) as f64 * 0.2 + (size as f64).ln() * 0.5 + noise;
    Experience {
        task_kind: Name::from(format!("kind-{kind}").as_str()),
        tenant: Name::from(format!("tenant-{tenant}").as_str()),
        cpu_milli: 250 * size as u32,
        memory_mib: 64 * size as u32,
        gpu_milli: if kind == 3 { 1000 } else { 0 },
        requested_runtime_s: kind
            .is_multiple_of(2)
            .then_some((log_run.exp() * 3.0) as u32 + 1),
        queue: Name::from(if kind < 6 { "burstable" } else { "best_effort" }),
        hour_of_day: (i % 24) as u8,
        payload_bytes: (size * 100) as u32,
        executor_class: Name::from(if kind == 3 { "gpu" } else { "cpu" }),
        run_time_s: log_run.exp(),
        succeeded: true,
        finished_at_ms: i,
    }
}

/// Runs the benchmark.
pub fn bench_learner(
    options: &LearnerBenchOptions,
) -> Result<LearnerBenchReport, LearnerBenchError> {
    let invalid = |s: String| Err(LearnerBenchError::Invalid(s));
    if options.samples == 0 || options.batch_size == 0 || options.threads == 0 {
        return invalid("samples, batch size and threads must be positive".into());
    }
    if options.feature_dim < 2 {
        return invalid("feature_dim must be at least 2".into());
    }
    let kind = match options.model.as_str() {
        "linear" => ModelKind::Linear,
        "mlp" if options.hidden > 0 => ModelKind::Mlp {
            hidden: options.hidden,
        },
        other => return invalid(format!("model {other:?}: use linear or mlp (hidden > 0)")),
    };
    let optimizer = match options.optimizer.as_str() {
        "adam" => OptimizerKind::Adam {
            learning_rate: 0.01,
        },
        "sgd" => OptimizerKind::Sgd {
            learning_rate: 0.05,
        },
        other => return invalid(format!("optimizer {other:?}: use adam or sgd")),
    };
    let spec = ModelSpec {
        kind,
        dim: options.feature_dim,
        loss: Loss::Squared,
        optimizer,
        l2: 1e-6,
        seed: 1,
    };

    // Featurize a pool of distinct experiences (timed), then cycle it.
    let hasher = FeatureHasher::new(options.feature_dim);
    let pool_size = options.samples.min(200_000);
    let experiences: Vec<Experience> = (0..pool_size as u64).map(experience).collect();
    let start = Instant::now();
    let pool: Vec<(SparseFeatures, f32)> = experiences
        .iter()
        .map(|e| {
            (
                TaskFeatures::from_experience(e).hash(&hasher),
                log_runtime_target(e.run_time_s),
            )
        })
        .collect();
    let featurize_per_s = pool_size as f64 / start.elapsed().as_secs_f64().max(1e-9);
    let nnz_per_sample = pool.iter().map(|(x, _)| x.len()).sum::<usize>() as f64 / pool_size as f64;
    let probe = &pool[..pool.len().min(10_000)];
    let loss_before = f64::from(OnlineModel::new(&spec).evaluate(probe));

    let batches: Vec<&[(SparseFeatures, f32)]> = pool.chunks(options.batch_size).collect();
    let total_batches = options.samples.div_ceil(options.batch_size);
    let device: DeviceChoice = options
        .device
        .parse()
        .map_err(|e| LearnerBenchError::Invalid(format!("{e}")))?;
    let cuda = match device {
        DeviceChoice::Cpu => None,
        DeviceChoice::Cuda(n) => Some(CudaTrainer::open(n, &spec)?),
        DeviceChoice::Auto => CudaTrainer::open(0, &spec).ok(),
    };
    let run = match cuda {
        Some(trainer) => train_on_cuda(trainer, &batches, total_batches, options.host_batches)?,
        None => train_on_cpu(&spec, &batches, total_batches, options.threads)?,
    };
    let loss_after = f64::from(run.model.evaluate(probe));
    Ok(LearnerBenchReport {
        model: match kind {
            ModelKind::Linear => "linear".into(),
            ModelKind::Mlp { hidden } => format!("mlp-{hidden}"),
        },
        optimizer: options.optimizer.clone(),
        device: run.device,
        feed: run.feed.into(),
        threads: run.threads,
        samples: run.samples,
        batch_size: options.batch_size,
        nnz_per_sample,
        train_s: run.train_s,
        samples_per_s: run.samples as f64 / run.train_s.max(1e-9),
        featurize_per_s,
        loss_before,
        loss_after,
    })
}

/// What one training run produced.
struct TrainingRun {
    model: OnlineModel,
    device: String,
    feed: &'static str,
    threads: usize,
    samples: usize,
    train_s: f64,
}

/// Trains one replica per thread on interleaved batches, then averages.
fn train_on_cpu(
    spec: &ModelSpec,
    batches: &[&[(SparseFeatures, f32)]],
    total_batches: usize,
    threads: usize,
) -> Result<TrainingRun, LearnerBenchError> {
    let start = Instant::now();
    let replicas: Vec<OnlineModel> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let mut model = OnlineModel::new(spec);
                    let mut b = t;
                    while b < total_batches {
                        model.train_batch(batches[b % batches.len()]);
                        b += threads;
                    }
                    model
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| LearnerBenchError::Thread))
            .collect::<Result<Vec<_>, _>>()
    })?;
    let train_s = start.elapsed().as_secs_f64();
    let samples: usize = replicas.iter().map(|m| m.samples() as usize).sum();
    let mut model = replicas[0].clone();
    let n = replicas.len() as f32;
    for (i, p) in model.params_mut().iter_mut().enumerate() {
        *p = replicas.iter().map(|m| m.params()[i]).sum::<f32>() / n;
    }
    Ok(TrainingRun {
        model,
        device: "cpu".into(),
        feed: "host",
        threads,
        samples,
        train_s,
    })
}

/// Trains on one CUDA device: one untimed warm-up step (the first launch
/// of each kernel loads it), then `total_batches` timed steps, waiting for
/// the last before the clock stops.
fn train_on_cuda(
    mut trainer: CudaTrainer,
    batches: &[&[(SparseFeatures, f32)]],
    total_batches: usize,
    host_batches: bool,
) -> Result<TrainingRun, LearnerBenchError> {
    let mut samples = 0;
    let train_s = if host_batches {
        trainer.train_batch(batches[0])?;
        let start = Instant::now();
        for b in 0..total_batches {
            let batch = batches[b % batches.len()];
            trainer.train_batch(batch)?;
            samples += batch.len();
        }
        start.elapsed().as_secs_f64()
    } else {
        let set = trainer.upload_batches(batches)?;
        trainer.train_resident(&set, 0)?;
        trainer.synchronize()?;
        let start = Instant::now();
        for b in 0..total_batches {
            let index = b % set.len();
            trainer.train_resident(&set, index)?;
            samples += set.rows(index);
        }
        trainer.synchronize()?;
        start.elapsed().as_secs_f64()
    };
    let device = trainer.device();
    Ok(TrainingRun {
        model: trainer.model()?.clone(),
        device,
        feed: if host_batches {
            "host-batches"
        } else {
            "device-resident"
        },
        threads: 1,
        samples,
        train_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_runs_train_and_report() {
        for model in ["linear", "mlp"] {
            let report = bench_learner(&LearnerBenchOptions {
                model: model.into(),
                hidden: 8,
                samples: 20_000,
                batch_size: 64,
                threads: 2,
                feature_dim: 1 << 12,
                optimizer: "adam".into(),
                device: "cpu".into(),
                host_batches: false,
            })
            .expect("runs");
            assert_eq!(report.samples, 20_000);
            assert_eq!(
                (report.device.as_str(), report.feed.as_str()),
                ("cpu", "host")
            );
            assert!(report.samples_per_s > 0.0);
            assert!(report.loss_after < report.loss_before, "{report:?}");
        }
        assert!(bench_learner(&LearnerBenchOptions {
            model: "forest".into(),
            ..Default::default()
        })
        .is_err());
        assert!(bench_learner(&LearnerBenchOptions {
            device: "tpu".into(),
            ..Default::default()
        })
        .is_err());
    }
}
