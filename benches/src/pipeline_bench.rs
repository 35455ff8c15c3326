//! `tidewater bench`: no-op tasks end to end through the real pipeline.
//!
//! Each worker generates its share of the tasks in process (the in-process
//! API's path: a decoded task record, validated, allocated, executed by the
//! inline `noop` handler, completed, released, recorded), bounded by a
//! window of tasks in flight, optionally paced to a target rate. Latency is
//! submit-to-final-completion per task. `--queue` instead measures memory
//! per queued task: one task holds the only executor, and the rest wait.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use timely::dataflow::operators::Input;

use tidewater_dataflows::pipeline::task_pipeline;
use tidewater_dataflows::sinks::sink_batches;
use tidewater_operators::model::{
    now_micros, AckToken, Completion, Epoch, ModelUpdate, Name, RecordBody, ResourceRequest,
    SourceRecord, Task,
};

use tidewater::config::{Config, ExecutorConfig};
use tidewater::launch::pipeline_parts;
use tidewater::stats::new_histogram;
use tidewater::HandlerRegistry;

use crate::memory::{current_rss_bytes, peak_rss_bytes};

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Tasks in total.
    pub tasks: u64,
    /// Timely workers.
    pub workers: usize,
    /// Target rate in tasks per second over all workers; `None` runs flat out.
    pub rate: Option<u64>,
    /// Most tasks in flight per worker.
    pub window: u64,
    /// Whether pipeline events produce metric records.
    pub metrics: bool,
    /// Measure memory per queued task instead of throughput.
    pub queue: bool,
}

/// One benchmark result.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Tasks completed (or queued, with `queue`).
    pub tasks: u64,
    /// Workers.
    pub workers: usize,
    /// Wall-clock seconds from first submit to last completion.
    pub seconds: f64,
    /// Completed tasks per second.
    pub tasks_per_sec: f64,
    /// Median submit-to-complete latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile submit-to-complete latency, microseconds.
    pub p99_us: u64,
    /// Largest latency seen, microseconds.
    pub max_us: u64,
    /// Peak resident memory of the process, MiB.
    pub peak_rss_mb: f64,
    /// The target rate, if paced.
    pub rate: Option<u64>,
    /// Whether metric events were produced.
    pub metrics: bool,
    /// With `queue`: resident bytes added per queued task.
    pub bytes_per_queued_task: Option<f64>,
}

/// Runs the benchmark.
pub fn run_bench(options: &BenchOptions) -> Result<BenchReport, String> {
    let mut config = Config {
        workers: options.workers,
        metrics: options.metrics,
        ..Config::default()
    };
    config.executors = if options.queue {
        vec![ExecutorConfig {
            id: "bench".into(),
            count: options.workers,
            cpu_milli: 1000,
            memory_mib: 1024,
            ..Default::default()
        }]
    } else {
        vec![ExecutorConfig {
            id: "bench".into(),
            count: options.workers * 2,
            cpu_milli: 1 << 40,
            memory_mib: 1 << 40,
            ..Default::default()
        }]
    };
    let config = Arc::new(config);
    let handlers = Arc::new(HandlerRegistry::with_builtins(
        &config.handlers,
        config.limits.max_result_bytes,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let handle = runtime.handle().clone();
    let latencies = Arc::new(Mutex::new(new_histogram()));
    let queued_rss = Arc::new(Mutex::new(0u64));
    let barrier = Arc::new(std::sync::Barrier::new(options.workers));
    let rss_before = current_rss_bytes();
    let started = Instant::now();
    let options_for_workers = options.clone();
    let latencies_for_workers = Arc::clone(&latencies);
    let (queued_rss_for_workers, barrier_for_workers) =
        (Arc::clone(&queued_rss), Arc::clone(&barrier));
    let guards = timely::execute(timely::Config::process(options.workers), move |worker| {
        let result = bench_worker(
            worker,
            &config,
            &handlers,
            &handle,
            &options_for_workers,
            &latencies_for_workers,
        );
        if options_for_workers.queue {
            // Every worker has queued its share: measure, then abandon the queue.
            barrier_for_workers.wait();
            if worker.index() == 0 {
                if let Ok(mut rss) = queued_rss_for_workers.lock() {
                    *rss = current_rss_bytes();
                }
            }
            barrier_for_workers.wait();
            for dataflow in worker.installed_dataflows() {
                worker.drop_dataflow(dataflow);
            }
        }
        result
    })?;
    for result in guards.join() {
        result??;
    }
    let seconds = started.elapsed().as_secs_f64();
    let peak_rss_mb = peak_rss_bytes() as f64 / (1024.0 * 1024.0);
    let histogram = latencies.lock().map_err(|_| "latency lock poisoned")?;
    let queued_rss = *queued_rss.lock().map_err(|_| "rss lock poisoned")?;
    let bytes_per_queued_task = options
        .queue
        .then(|| queued_rss.saturating_sub(rss_before) as f64 / options.tasks.max(1) as f64);
    runtime.shutdown_background();
    Ok(BenchReport {
        tasks: if options.queue {
            options.tasks
        } else {
            histogram.len()
        },
        workers: options.workers,
        seconds,
        tasks_per_sec: histogram.len() as f64 / seconds,
        p50_us: histogram.value_at_quantile(0.5),
        p99_us: histogram.value_at_quantile(0.99),
        max_us: histogram.max(),
        peak_rss_mb,
        rate: options.rate,
        metrics: options.metrics,
        bytes_per_queued_task,
    })
}

fn bench_worker(
    worker: &mut timely::worker::Worker,
    config: &Config,
    handlers: &Arc<HandlerRegistry>,
    runtime: &tokio::runtime::Handle,
    options: &BenchOptions,
    latencies: &Arc<Mutex<hdrhistogram::Histogram<u64>>>,
) -> Result<(), String> {
    let (index, peers) = (worker.index(), worker.peers());
    let parts = pipeline_parts(config, index, peers, handlers, runtime, now_micros())?;
    let share =
        options.tasks / peers as u64 + u64::from((index as u64) < options.tasks % peers as u64);
    let completed = Rc::new(Cell::new(0u64));
    let local = Rc::new(std::cell::RefCell::new(new_histogram()));
    let (mut records_in, mut models_in) = worker.dataflow::<Epoch, _, _>(|scope| {
        let (records_in, records) = scope.new_input::<Vec<SourceRecord>>();
        let (models_in, models) = scope.new_input::<Vec<ModelUpdate>>();
        // The benchmark sends no control commands.
        let control = timely::dataflow::operators::generic::operator::empty(scope);
        let streams = task_pipeline(records, models, control, parts);
        let (completed, local) = (Rc::clone(&completed), Rc::clone(&local));
        sink_batches(
            streams.finals,
            "BenchResults",
            move |finals: &mut Vec<Completion>| {
                let mut histogram = local.borrow_mut();
                for c in finals.drain(..) {
                    let _ = histogram.record(c.latency_us().max(1));
                }
                completed.set(histogram.len());
            },
        );
        sink_batches(streams.rejections, "BenchRejections", |r| r.clear());
        sink_batches(streams.metrics, "BenchMetrics", |m| m.clear());
        (records_in, models_in)
    });

    let per_worker_rate = options.rate.map(|r| (r as f64 / peers as f64).max(1.0));
    let window = if options.queue {
        u64::MAX
    } else {
        options.window
    };
    let mut generated = 0u64;
    let mut epoch = now_micros() / 1000;
    records_in.advance_to(epoch);
    models_in.advance_to(epoch);
    let start = Instant::now();
    let mut id_buffer = itoa_buffer();
    if options.queue {
        // One task holds this worker's only executor for the whole run.
        let mut holder = Task::new(
            format!("holder-{index}"),
            "sleep",
            ResourceRequest::cpu(1000, 0),
        );
        holder.payload = Some("{\"ms\":3600000}".into());
        records_in.send(record(holder, index));
    }
    let target = share;
    while completed.get() < target && !(options.queue && generated >= target) {
        let allowed = match per_worker_rate {
            Some(rate) => ((start.elapsed().as_secs_f64() * rate) as u64).min(target),
            None => target,
        };
        let in_flight = generated - completed.get();
        let batch = allowed
            .saturating_sub(generated)
            .min(window.saturating_sub(in_flight))
            .min(4096);
        let now_us = now_micros();
        for _ in 0..batch {
            let id = format_id(&mut id_buffer, index, generated);
            let mut task = Task::new(id, Name::const_new("noop"), ResourceRequest::cpu(1, 0));
            task.submitted_at_us = now_us;
            records_in.send(record(task, index));
            generated += 1;
        }
        let now = now_us / 1000;
        if now > epoch {
            epoch = now;
            records_in.advance_to(epoch);
            models_in.advance_to(epoch);
        }
        if batch == 0 && per_worker_rate.is_some() {
            worker.step_or_park(Some(Duration::from_micros(50)));
        } else {
            worker.step();
        }
    }
    if options.queue {
        // Let every task reach the queue; the caller then abandons it.
        for _ in 0..1000 {
            worker.step();
        }
        return Ok(());
    }
    drop(records_in);
    drop(models_in);
    while worker.step() {}
    let mut global = latencies.lock().map_err(|_| "latency lock poisoned")?;
    global.add(&*local.borrow()).map_err(|e| e.to_string())?;
    Ok(())
}

fn record(task: Task, worker: usize) -> SourceRecord {
    SourceRecord {
        body: RecordBody::Task(Box::new(task)),
        ack: AckToken {
            origin_worker: worker as u32,
            source: 0,
            tag: 0,
        },
        source_name: Name::const_new("bench"),
        received_at_us: 0,
        trace: None,
    }
}

fn itoa_buffer() -> String {
    String::with_capacity(24)
}

fn format_id(buffer: &mut String, worker: usize, n: u64) -> Name {
    use std::fmt::Write;
    buffer.clear();
    let _ = write!(buffer, "b{worker}-{n}");
    Name::from(buffer.as_str())
}
