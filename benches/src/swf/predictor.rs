//! The learned estimator's online run-time model: hashed features of what
//! a job declared at submission and of the history of finished jobs (the
//! user's last run times, the same request's last run time), trained on
//! each finished job's log run time.

use std::collections::HashMap;

use tidewater_operators::learn::{
    FeatureHasher, Loss, ModelKind, ModelSpec, OnlineModel, OptimizerKind, SparseFeatures,
};

use super::Job;

/// Scale of log run times inside the model (targets are ln(s) / 10).
const LOG_SCALE: f64 = 10.0;

/// Finished jobs per training step of the learned estimator.
const BATCH: usize = 4;

/// What is known of one user from the jobs of theirs that have finished.
#[derive(Default)]
struct UserHistory {
    /// The last two log run times, newest first.
    last: [Option<f64>; 2],
    /// Running mean of ln(run / requested).
    ratio_sum: f64,
    count: f64,
}

/// Online run-time predictor over the shared learning code
/// (`tidewater_operators::learn`): hashed categorical features and history
/// features into a linear model of ln(run / requested), trained with Adam
/// (step 0.01) on mini-batches of 4 finished jobs.
pub(super) struct Predictor {
    hasher: FeatureHasher,
    model: OnlineModel,
    users: HashMap<i64, UserHistory>,
    /// Last log run time by (user, requested time, processors).
    same_request: HashMap<(i64, u64, u32), f64>,
    batch: Vec<(SparseFeatures, f32)>,
}

fn log_bucket(x: f64) -> String {
    (x.max(1.0).log2().round() as i64).to_string()
}

impl Predictor {
    /// An untrained predictor.
    pub(super) fn new() -> Self {
        let dim = 1 << 14;
        Predictor {
            hasher: FeatureHasher::new(dim),
            model: OnlineModel::new(&ModelSpec {
                kind: ModelKind::Linear,
                dim,
                loss: Loss::Squared,
                optimizer: OptimizerKind::Adam {
                    learning_rate: 0.01,
                },
                l2: 1e-5,
                seed: 7,
            }),
            users: HashMap::new(),
            same_request: HashMap::new(),
            batch: Vec::new(),
        }
    }

    pub(super) fn features(&self, job: &Job) -> SparseFeatures {
        let h = &self.hasher;
        let mut x = h.start();
        let user = job.user.to_string();
        let requested = log_bucket(job.requested);
        h.categorical(&mut x, "user", &user);
        h.categorical(&mut x, "queue", &job.queue.to_string());
        h.categorical(
            &mut x,
            "hour",
            &(((job.submit / 3600.0) as i64) % 24).to_string(),
        );
        h.categorical(&mut x, "procs", &job.procs.next_power_of_two().to_string());
        h.categorical(&mut x, "requested", &requested);
        h.categorical(&mut x, "user_requested", &format!("{user}/{requested}"));
        let log_requested = job.requested.max(1.0).ln();
        h.numeric(&mut x, "log_requested", (log_requested / LOG_SCALE) as f32);
        h.numeric(
            &mut x,
            "log_procs",
            (f64::from(job.procs).ln() / 5.0) as f32,
        );
        // History, in the model's target space: ln(run / requested).
        let history = self.users.get(&job.user);
        let last: Vec<f64> = history
            .map(|u| u.last.iter().flatten().copied().collect())
            .unwrap_or_default();
        if last.is_empty() {
            h.numeric(&mut x, "user_unknown", 1.0);
        } else {
            let mean = last.iter().sum::<f64>() / last.len() as f64;
            h.numeric(
                &mut x,
                "user_last_two",
                ((mean - log_requested).min(0.0) / LOG_SCALE) as f32,
            );
        }
        if let Some(u) = history.filter(|u| u.count > 0.0) {
            h.numeric(
                &mut x,
                "user_mean_ratio",
                ((u.ratio_sum / u.count) / LOG_SCALE) as f32,
            );
        }
        match self
            .same_request
            .get(&(job.user, job.requested as u64, job.procs))
        {
            Some(&last) => h.numeric(
                &mut x,
                "same_request_last",
                ((last - log_requested).min(0.0) / LOG_SCALE) as f32,
            ),
            None => h.numeric(&mut x, "same_request_unknown", 1.0),
        }
        x
    }

    /// Predicted run time in seconds, within [1, requested]. The model
    /// predicts ln(run / requested): it starts at the user's estimate and
    /// learns how each kind of job departs from it.
    pub(super) fn predict(&self, job: &Job, x: &SparseFeatures) -> f64 {
        let log_ratio = f64::from(self.model.predict(x)) * LOG_SCALE;
        let seconds = (job.requested.max(1.0).ln() + log_ratio).exp();
        if seconds.is_finite() {
            seconds.clamp(1.0, job.requested.max(1.0))
        } else {
            job.requested
        }
    }

    /// Learns from a finished job, started with features `x`.
    pub(super) fn learn(&mut self, job: &Job, x: SparseFeatures) {
        let log_run = job.run.max(1.0).ln();
        let log_ratio = (log_run - job.requested.max(1.0).ln()).min(0.0);
        self.batch.push((x, (log_ratio / LOG_SCALE) as f32));
        if self.batch.len() >= BATCH {
            self.model.train_batch(&self.batch);
            self.batch.clear();
        }
        let user = self.users.entry(job.user).or_default();
        user.last = [Some(log_run), user.last[0]];
        user.ratio_sum += (log_run - job.requested.max(1.0).ln()).min(0.0);
        user.count += 1.0;
        self.same_request
            .insert((job.user, job.requested as u64, job.procs), log_run);
    }

    /// Samples the model has trained on.
    pub(super) fn samples(&self) -> u64 {
        self.model.samples()
    }
}
