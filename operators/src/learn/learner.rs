//! The learner: experiences in, versioned models with training metrics out.
//!
//! ```text
//!  Experience ─► ExperienceBatcher ─► RecordBatch (Arrow) ─► samples ─┬─► run-time Trainer (log run time, succeeded only)
//!                                                                     └─► failure Trainer (logistic, all)
//!        every `publish_every` mini-batches ─► Publication { ModelUpdate vN, metrics } per target
//! ```
//!
//! Each mini-batch is first scored with the model as it is (progressive
//! validation: the loss and errors are measured on data the model has not
//! trained on), then trained on. A [`Trainer`] runs the steps on the CPU
//! ([`CpuTrainer`]) or on a CUDA device ([`super::cuda::CudaTrainer`]);
//! [`open_trainer`] picks one from the configured device. The learner is
//! independent of timely; the dataflow operator that feeds it lives in the
//! dataflows crate.

use std::collections::BTreeMap;

use arrow_array::RecordBatch;

use super::batch::{from_record_batch, BatchError, ExperienceBatcher};
use super::features::{log_runtime_target, FeatureHasher, SparseFeatures, TaskFeatures};
use super::loss::Loss;
use super::model::{ModelError, ModelSpec, OnlineModel};
use super::settings::{DeviceChoice, LearnerSettings, SettingsError};
use crate::model::{Completion, Experience, ModelTarget, ModelUpdate, Name, Outcome};

/// Why the learner could not go on.
#[derive(Debug, thiserror::Error)]
pub enum LearnError {
    /// The settings are invalid.
    #[error("learner settings: {0}")]
    Settings(#[from] SettingsError),
    /// An experience batch could not be built or read.
    #[error(transparent)]
    Batch(#[from] BatchError),
    /// A model could not be rebuilt.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The accelerator failed or is missing.
    #[error("device {device}: {detail}")]
    Device {
        /// The device.
        device: String,
        /// What went wrong.
        detail: String,
    },
}

/// Runs training steps for one model somewhere.
pub trait Trainer {
    /// One optimizer step on a mini-batch. Returns the raw outputs of the
    /// model before the step, one per sample.
    fn train_batch(&mut self, batch: &[(SparseFeatures, f32)]) -> Result<Vec<f32>, LearnError>;

    /// The model as trained so far (copied back from the device if needed).
    fn model(&mut self) -> Result<&OnlineModel, LearnError>;

    /// Where the steps run, e.g. `cpu` or `cuda:0`.
    fn device(&self) -> String;
}

/// Training on the CPU.
#[derive(Debug)]
pub struct CpuTrainer {
    model: OnlineModel,
}

impl CpuTrainer {
    /// A fresh model on the CPU.
    pub fn new(spec: &ModelSpec) -> Self {
        CpuTrainer {
            model: OnlineModel::new(spec),
        }
    }
}

impl Trainer for CpuTrainer {
    fn train_batch(&mut self, batch: &[(SparseFeatures, f32)]) -> Result<Vec<f32>, LearnError> {
        let outputs = batch.iter().map(|(x, _)| self.model.raw(x)).collect();
        self.model.train_batch(batch);
        Ok(outputs)
    }

    fn model(&mut self) -> Result<&OnlineModel, LearnError> {
        Ok(&self.model)
    }

    fn device(&self) -> String {
        "cpu".to_string()
    }
}

/// A trainer on the configured device. `auto` uses CUDA device 0 when a
/// driver, NVRTC and a device are found and falls back to the CPU
/// otherwise (logging why); `cuda:N` fails if device N cannot be used.
pub fn open_trainer(
    device: DeviceChoice,
    spec: &ModelSpec,
) -> Result<Box<dyn Trainer>, LearnError> {
    match device {
        DeviceChoice::Cpu => Ok(Box::new(CpuTrainer::new(spec))),
        DeviceChoice::Cuda(ordinal) => Ok(Box::new(super::cuda::CudaTrainer::open(ordinal, spec)?)),
        DeviceChoice::Auto => match super::cuda::CudaTrainer::open(0, spec) {
            Ok(trainer) => Ok(Box::new(trainer)),
            Err(e) => {
                tracing::info!(reason = %e, "learner: no usable CUDA device, training on the CPU");
                Ok(Box::new(CpuTrainer::new(spec)))
            }
        },
    }
}

/// A model version ready to broadcast and store.
#[derive(Clone, Debug, PartialEq)]
pub struct Publication {
    /// The model.
    pub update: ModelUpdate,
    /// Training metrics: `batch_loss` and `mean_loss` (progressive), the
    /// samples and batches so far, `median_abs_log_error` (run time) or
    /// `accuracy` (failure) on the last batch, and `on_gpu`.
    pub metrics: BTreeMap<String, f64>,
}

/// The experience of a final completion: what was known at submission and
/// what happened. The queue is the task's QoS class; `executor_class` is
/// the class of the executor that ran it.
pub fn experience_from_completion(completion: &Completion, executor_class: &str) -> Experience {
    let task = &completion.task;
    Experience {
        task_kind: task.kind.clone(),
        tenant: task.tenant.clone(),
        cpu_milli: task.resources.cpu_milli,
        memory_mib: task.resources.memory_mib,
        gpu_milli: task.resources.gpu.milli(),
        requested_runtime_s: task.requested_runtime_s,
        queue: Name::from(task.qos.as_str()),
        hour_of_day: super::features::hour_of_day(task.submitted_at_us),
        payload_bytes: u32::try_from(task.payload_bytes()).unwrap_or(u32::MAX),
        executor_class: Name::from(executor_class),
        run_time_s: completion.run_time_us() as f64 / 1e6,
        succeeded: completion.outcome == Outcome::Succeeded,
        finished_at_ms: completion.finished_at_us / 1000,
    }
}

/// Progress of one target's model.
struct Track {
    target: ModelTarget,
    trainer: Box<dyn Trainer>,
    version: u64,
    batches: u64,
    loss_sum: f64,
    loss_count: f64,
    last: BTreeMap<String, f64>,
}

impl Track {
    fn new(target: ModelTarget, trainer: Box<dyn Trainer>) -> Self {
        Track {
            target,
            trainer,
            version: 0,
            batches: 0,
            loss_sum: 0.0,
            loss_count: 0.0,
            last: BTreeMap::new(),
        }
    }

    fn train(&mut self, samples: &[(SparseFeatures, f32)], loss: Loss) -> Result<(), LearnError> {
        if samples.is_empty() {
            return Ok(());
        }
        let outputs = self.trainer.train_batch(samples)?;
        let n = samples.len() as f64;
        let batch_loss = samples
            .iter()
            .zip(&outputs)
            .map(|((_, y), z)| f64::from(loss.value(*z, *y)))
            .sum::<f64>()
            / n;
        self.batches += 1;
        self.loss_sum += batch_loss * n;
        self.loss_count += n;
        self.last.clear();
        self.last.insert("batch_loss".into(), batch_loss);
        self.last.insert("batch_rows".into(), n);
        match loss {
            Loss::Logistic => {
                let right = samples
                    .iter()
                    .zip(&outputs)
                    .filter(|((_, y), z)| (**z > 0.0) == (*y > 0.5))
                    .count();
                self.last.insert("accuracy".into(), right as f64 / n);
            }
            Loss::Squared | Loss::Huber { .. } => {
                let mut errors: Vec<f64> = samples
                    .iter()
                    .zip(&outputs)
                    .map(|((_, y), z)| f64::from(z - y).abs())
                    .collect();
                errors.sort_by(f64::total_cmp);
                self.last
                    .insert("median_abs_log_error".into(), errors[errors.len() / 2]);
            }
        }
        Ok(())
    }

    fn publish(&mut self) -> Result<Option<Publication>, LearnError> {
        if self.batches == 0 {
            return Ok(None);
        }
        self.version += 1;
        let on_gpu = f64::from(u8::from(self.trainer.device() != "cpu"));
        let model = self.trainer.model()?;
        let mut metrics = self.last.clone();
        metrics.insert("mean_loss".into(), self.loss_sum / self.loss_count.max(1.0));
        metrics.insert("samples".into(), model.samples() as f64);
        metrics.insert("batches".into(), self.batches as f64);
        metrics.insert("on_gpu".into(), on_gpu);
        Ok(Some(Publication {
            update: model.to_update(self.target, self.version),
            metrics,
        }))
    }
}

/// Trains a run-time regressor and a failure classifier from experiences.
pub struct Learner {
    settings: LearnerSettings,
    hasher: FeatureHasher,
    batcher: ExperienceBatcher,
    run_time: Track,
    failure: Track,
    since_publish: u32,
    /// When the oldest pending experience arrived (caller's clock, ms).
    pending_since_ms: Option<u64>,
}

impl Learner {
    /// A learner with the configured device (see [`open_trainer`]).
    pub fn new(settings: &LearnerSettings) -> Result<Self, LearnError> {
        settings.validate()?;
        let run_time = open_trainer(
            settings.device,
            &settings.spec(super::model::loss_for(ModelTarget::RunTime), 1),
        )?;
        let failure = open_trainer(
            settings.device,
            &settings.spec(super::model::loss_for(ModelTarget::Failure), 2),
        )?;
        Self::with_trainers(settings, run_time, failure)
    }

    /// A learner over given trainers (for tests and benchmarks).
    pub fn with_trainers(
        settings: &LearnerSettings,
        run_time: Box<dyn Trainer>,
        failure: Box<dyn Trainer>,
    ) -> Result<Self, LearnError> {
        settings.validate()?;
        Ok(Learner {
            hasher: FeatureHasher::new(settings.feature_dim),
            batcher: ExperienceBatcher::new(settings.batch_size),
            run_time: Track::new(ModelTarget::RunTime, run_time),
            failure: Track::new(ModelTarget::Failure, failure),
            since_publish: 0,
            pending_since_ms: None,
            settings: settings.clone(),
        })
    }

    /// Where the run-time model trains.
    pub fn device(&self) -> String {
        self.run_time.trainer.device()
    }

    /// The hasher the published models expect.
    pub fn hasher(&self) -> FeatureHasher {
        self.hasher
    }

    /// Adds one experience; trains when a mini-batch is full and returns
    /// new versions when one is due.
    pub fn observe(&mut self, experience: Experience) -> Result<Vec<Publication>, LearnError> {
        match self.batcher.push(experience)? {
            Some(batch) => self.train_record_batch(&batch),
            None => Ok(Vec::new()),
        }
    }

    /// [`observe`](Self::observe) at time `now_ms`: also trains on a
    /// partial batch (and publishes) once its oldest experience has waited
    /// `max_batch_delay_ms`.
    pub fn observe_at(
        &mut self,
        experience: Experience,
        now_ms: u64,
    ) -> Result<Vec<Publication>, LearnError> {
        let since = *self.pending_since_ms.get_or_insert(now_ms);
        let published = self.observe(experience)?;
        if self.batcher.pending() == 0 {
            self.pending_since_ms = None;
            return Ok(published);
        }
        if now_ms.saturating_sub(since) >= self.settings.max_batch_delay_ms {
            self.pending_since_ms = None;
            let mut all = published;
            all.extend(self.flush()?);
            return Ok(all);
        }
        Ok(published)
    }

    /// Trains on whatever is pending and publishes if anything was trained
    /// since the last publication.
    pub fn flush(&mut self) -> Result<Vec<Publication>, LearnError> {
        if let Some(batch) = self.batcher.flush()? {
            self.train_only(&batch)?;
        }
        if self.since_publish == 0 {
            return Ok(Vec::new());
        }
        self.publish()
    }

    /// Trains both models on one record batch; publishes every
    /// `publish_every` batches.
    pub fn train_record_batch(
        &mut self,
        batch: &RecordBatch,
    ) -> Result<Vec<Publication>, LearnError> {
        self.train_only(batch)?;
        if self.since_publish >= self.settings.publish_every {
            self.publish()
        } else {
            Ok(Vec::new())
        }
    }

    fn train_only(&mut self, batch: &RecordBatch) -> Result<(), LearnError> {
        let experiences = from_record_batch(batch)?;
        let mut run_time = Vec::with_capacity(experiences.len());
        let mut failure = Vec::with_capacity(experiences.len());
        for e in &experiences {
            let x = TaskFeatures::from_experience(e).hash(&self.hasher);
            if e.succeeded {
                run_time.push((x.clone(), log_runtime_target(e.run_time_s)));
            }
            failure.push((x, if e.succeeded { 0.0 } else { 1.0 }));
        }
        self.run_time
            .train(&run_time, super::model::loss_for(ModelTarget::RunTime))?;
        self.failure
            .train(&failure, super::model::loss_for(ModelTarget::Failure))?;
        self.since_publish += 1;
        Ok(())
    }

    fn publish(&mut self) -> Result<Vec<Publication>, LearnError> {
        self.since_publish = 0;
        Ok([self.run_time.publish()?, self.failure.publish()?]
            .into_iter()
            .flatten()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experience(i: u32) -> Experience {
        let slow = i.is_multiple_of(2);
        Experience {
            task_kind: Name::from(if slow { "train" } else { "ping" }),
            tenant: Name::from("t"),
            cpu_milli: 1000,
            memory_mib: 128,
            gpu_milli: 0,
            requested_runtime_s: None,
            queue: Name::from("burstable"),
            hour_of_day: 3,
            payload_bytes: 10,
            executor_class: Name::from("default"),
            run_time_s: if slow { 20.0 } else { 0.05 },
            succeeded: !i.is_multiple_of(7) || !slow,
            finished_at_ms: u64::from(i),
        }
    }

    fn settings() -> LearnerSettings {
        LearnerSettings {
            enabled: true,
            device: DeviceChoice::Cpu,
            batch_size: 16,
            learning_rate: 0.05,
            publish_every: 4,
            feature_dim: 256,
            ..Default::default()
        }
    }

    #[test]
    fn publishes_versions_that_learn() {
        let mut learner = Learner::new(&settings()).expect("cpu learner");
        assert_eq!(learner.device(), "cpu");
        let mut publications = Vec::new();
        for i in 0..2000 {
            publications.extend(learner.observe(experience(i)).expect("observe"));
        }
        publications.extend(learner.flush().expect("flush"));
        let run_time: Vec<&Publication> = publications
            .iter()
            .filter(|p| p.update.target == ModelTarget::RunTime)
            .collect();
        // 2000 / 16 = 125 batches, a version every 4 batches, then the rest.
        assert_eq!(run_time.len(), 32);
        for (i, p) in run_time.iter().enumerate() {
            assert_eq!(p.update.version, i as u64 + 1);
        }
        let last = run_time.last().expect("published");
        assert!(
            last.metrics["median_abs_log_error"] < 0.3,
            "{:?}",
            last.metrics
        );
        assert!(last.metrics["batch_loss"] < run_time[0].metrics["batch_loss"]);
        let model = OnlineModel::from_update(&last.update, settings().optimizer_kind())
            .expect("valid update");
        let h = learner.hasher();
        let slow = TaskFeatures::from_experience(&experience(0)).hash(&h);
        let predicted = super::super::features::runtime_from_output(model.predict(&slow));
        assert!(
            (predicted / 20.0 - 1.0).abs() < 0.3,
            "predicted {predicted}"
        );
        let failure = publications
            .iter()
            .rfind(|p| p.update.target == ModelTarget::Failure)
            .expect("failure model");
        assert!(failure.metrics["accuracy"] > 0.8, "{:?}", failure.metrics);
        assert!(failure.metrics.contains_key("mean_loss"));
    }

    #[test]
    fn nothing_is_published_before_training() {
        let mut learner = Learner::new(&settings()).expect("cpu learner");
        assert!(learner.flush().expect("flush").is_empty());
        assert!(learner.observe(experience(1)).expect("observe").is_empty());
        let published = learner.flush().expect("flush");
        // Experience 1 succeeded: both models trained on one sample.
        assert_eq!(published.len(), 2);
    }

    #[test]
    fn slow_streams_train_partial_batches_after_the_delay() {
        let settings = LearnerSettings {
            max_batch_delay_ms: 1_000,
            ..settings()
        };
        let mut learner = Learner::new(&settings).expect("cpu learner");
        // Batch size 16: three experiences within the delay wait.
        for (i, at) in [(1, 0), (3, 400), (5, 900)] {
            assert!(learner
                .observe_at(experience(i), at)
                .expect("observe")
                .is_empty());
        }
        // The fourth arrives after the first has waited a second.
        let published = learner.observe_at(experience(7), 1_000).expect("observe");
        assert_eq!(published.len(), 2);
        assert_eq!(published[0].update.trained_samples, 4);
        // The clock restarts with the next pending experience.
        assert!(learner
            .observe_at(experience(9), 1_500)
            .expect("observe")
            .is_empty());
        assert_eq!(
            learner
                .observe_at(experience(11), 2_500)
                .expect("observe")
                .len(),
            2
        );
    }

    #[test]
    fn invalid_settings_are_refused() {
        let bad = LearnerSettings {
            batch_size: 0,
            ..settings()
        };
        assert!(matches!(
            Learner::new(&bad),
            Err(LearnError::Settings(SettingsError::Range {
                key: "batch_size",
                ..
            }))
        ));
    }
}
