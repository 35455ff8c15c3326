//! Stream aliases and the metric records derived from pipeline events.

use timely::dataflow::Stream;

use crate::model::{Completion, Epoch, MetricEvent, MetricKind, Name, QosClass, Rejection};

/// A stream of vectors of `D` at millisecond epochs.
pub type TimedStream<'scope, D> = Stream<'scope, Epoch, Vec<D>>;

/// The `completed` metric for an attempt: run time in seconds, by outcome.
pub fn metric_for_completion(c: &Completion) -> MetricEvent {
    MetricEvent {
        kind: MetricKind::Completed,
        task_kind: c.task.kind.clone(),
        tenant: c.task.tenant.clone(),
        executor: c.executor.clone(),
        status: Name::const_new(c.outcome.status()),
        qos: c.task.qos,
        value: c.run_time_us() as f64 / 1e6,
        at_ms: c.finished_at_us / 1000,
    }
}

/// The `rejected` metric for a rejection, by reason code.
pub fn metric_for_rejection(r: &Rejection) -> MetricEvent {
    MetricEvent {
        kind: MetricKind::Rejected,
        task_kind: Name::default(),
        tenant: Name::default(),
        executor: Name::default(),
        status: Name::const_new(r.reason.code()),
        qos: QosClass::default(),
        value: 1.0,
        at_ms: r.at_us / 1000,
    }
}
