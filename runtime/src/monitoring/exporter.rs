//! The Prometheus exporter: built-in metrics fed by the metric stream and
//! the result sinks, and each continuous query's latest result as labelled
//! gauges, rendered in the text exposition format for `GET /metrics`.
//!
//! ```text
//!  metric stream (every worker) ─► observe(): counters, histograms, gauges
//!  final results sink ─► record_finals(): tasks by state, end-to-end latency
//!  scrape ─► query results (QueryResults) as gauges ─► text format
//! ```

use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

use tidewater_dataflows::monitor::{QueryResults, QuerySpec};
use tidewater_operators::model::{Completion, MetricEvent, MetricKind};

use crate::error::RuntimeError;

/// Latency buckets, seconds: 100 µs to 100 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 100.0,
];

/// The registry and its metrics.
pub struct Exporter {
    registry: Registry,
    submitted: IntCounterVec,
    tasks: IntCounterVec,
    rejections: IntCounterVec,
    retries: IntCounterVec,
    placement_latency: HistogramVec,
    run_time: HistogramVec,
    end_to_end: HistogramVec,
    utilization: GaugeVec,
    queue_depth: IntGaugeVec,
    learner_loss: GaugeVec,
    alerts: IntGaugeVec,
    queries: Vec<(QuerySpec, GaugeVec)>,
    results: QueryResults,
}

fn built<T: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: Result<T, prometheus::Error>,
) -> Result<T, RuntimeError> {
    let metric = metric.map_err(|e| RuntimeError::Metrics(e.to_string()))?;
    registry
        .register(Box::new(metric.clone()))
        .map_err(|e| RuntimeError::Metrics(e.to_string()))?;
    Ok(metric)
}

impl Exporter {
    /// An exporter for the built-in metrics and `queries`, whose results it
    /// reads from `results`.
    pub fn new(queries: &[QuerySpec], results: QueryResults) -> Result<Self, RuntimeError> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            built(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let histogram = |name: &str, help: &str| {
            built(
                &registry,
                HistogramVec::new(
                    HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
                    &["kind"],
                ),
            )
        };
        let submitted = counter(
            "tidewater_tasks_submitted_total",
            "Tasks accepted.",
            &["kind", "tenant"],
        )?;
        let tasks = counter(
            "tidewater_tasks_total",
            "Tasks with a final outcome, by state.",
            &["state"],
        )?;
        let rejections = counter(
            "tidewater_rejections_total",
            "Records rejected, by reason.",
            &["reason"],
        )?;
        let retries = counter(
            "tidewater_retries_total",
            "Failed attempts that will be retried.",
            &["kind"],
        )?;
        let placement_latency = histogram(
            "tidewater_placement_latency_seconds",
            "From acceptance to placement on an executor.",
        )?;
        let run_time = histogram("tidewater_attempt_run_seconds", "Run time of each attempt.")?;
        let end_to_end = histogram(
            "tidewater_end_to_end_latency_seconds",
            "From acceptance to the final outcome.",
        )?;
        let utilization = built(
            &registry,
            GaugeVec::new(
                Opts::new(
                    "tidewater_executor_utilization",
                    "Largest share of an executor's CPU, memory or GPU in use.",
                ),
                &["executor"],
            ),
        )?;
        let queue_depth = built(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "tidewater_queue_depth",
                    "Tasks waiting for capacity, by shard.",
                ),
                &["shard"],
            ),
        )?;
        let learner_loss = built(
            &registry,
            GaugeVec::new(
                Opts::new(
                    "tidewater_learner_loss",
                    "Training loss of the learner's last mini-batch, by model.",
                ),
                &["model", "device"],
            ),
        )?;
        let alerts = built(
            &registry,
            IntGaugeVec::new(
                Opts::new("tidewater_alert_firing", "1 while an alert fires."),
                &["alert"],
            ),
        )?;
        let queries = queries
            .iter()
            .map(|spec| {
                let mut labels: Vec<&str> = spec.group_by.iter().map(|d| d.as_str()).collect();
                labels.push("aggregate");
                let gauge = built(
                    &registry,
                    GaugeVec::new(
                        Opts::new(
                            format!("tidewater_query_{}", spec.name),
                            format!("Continuous query {}.", spec.name),
                        ),
                        &labels,
                    ),
                )?;
                Ok((spec.clone(), gauge))
            })
            .collect::<Result<_, RuntimeError>>()?;
        Ok(Exporter {
            registry,
            submitted,
            tasks,
            rejections,
            retries,
            placement_latency,
            run_time,
            end_to_end,
            utilization,
            queue_depth,
            learner_loss,
            alerts,
            queries,
            results,
        })
    }

    /// Counts a batch of metric events.
    pub fn observe(&self, events: &[MetricEvent]) {
        for e in events {
            match e.kind {
                MetricKind::Submitted => self
                    .submitted
                    .with_label_values(&[e.task_kind.as_str(), e.tenant.as_str()])
                    .inc(),
                MetricKind::Rejected => self
                    .rejections
                    .with_label_values(&[e.status.as_str()])
                    .inc(),
                MetricKind::Retried => self
                    .retries
                    .with_label_values(&[e.task_kind.as_str()])
                    .inc(),
                MetricKind::Assigned => self
                    .placement_latency
                    .with_label_values(&[e.task_kind.as_str()])
                    .observe(e.value),
                MetricKind::Completed => self
                    .run_time
                    .with_label_values(&[e.task_kind.as_str()])
                    .observe(e.value),
                MetricKind::Utilization => self
                    .utilization
                    .with_label_values(&[e.executor.as_str()])
                    .set(e.value),
                MetricKind::QueueDepth => self
                    .queue_depth
                    .with_label_values(&[e.executor.as_str()])
                    .set(e.value as i64),
                MetricKind::LearnerLoss => self
                    .learner_loss
                    .with_label_values(&[e.task_kind.as_str(), e.executor.as_str()])
                    .set(e.value),
            }
        }
    }

    /// Counts final outcomes and their end-to-end latencies.
    pub fn record_finals(&self, finals: &[Completion]) {
        for c in finals {
            self.tasks.with_label_values(&[c.outcome.status()]).inc();
            self.end_to_end
                .with_label_values(&[c.task.kind.as_str()])
                .observe(c.latency_us() as f64 / 1e6);
        }
    }

    /// The names of every metric family this exporter serves (families with
    /// labels appear in the exposition once they have a series).
    pub fn families(&self) -> Vec<String> {
        use prometheus::core::Collector;
        let collectors: Vec<&dyn Collector> = vec![
            &self.submitted,
            &self.tasks,
            &self.rejections,
            &self.retries,
            &self.placement_latency,
            &self.run_time,
            &self.end_to_end,
            &self.utilization,
            &self.queue_depth,
            &self.learner_loss,
            &self.alerts,
        ];
        collectors
            .into_iter()
            .chain(self.queries.iter().map(|(_, g)| g as &dyn Collector))
            .flat_map(|c| c.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect()
    }

    /// The built-in metric families as they stand (every family but the
    /// continuous queries' gauges, whose values come from the query results
    /// themselves), for metric snapshots.
    pub fn gather_builtin(&self) -> Vec<prometheus::proto::MetricFamily> {
        use prometheus::core::Collector;
        let query_families: Vec<String> = self
            .queries
            .iter()
            .flat_map(|(_, gauge)| gauge.desc().into_iter().map(|d| d.fq_name.clone()))
            .collect();
        self.registry
            .gather()
            .into_iter()
            .filter(|family| !query_families.iter().any(|q| q == family.name()))
            .collect()
    }

    /// Shows whether `alert` fires.
    pub fn set_alert(&self, alert: &str, firing: bool) {
        self.alerts
            .with_label_values(&[alert])
            .set(i64::from(firing));
    }

    /// The exposition text, with each query's latest result.
    pub fn render(&self) -> Result<String, RuntimeError> {
        for (spec, gauge) in &self.queries {
            gauge.reset();
            let Some(result) = self.results.get(&spec.name) else {
                continue;
            };
            for row in &result.rows {
                for (aggregate, value) in &row.values {
                    let mut labels: Vec<&str> = spec
                        .group_by
                        .iter()
                        .map(|d| row.key.get(d.as_str()).map_or("", String::as_str))
                        .collect();
                    labels.push(aggregate);
                    gauge.with_label_values(&labels).set(*value);
                }
            }
        }
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .map_err(|e| RuntimeError::Metrics(e.to_string()))?;
        String::from_utf8(buffer).map_err(|e| RuntimeError::Metrics(e.to_string()))
    }
}
