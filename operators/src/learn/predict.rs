//! Using a published run-time model in scheduling decisions.
//!
//! A coordinator holds the newest [`ModelUpdate`] per target
//! (`CoordinatorState::model`); [`ModelPredictor::from_update`] rebuilds it
//! into a [`RunTimePredictor`]. Policies then:
//!
//! - order a queue shortest-predicted-first ([`order_by_predicted_runtime`]);
//! - pick backfill candidates that finish before the queue head's
//!   reservation ([`backfill_candidates`], EASY backfilling with predicted
//!   rather than requested run times);
//! - check a deadline: a task's `deadline_ms` is the latest time it may
//!   *start* (the allocator rejects it once passed), so a plan is feasible
//!   when the predicted start is no later ([`deadline_feasible`]); whether
//!   it finishes before another task's reservation is [`completes_by`].
//!
//! [`coordinator_predictor`] gives a coordinator's current predictor. The
//! live allocator orders its queue by these predictions under
//! `allocator.queue_order = "shortest_predicted_first"`
//! ([`crate::allocate::QueueOrder`]); the HPC2N replay uses the backfill
//! and deadline helpers.

use super::features::{runtime_from_output, FeatureHasher, TaskFeatures};
use super::model::{ModelError, OnlineModel};
use super::optim::OptimizerKind;
use crate::dataflow::CoordinatorState;
use crate::model::{ModelTarget, ModelUpdate, Task};

/// Predicts how long a task will run.
pub trait RunTimePredictor {
    /// Predicted run time in seconds on an executor of `executor_class`,
    /// or `None` when the predictor cannot say.
    fn predict_runtime_s(&self, task: &Task, executor_class: &str) -> Option<f64>;
}

/// The user's own estimate (`requested_runtime_s`): the baseline predictor.
#[derive(Clone, Copy, Debug, Default)]
pub struct RequestedRuntime;

impl RunTimePredictor for RequestedRuntime {
    fn predict_runtime_s(&self, task: &Task, _executor_class: &str) -> Option<f64> {
        task.requested_runtime_s.map(f64::from)
    }
}

/// A published run-time model.
#[derive(Clone, Debug)]
pub struct ModelPredictor {
    model: OnlineModel,
    hasher: FeatureHasher,
    version: u64,
}

impl ModelPredictor {
    /// Rebuilds a run-time model; other targets and malformed parameters
    /// are refused.
    pub fn from_update(update: &ModelUpdate) -> Result<Self, ModelError> {
        if update.target != ModelTarget::RunTime {
            return Err(ModelError::Shape {
                target: update.target,
                version: update.version,
                got: update.params.len(),
                expected: 0,
                dim: update.feature_dim,
                hidden: update.hidden_dim,
            });
        }
        let model = OnlineModel::from_update(update, OptimizerKind::Sgd { learning_rate: 0.0 })?;
        Ok(ModelPredictor {
            model,
            hasher: FeatureHasher::new(update.feature_dim),
            version: update.version,
        })
    }

    /// The model version.
    pub fn version(&self) -> u64 {
        self.version
    }
}

impl RunTimePredictor for ModelPredictor {
    fn predict_runtime_s(&self, task: &Task, executor_class: &str) -> Option<f64> {
        let x = TaskFeatures::from_task(task, task.qos.as_str(), executor_class).hash(&self.hasher);
        let seconds = runtime_from_output(self.model.predict(&x));
        if !seconds.is_finite() {
            return None;
        }
        // A prediction beyond the user's own limit is capped by it: the task
        // is stopped there.
        Some(match task.requested_runtime_s {
            Some(limit) => seconds.min(f64::from(limit.max(1))),
            None => seconds,
        })
    }
}

/// The run-time predictor for the newest run-time model `coordinator`
/// holds: `None` before any has arrived, an error if it is malformed.
pub fn coordinator_predictor(
    coordinator: &CoordinatorState,
) -> Option<Result<ModelPredictor, ModelError>> {
    coordinator
        .model(ModelTarget::RunTime)
        .map(ModelPredictor::from_update)
}

/// Sorts `tasks` shortest-predicted-first; tasks without a prediction keep
/// their relative order after those with one.
pub fn order_by_predicted_runtime<P: RunTimePredictor + ?Sized>(
    tasks: &mut [Task],
    predictor: &P,
    executor_class: &str,
) {
    tasks.sort_by_cached_key(|t| {
        let p = predictor.predict_runtime_s(t, executor_class);
        // Total order on f64 via its bits (predictions are non-negative).
        (p.is_none(), p.map_or(0, |s| s.max(0.0).to_bits()))
    });
}

/// Whether a task predicted to start at `predicted_start_ms` meets its
/// start deadline `deadline_ms` (no deadline: true).
pub fn deadline_feasible(predicted_start_ms: u64, deadline_ms: Option<u64>) -> bool {
    deadline_ms.is_none_or(|deadline| predicted_start_ms <= deadline)
}

/// Whether a task starting at `start_ms` and running `predicted_runtime_s`
/// finishes by `by_ms` (`None`: no limit).
pub fn completes_by(start_ms: u64, predicted_runtime_s: f64, by_ms: Option<u64>) -> bool {
    let Some(by) = by_ms else {
        return true;
    };
    let runtime_ms = (predicted_runtime_s.max(0.0) * 1000.0).ceil();
    (start_ms as f64 + runtime_ms) <= by as f64
}

/// EASY backfilling with predictions: the indices of `queue[1..]` that may
/// start now without delaying the head, shortest-predicted-first.
///
/// `fits_now(i)` says whether task `i` fits the free resources now;
/// `head_start_ms` is the head's reservation (when enough resources are
/// predicted to be free for it), `None` when nothing is reserved. A task is
/// a candidate if it fits now, is predicted to finish by the reservation,
/// and may still start (its start deadline has not passed). Tasks without
/// a prediction are not backfilled.
pub fn backfill_candidates<P: RunTimePredictor + ?Sized>(
    queue: &[Task],
    predictor: &P,
    executor_class: &str,
    now_ms: u64,
    head_start_ms: Option<u64>,
    mut fits_now: impl FnMut(usize) -> bool,
) -> Vec<usize> {
    let mut candidates: Vec<(usize, f64)> = queue
        .iter()
        .enumerate()
        .skip(1)
        .filter_map(|(i, task)| {
            let runtime = predictor.predict_runtime_s(task, executor_class)?;
            let before_head = completes_by(now_ms, runtime, head_start_ms);
            let meets_deadline = deadline_feasible(now_ms, task.deadline_ms);
            (before_head && meets_deadline && fits_now(i)).then_some((i, runtime))
        })
        .collect();
    candidates.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    candidates.into_iter().map(|(i, _)| i).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::learn::model::{ModelKind, ModelSpec};
    use crate::learn::{features::log_runtime_target, Loss};
    use crate::model::{Name, ResourceRequest};

    fn task(id: &str, kind: &str, requested: Option<u32>) -> Task {
        let mut t = Task::new(id, kind, ResourceRequest::cpu(100, 10));
        t.tenant = Name::from("alice");
        t.requested_runtime_s = requested;
        t
    }

    /// A model trained so that `long` tasks take ~100 s and `short` ~1 s.
    fn trained() -> ModelPredictor {
        let spec = ModelSpec {
            kind: ModelKind::Linear,
            dim: 256,
            loss: Loss::Squared,
            optimizer: OptimizerKind::Adam {
                learning_rate: 0.05,
            },
            l2: 0.0,
            seed: 1,
        };
        let mut model = OnlineModel::new(&spec);
        let h = FeatureHasher::new(256);
        let data: Vec<_> = [("long", 100.0), ("short", 1.0)]
            .iter()
            .map(|&(kind, s)| {
                let t = task("x", kind, None);
                let x = TaskFeatures::from_task(&t, t.qos.as_str(), "default").hash(&h);
                (x, log_runtime_target(s))
            })
            .collect();
        for _ in 0..2000 {
            model.train_batch(&data);
        }
        ModelPredictor::from_update(&model.to_update(ModelTarget::RunTime, 1)).expect("valid")
    }

    #[test]
    fn predictions_order_and_backfill() {
        let p = trained();
        let long = p
            .predict_runtime_s(&task("a", "long", None), "default")
            .expect("predicts");
        let short = p
            .predict_runtime_s(&task("b", "short", None), "default")
            .expect("predicts");
        assert!((long / 100.0 - 1.0).abs() < 0.1, "{long}");
        assert!((short - 1.0).abs() < 0.1, "{short}");
        // Capped by the user's limit.
        let capped = p
            .predict_runtime_s(&task("c", "long", Some(30)), "default")
            .expect("predicts");
        assert_eq!(capped, 30.0);

        let mut queue = vec![
            task("1", "long", None),
            task("2", "short", None),
            task("3", "long", Some(10)),
        ];
        order_by_predicted_runtime(&mut queue, &p, "default");
        let ids: Vec<&str> = queue.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["2", "3", "1"]);

        // Head "h" reserved in 50 s: the short task backfills, the long
        // one would delay the head; a short task whose start deadline has
        // passed does not.
        let mut late = task("late", "short", None);
        late.deadline_ms = Some(999_999);
        let queue = vec![
            task("h", "long", None),
            task("l", "long", None),
            task("s", "short", None),
            late,
        ];
        let chosen =
            backfill_candidates(&queue, &p, "default", 1_000_000, Some(1_050_000), |_| true);
        assert_eq!(chosen, [2]);
        let none_fit = backfill_candidates(&queue, &p, "default", 1_000_000, None, |_| false);
        assert!(none_fit.is_empty());
        // No reservation: anything that fits and meets its deadline.
        let all = backfill_candidates(&queue, &p, "default", 1_000_000, None, |_| true);
        assert_eq!(all, [2, 1]);
    }

    #[test]
    fn deadlines_bound_the_start_and_reservations_the_completion() {
        assert!(deadline_feasible(3_000, Some(3_000)));
        assert!(!deadline_feasible(3_001, Some(3_000)));
        assert!(deadline_feasible(u64::MAX, None));
        assert!(completes_by(1_000, 2.0, Some(3_000)));
        assert!(!completes_by(1_000, 2.5, Some(3_000)));
        assert!(completes_by(1_000, 1e9, None));
        assert!(RequestedRuntime
            .predict_runtime_s(&task("x", "k", None), "")
            .is_none());
    }

    #[test]
    fn coordinators_predict_with_the_newest_model_they_hold() {
        use crate::allocate::{AllocatorConfig, FeasibilityIndex, ShardAllocator};
        use crate::dataflow::RetryPolicy;
        use crate::model::ExecutorSpec;
        let spec = ExecutorSpec::cpu("e0", 8000, 8000);
        let allocator = ShardAllocator::new(
            0,
            vec![spec.clone()],
            FeasibilityIndex::new(1, [(0, spec)]),
            &AllocatorConfig::default(),
        )
        .expect("allocator");
        let mut coordinator = CoordinatorState::new(allocator, RetryPolicy::default(), false);
        assert!(coordinator_predictor(&coordinator).is_none());
        let trained = trained();
        let mut update = trained.model.to_update(ModelTarget::RunTime, 2);
        coordinator.on_model(update.clone());
        // An older version does not replace it.
        update.version = 1;
        update.params.iter_mut().for_each(|p| *p = 0.0);
        coordinator.on_model(update);
        let p = coordinator_predictor(&coordinator)
            .expect("a model")
            .expect("valid");
        assert_eq!(p.version(), 2);
        let short = p
            .predict_runtime_s(&task("b", "short", None), "default")
            .expect("predicts");
        assert!((short - 1.0).abs() < 0.1, "{short}");
    }

    #[test]
    fn only_run_time_models_predict_run_times() {
        let update = ModelUpdate {
            version: 1,
            target: ModelTarget::Failure,
            feature_dim: 4,
            hidden_dim: 0,
            params: vec![0.0; 4],
            trained_samples: 0,
        };
        assert!(ModelPredictor::from_update(&update).is_err());
    }
}
