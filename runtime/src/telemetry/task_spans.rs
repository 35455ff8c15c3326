//! One span per task, from ingestion to outcome, built when the outcome is
//! recorded.
//!
//! The result sink hands every final [`Completion`] to
//! [`TaskSpans::record_finals`], the dead-letter sink (and the HTTP API, for
//! what it refuses itself) every [`Rejection`] to
//! [`TaskSpans::record_rejections`]. Each becomes a `tidewater.task` span
//! (kind consumer: the task is worked off after its submission returned)
//! with the task's own timestamps, a child of the delivery's W3C trace
//! context when it had one; a completed task's final attempt is a child
//! `tidewater.execute` span on its executor.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{
    Event, Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SdkTracer;

use tidewater_operators::model::{Completion, Outcome, Rejection, TraceParent};

/// Name of a task's span.
pub const TASK_SPAN: &str = "tidewater.task";
/// Name of the span of a task's final attempt, a child of its task span.
pub const EXECUTE_SPAN: &str = "tidewater.execute";

/// Builds task spans on the pipeline's tracer. Cheap to clone: one per sink.
#[derive(Clone)]
pub struct TaskSpans {
    tracer: SdkTracer,
}

impl std::fmt::Debug for TaskSpans {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSpans").finish_non_exhaustive()
    }
}

impl TaskSpans {
    pub(super) fn new(tracer: SdkTracer) -> TaskSpans {
        TaskSpans { tracer }
    }

    /// A span for each task that reached its final outcome.
    pub fn record_finals(&self, finals: &[Completion]) {
        for completion in finals {
            self.record_final(completion);
        }
    }

    /// A span for each task refused at intake or by the coordinator.
    pub fn record_rejections(&self, rejections: &[Rejection]) {
        for rejection in rejections {
            self.record_rejection(rejection);
        }
    }

    fn record_final(&self, c: &Completion) {
        let task = &c.task;
        let ingested = if task.submitted_at_us == 0 {
            c.started_at_us
        } else {
            task.submitted_at_us
        };
        let mut attributes = vec![
            KeyValue::new("tidewater.task.id", task.id.to_string()),
            KeyValue::new("tidewater.task.kind", task.kind.to_string()),
            KeyValue::new("tidewater.tenant", task.tenant.to_string()),
            KeyValue::new("tidewater.executor", c.executor.to_string()),
            KeyValue::new("tidewater.attempts", i64::from(task.attempt)),
            KeyValue::new("tidewater.outcome", c.outcome.status()),
        ];
        if let Some(code) = c.exit_code {
            attributes.push(KeyValue::new("tidewater.exit_code", i64::from(code)));
        }
        let started = Event::new(
            "started",
            at(c.started_at_us),
            vec![
                KeyValue::new("tidewater.executor", c.executor.to_string()),
                KeyValue::new("tidewater.attempt", i64::from(task.attempt)),
            ],
            0,
        );
        let span = self
            .tracer
            .span_builder(TASK_SPAN)
            .with_kind(SpanKind::Consumer)
            .with_start_time(at(ingested))
            .with_attributes(attributes)
            .with_events(vec![started])
            .start_with_context(&self.tracer, &remote_context(task.trace));
        let cx = Context::new().with_span(span);
        self.tracer
            .span_builder(EXECUTE_SPAN)
            .with_kind(SpanKind::Internal)
            .with_start_time(at(c.started_at_us))
            .with_attributes([
                KeyValue::new("tidewater.executor", c.executor.to_string()),
                KeyValue::new("tidewater.attempt", i64::from(task.attempt)),
            ])
            .start_with_context(&self.tracer, &cx)
            .end_with_timestamp(at(c.finished_at_us));
        let task_span = cx.span();
        match &c.outcome {
            Outcome::Succeeded => task_span.set_status(Status::Ok),
            Outcome::Failed { reason } => task_span.set_status(Status::error(reason.clone())),
            Outcome::TimedOut => task_span.set_status(Status::error("timed out")),
            // Cancelled on request: not an error of the task's.
            Outcome::Cancelled => {}
        }
        task_span.end_with_timestamp(at(c.finished_at_us));
    }

    fn record_rejection(&self, r: &Rejection) {
        let mut attributes = vec![
            KeyValue::new("tidewater.outcome", "rejected"),
            KeyValue::new("tidewater.reject.code", r.reason.code()),
            KeyValue::new("tidewater.source", r.source_name.to_string()),
        ];
        if let Some(id) = &r.task_id {
            attributes.push(KeyValue::new("tidewater.task.id", id.to_string()));
        }
        if let Some(tenant) = &r.tenant {
            attributes.push(KeyValue::new("tidewater.tenant", tenant.to_string()));
        }
        let mut span = self
            .tracer
            .span_builder(TASK_SPAN)
            .with_kind(SpanKind::Consumer)
            .with_start_time(at(r.at_us))
            .with_attributes(attributes)
            .start_with_context(&self.tracer, &remote_context(r.trace));
        span.set_status(Status::error(r.reason.to_string()));
        span.end_with_timestamp(at(r.at_us));
    }
}

/// The remote parent a delivery named, or an empty context (a new trace).
pub(super) fn remote_context(trace: Option<TraceParent>) -> Context {
    match trace {
        Some(t) => Context::new().with_remote_span_context(SpanContext::new(
            TraceId::from_bytes(t.trace_id),
            SpanId::from_bytes(t.parent_span_id),
            TraceFlags::new(t.flags),
            true,
            TraceState::default(),
        )),
        None => Context::new(),
    }
}

fn at(micros: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(micros)
}
