//! The learner through the library API: with `[learner]` enabled, final
//! completions train the run-time and failure models, and every version is
//! kept with its training metrics in the store's model registry.

use std::sync::Arc;

use tidewater::config::{Config, StoreKind};
use tidewater::{HandlerFailure, HandlerOutput, Pipeline};
use tidewater_connectors::store::{MemoryStore, TaskStore};
use tidewater_operators::learn::predict::{ModelPredictor, RunTimePredictor};
use tidewater_operators::learn::settings::DeviceChoice;
use tidewater_operators::model::{ModelTarget, Name, ResourceRequest, Task};

#[test]
fn completions_train_versions_kept_in_the_registry() {
    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    config.learner.enabled = true;
    config.learner.device = DeviceChoice::Cpu;
    config.learner.batch_size = 8;
    config.learner.learning_rate = 0.05;
    let store = Arc::new(MemoryStore::new());
    let pipeline = Pipeline::builder(config)
        .store(store.clone())
        .inline_handler("ok", |_| Ok(HandlerOutput::default()))
        .inline_handler("broken", |_| {
            Err(HandlerFailure::from("always fails".to_string()))
        })
        .start()
        .expect("start");
    for i in 0..64 {
        let kind = if i % 4 == 0 { "broken" } else { "ok" };
        let mut task = Task::new(format!("t{i}"), kind, ResourceRequest::cpu(100, 0));
        task.tenant = Name::from("alice");
        pipeline.submit(task).expect("submit");
    }
    let summary = pipeline.shutdown().expect("shutdown");
    assert_eq!(summary.finished, 64, "{summary:?}");

    // 64 experiences in batches of 8: 8 versions of each model.
    let failure = store.models(ModelTarget::Failure).expect("models");
    let versions: Vec<u64> = failure.iter().map(|r| r.update.version).collect();
    assert_eq!(versions, (1..=8).collect::<Vec<u64>>());
    let last = failure.last().expect("a failure model");
    assert_eq!(last.update.trained_samples, 64);
    for key in ["batch_loss", "mean_loss", "accuracy", "samples", "batches"] {
        assert!(last.metrics.contains_key(key), "{key}: {:?}", last.metrics);
    }
    let run_time = store
        .latest_model(ModelTarget::RunTime)
        .expect("read")
        .expect("a run-time model");
    // Only successes train the run-time model: 48 of 64.
    assert_eq!(run_time.update.trained_samples, 48);
    assert!(run_time.metrics.contains_key("median_abs_log_error"));
    let predictor = ModelPredictor::from_update(&run_time.update).expect("usable");
    let task = Task::new("next", "ok", ResourceRequest::cpu(100, 0));
    let predicted = predictor
        .predict_runtime_s(&task, "default")
        .expect("a prediction");
    assert!(predicted.is_finite() && predicted > 0.0, "{predicted}");
}
