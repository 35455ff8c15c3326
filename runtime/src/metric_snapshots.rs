//! Metric snapshots for the columnar export (`[export] metrics`): every
//! `metrics_interval_ms`, and once more when the pipeline stops, the values
//! the monitoring agent holds are taken as one snapshot and journaled in the
//! export's `metrics` stream.
//!
//! ```text
//!  QueryResults (each query's latest result, as of its epoch) ─┐
//!  monitoring::Exporter (built-in counters, gauges, histogram  ├─► snapshot ─► StoreSinks::record_metrics
//!   counts and sums; what GET /metrics serves)               ─┘     (a thread, every interval; last at stop)
//! ```
//!
//! Snapshots are views, not deliveries: one that cannot be written is
//! logged and the next one, which supersedes it, is tried at its time.

use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use prometheus::proto::{MetricFamily, MetricType};
use tidewater_connectors::columnar::{MetricSample, MetricSource};
use tidewater_dataflows::monitor::QueryResults;
use tidewater_operators::model::now_micros;

use crate::monitoring::Exporter;
use crate::store_sinks::StoreSinks;

/// Every value of a snapshot: each query's rows (one sample per group and
/// aggregate), then each built-in metric series.
pub fn take(queries: &QueryResults, exporter: &Exporter) -> Vec<MetricSample> {
    let mut samples = Vec::new();
    for result in queries.all() {
        for row in &result.rows {
            let labels: Vec<(String, String)> = row
                .key
                .iter()
                .map(|(name, value)| (name.clone(), value.clone()))
                .collect();
            for (aggregate, value) in &row.values {
                samples.push(MetricSample {
                    source: MetricSource::Query,
                    metric: result.name.clone(),
                    as_of: result.as_of,
                    labels: labels.clone(),
                    stat: aggregate.clone(),
                    value: *value,
                });
            }
        }
    }
    for family in exporter.gather_builtin() {
        builtin_samples(&family, &mut samples);
    }
    samples
}

/// The samples of one built-in family: a counter's or gauge's value, a
/// histogram's count and sum.
fn builtin_samples(family: &MetricFamily, samples: &mut Vec<MetricSample>) {
    for metric in family.get_metric() {
        let labels: Vec<(String, String)> = metric
            .get_label()
            .iter()
            .map(|l| (l.name().to_string(), l.value().to_string()))
            .collect();
        let values: Vec<(&str, f64)> = match family.get_field_type() {
            MetricType::COUNTER => vec![("value", metric.get_counter().get_value())],
            MetricType::GAUGE => vec![("value", metric.get_gauge().get_value())],
            MetricType::HISTOGRAM => {
                let histogram = metric.get_histogram();
                vec![
                    ("count", histogram.get_sample_count() as f64),
                    ("sum", histogram.get_sample_sum()),
                ]
            }
            // Not registered by the exporter.
            MetricType::SUMMARY | MetricType::UNTYPED => Vec::new(),
        };
        for (stat, value) in values {
            samples.push(MetricSample {
                source: MetricSource::Builtin,
                metric: family.name().to_string(),
                as_of: None,
                labels: labels.clone(),
                stat: stat.to_string(),
                value,
            });
        }
    }
}

/// The thread taking snapshots; [`stop`](Self::stop) takes the last one.
pub struct MetricSnapshots {
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl MetricSnapshots {
    /// Starts taking a snapshot every `interval` into `sinks`; `None` when
    /// the export is off or does not export metrics.
    pub fn start(
        interval: Duration,
        queries: QueryResults,
        exporter: Arc<Exporter>,
        sinks: Arc<StoreSinks>,
    ) -> Result<Option<Self>, std::io::Error> {
        if !sinks.exports_metrics() {
            return Ok(None);
        }
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tidewater-metric-snapshots".into())
            .spawn(move || loop {
                let last = match stopped.recv_timeout(interval) {
                    Err(RecvTimeoutError::Timeout) => false,
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
                };
                let samples = take(&queries, &exporter);
                if let Err(e) = sinks.record_metrics(now_micros(), &samples) {
                    tracing::warn!(error = %e, "export: a metric snapshot could not be written; the next one is tried at its time");
                }
                if last {
                    return;
                }
            })?;
        Ok(Some(MetricSnapshots {
            stop,
            thread: Some(thread),
        }))
    }

    /// Takes the last snapshot and stops the thread.
    pub fn stop(mut self) {
        self.finish();
    }

    fn finish(&mut self) {
        let _ = self.stop.send(());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("export: the metric snapshot thread panicked");
            }
        }
    }
}

impl Drop for MetricSnapshots {
    fn drop(&mut self) {
        self.finish();
    }
}
