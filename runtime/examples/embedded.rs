//! Embedding Tidewater as a library: register Rust closures as handlers,
//! submit tasks in process, wait for the results, and read them back.
//!
//! Run with `cargo run -p tidewater --example embedded`.

use std::sync::Arc;

use tidewater::config::{Config, StoreKind};
use tidewater::{HandlerOutput, Pipeline};
use tidewater_connectors::store::{MemoryStore, TaskStore};
use tidewater_operators::model::{ResourceRequest, Task};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = Config::default();
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;

    let store = Arc::new(MemoryStore::new());
    let pipeline = Pipeline::builder(config)
        .store(store.clone())
        // An async handler: runs on the tokio runtime beside the workers.
        .handler("word-count", |task| async move {
            let text = task.payload.as_deref().unwrap_or_default().to_string();
            let words = text.split_whitespace().count() as u64;
            Ok(HandlerOutput::value(serde_json::json!({ "words": words })))
        })
        // An inline handler: cheap work done on the dataflow worker itself.
        .inline_handler("uppercase", |task| {
            let len = task
                .payload
                .as_deref()
                .map_or(0, |p| p.to_uppercase().len());
            Ok(HandlerOutput::value(serde_json::json!({ "length": len })))
        })
        .start()?;

    for n in 0..10 {
        let kind = if n % 2 == 0 {
            "word-count"
        } else {
            "uppercase"
        };
        let mut task = Task::new(format!("example-{n}"), kind, ResourceRequest::cpu(250, 64));
        task.payload = Some(format!("\"the quick brown fox number {n}\"").into());
        pipeline.submit(task)?;
    }
    let summary = pipeline.shutdown()?;
    println!(
        "finished {} tasks ({} succeeded)",
        summary.finished, summary.succeeded
    );
    for n in 0..10 {
        if let Some(record) = store.get(&format!("example-{n}"))? {
            println!(
                "{} {:?} output_bytes={}",
                record.id, record.state, record.output_bytes
            );
        }
    }
    Ok(())
}
