//! `tidewater bench-queries`: continuous-query throughput, freshness and
//! memory.
//!
//! Each worker generates metric events (a realistic mix: 4 metrics, 8 task
//! kinds, 4 tenants, 16 executors, 3 statuses, 1,000 distinct values) and
//! feeds them, `events_per_epoch` per epoch across workers, into ten
//! continuous queries (grouped counts, averages, exact quantiles; unwindowed,
//! tumbling and sliding). It reports metric updates per second, how long
//! after an epoch closed (every worker advanced past it) its results were
//! published, and peak memory.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use timely::dataflow::operators::Input;

use tidewater_dataflows::monitor::{
    continuous_queries, Aggregate, Dimension, Filter, QueryResults, QuerySpec, Window,
};
use tidewater_operators::model::{MetricEvent, MetricKind, Name, QosClass};

use crate::memory::peak_rss_bytes;

/// Paced epochs offer their events in this many slices over the period.
const EPOCH_SLICES: u64 = 10;

/// What to run.
#[derive(Clone, Debug)]
pub struct QueryBenchOptions {
    /// Metric events in all.
    pub events: u64,
    /// Timely workers.
    pub workers: usize,
    /// Events per epoch, over all workers.
    pub events_per_epoch: u64,
    /// The windowed queries' window, in epochs (ms).
    pub window_ms: u64,
    /// Events offered per second over all workers (`None`: as fast as the
    /// queries absorb them, each epoch's events at once). With a rate, each
    /// epoch carries `rate × epoch_ms / 1000` events, offered in ten slices
    /// over its `epoch_ms`, and closes when its period ends, as the
    /// pipeline's wall-clock epochs do; freshness then measures what
    /// happens after an epoch closes.
    pub rate: Option<f64>,
    /// Milliseconds of event time per epoch (the epoch timestamps advance by
    /// this, so windows are in the same milliseconds).
    pub epoch_ms: u64,
}

/// What it measured.
#[derive(Clone, Debug, Serialize)]
pub struct QueryBenchReport {
    /// Metric events.
    pub events: u64,
    /// Workers.
    pub workers: usize,
    /// Concurrent queries.
    pub queries: usize,
    /// Events per epoch.
    pub events_per_epoch: u64,
    /// Window of the windowed queries, epochs.
    pub window_ms: u64,
    /// Events offered per second, if paced.
    pub rate: Option<f64>,
    /// Event time per epoch, ms.
    pub epoch_ms: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Metric events absorbed per second (each feeds every query).
    pub updates_per_sec: f64,
    /// Median time from an epoch closing to its results being published, ms.
    pub freshness_p50_ms: f64,
    /// 90th percentile of the same, ms.
    pub freshness_p90_ms: f64,
    /// 99th percentile of the same, ms.
    pub freshness_p99_ms: f64,
    /// The largest, ms.
    pub freshness_max_ms: f64,
    /// The epoch (index) whose results were published latest.
    pub freshness_worst_epoch: u64,
    /// Epochs measured.
    pub epochs: u64,
    /// Peak resident memory, MiB.
    pub peak_rss_mb: f64,
}

/// The ten queries of the benchmark.
pub fn bench_queries(window_ms: u64) -> Vec<QuerySpec> {
    let q = |name: &str, metric, group_by: Vec<Dimension>, aggregates, window| QuerySpec {
        name: name.into(),
        filter: Filter {
            metric,
            ..Filter::default()
        },
        group_by,
        aggregates,
        window,
    };
    let sliding = Window::Sliding { ms: window_ms };
    let tumbling = Window::Tumbling { ms: window_ms };
    let p99 = Aggregate::Quantile(0.99);
    vec![
        q(
            "completed_by_kind_status",
            Some(MetricKind::Completed),
            vec![Dimension::Kind, Dimension::Status],
            vec![Aggregate::Count, Aggregate::Avg],
            Window::None,
        ),
        q(
            "run_time_p99_by_kind",
            Some(MetricKind::Completed),
            vec![Dimension::Kind],
            vec![p99, Aggregate::Max],
            sliding,
        ),
        q(
            "wait_p99_by_tenant",
            Some(MetricKind::Assigned),
            vec![Dimension::Tenant],
            vec![Aggregate::Quantile(0.5), p99],
            sliding,
        ),
        q(
            "submitted_by_tenant",
            Some(MetricKind::Submitted),
            vec![Dimension::Tenant],
            vec![Aggregate::Count],
            tumbling,
        ),
        q(
            "utilization_by_executor",
            Some(MetricKind::Utilization),
            vec![Dimension::Executor],
            vec![Aggregate::Avg, Aggregate::Max],
            sliding,
        ),
        q(
            "events_by_metric",
            None,
            vec![Dimension::Metric],
            vec![Aggregate::Count],
            tumbling,
        ),
        q(
            "completed_by_executor",
            Some(MetricKind::Completed),
            vec![Dimension::Executor],
            vec![Aggregate::Count, Aggregate::Sum],
            sliding,
        ),
        q(
            "wait_by_kind",
            Some(MetricKind::Assigned),
            vec![Dimension::Kind],
            vec![Aggregate::Avg, Aggregate::Min, Aggregate::Max],
            tumbling,
        ),
        q(
            "failures_by_tenant_kind",
            Some(MetricKind::Completed),
            vec![Dimension::Tenant, Dimension::Kind, Dimension::Status],
            vec![Aggregate::Count],
            sliding,
        ),
        q(
            "everything_p99",
            None,
            vec![],
            vec![Aggregate::Count, p99],
            sliding,
        ),
    ]
}

/// The benchmark's `i`th metric event: a deterministic mix of 4 metrics,
/// 8 task kinds, 4 tenants, 16 executors, 3 statuses and 1,000 values.
pub fn metric_event(i: u64) -> MetricEvent {
    const KINDS: [MetricKind; 4] = [
        MetricKind::Submitted,
        MetricKind::Assigned,
        MetricKind::Completed,
        MetricKind::Utilization,
    ];
    const STATUS: [&str; 3] = ["succeeded", "failed", "timed_out"];
    let mix = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32;
    MetricEvent {
        kind: KINDS[(mix % 4) as usize],
        task_kind: Name::from(format!("kind-{}", mix % 8).as_str()),
        tenant: Name::from(format!("tenant-{}", (mix >> 3) % 4).as_str()),
        executor: Name::from(format!("executor-{}", (mix >> 5) % 16).as_str()),
        status: Name::const_new(STATUS[((mix >> 9) % 3) as usize]),
        qos: QosClass::Burstable,
        value: ((mix >> 11) % 1000) as f64 / 10.0,
        at_ms: 0,
    }
}

/// Runs the benchmark.
pub fn run_query_bench(options: &QueryBenchOptions) -> Result<QueryBenchReport, String> {
    let specs = bench_queries(options.window_ms);
    let results = QueryResults::new(&specs).with_publish_log();
    let workers = options.workers.max(1);
    let epoch_ms = options.epoch_ms.max(1);
    let rate = options.rate.filter(|rate| *rate > 0.0);
    let events_per_epoch = match rate {
        Some(rate) => (rate * epoch_ms as f64 / 1000.0) as u64,
        None => options.events_per_epoch,
    };
    let per_epoch = (events_per_epoch / workers as u64).max(1);
    let epochs = options.events / (per_epoch * workers as u64);
    // When each worker advanced past each epoch.
    let closed: Arc<Mutex<Vec<Vec<Instant>>>> = Arc::new(Mutex::new(vec![Vec::new(); workers]));
    // When paced, an epoch is offered every `epoch_ms`.
    let epoch_period = rate.map(|_| Duration::from_millis(epoch_ms));
    // Set once every worker has built its dataflow and its events: the
    // measurement starts there.
    let started: Arc<std::sync::OnceLock<Instant>> = Arc::default();
    let ready = Arc::new(std::sync::Barrier::new(workers));
    {
        let (specs, results, closed) = (specs.clone(), results.clone(), Arc::clone(&closed));
        let started = Arc::clone(&started);
        let guards = timely::execute(timely::Config::process(workers), move |worker| {
            let index = worker.index();
            // Events are generated before the run so that the measurement is
            // the queries, not the generator.
            let pool: Vec<MetricEvent> = (0..per_epoch.min(1 << 16))
                .map(|i| metric_event(i * workers as u64 + index as u64))
                .collect();
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, metrics) = scope.new_input::<Vec<MetricEvent>>();
                continuous_queries(metrics, &specs, results.clone());
                input
            });
            let mut times = Vec::with_capacity(epochs as usize);
            let mut batch = Vec::with_capacity(per_epoch as usize);
            ready.wait();
            let started = *started.get_or_init(Instant::now);
            // Work (step the dataflow) until `due`.
            let wait_until = |worker: &mut timely::worker::Worker, due: Instant| {
                while let Some(wait) = due.checked_duration_since(Instant::now()) {
                    worker.step_or_park(Some(wait));
                }
            };
            for epoch in 0..epochs {
                let offset = (epoch * per_epoch) as usize;
                let mut event_at = |i: u64| pool[(offset + i as usize) % pool.len()].clone();
                match epoch_period {
                    // Paced: the epoch's events arrive in slices spread over
                    // its period, and it closes when the period ends, as the
                    // pipeline's wall-clock epochs do.
                    Some(period) => {
                        let opens = started + period.mul_f64(epoch as f64);
                        for slice in 0..EPOCH_SLICES {
                            wait_until(
                                worker,
                                opens + period.mul_f64(slice as f64 / EPOCH_SLICES as f64),
                            );
                            let range = per_epoch * slice / EPOCH_SLICES
                                ..per_epoch * (slice + 1) / EPOCH_SLICES;
                            batch.extend(range.map(&mut event_at));
                            input.send_batch(&mut batch);
                            batch.clear();
                        }
                        wait_until(worker, opens + period);
                    }
                    // Flat out: the whole epoch at once.
                    None => {
                        batch.extend((0..per_epoch).map(&mut event_at));
                        input.send_batch(&mut batch);
                        batch.clear();
                    }
                }
                input.advance_to((epoch + 1) * epoch_ms);
                times.push(Instant::now());
                worker.step();
            }
            // The pipeline's input stays open; closing it releases every
            // held window retraction at once. Wait for the last epoch's
            // results first, so that shutdown is not measured.
            let last = epochs.saturating_sub(1) * epoch_ms;
            let deadline = Instant::now() + Duration::from_secs(10);
            while results
                .get(&specs[0].name)
                .and_then(|r| r.as_of)
                .is_none_or(|a| a < last)
                && Instant::now() < deadline
            {
                worker.step_or_park(Some(Duration::from_millis(1)));
            }
            drop(input);
            while worker.step_or_park(None) {}
            if let Ok(mut closed) = closed.lock() {
                closed[index] = times;
            }
        })?;
        guards
            .join()
            .into_iter()
            .collect::<Result<Vec<()>, String>>()?;
    }
    let seconds = started
        .get()
        .map_or(0.0, |started| started.elapsed().as_secs_f64());
    let closed = closed.lock().map_err(|_| "lock poisoned")?;
    let log = results.publish_log();
    let mut freshness: Vec<f64> = (0..epochs as usize)
        .filter_map(|e| {
            let closed_at = closed.iter().filter_map(|t| t.get(e)).max()?;
            let published = log
                .iter()
                .find(|(as_of, _)| *as_of >= e as u64 * epoch_ms)?;
            Some(
                published
                    .1
                    .saturating_duration_since(*closed_at)
                    .as_secs_f64()
                    * 1000.0,
            )
        })
        .collect();
    let worst_epoch = freshness
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(e, _)| e as u64);
    freshness.sort_by(f64::total_cmp);
    let at = |q: f64| {
        freshness
            .get(((freshness.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    let events = epochs * per_epoch * workers as u64;
    Ok(QueryBenchReport {
        events,
        workers,
        queries: specs.len(),
        events_per_epoch: per_epoch * workers as u64,
        window_ms: options.window_ms,
        rate,
        epoch_ms,
        seconds,
        updates_per_sec: events as f64 / seconds,
        freshness_p50_ms: at(0.5),
        freshness_p90_ms: at(0.9),
        freshness_p99_ms: at(0.99),
        freshness_max_ms: at(1.0),
        freshness_worst_epoch: worst_epoch,
        epochs,
        peak_rss_mb: peak_rss_bytes() as f64 / (1024.0 * 1024.0),
    })
}
