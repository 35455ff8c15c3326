//! The `Decode` operator: source records into tasks and rejections.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::progress::operate::FrontierInterest;

use crate::model::{now_micros, Name, RecordBody, Rejection, SourceRecord, Task};
use crate::validate::{check_task, Validator};

use super::TimedStream;

/// Decodes and validates source records. Valid records leave as tasks on the
/// first stream; every invalid one leaves as a [`Rejection`] with its reason
/// on the second. No input makes the operator panic.
pub trait Decode<'scope> {
    /// Splits records into tasks and rejections using `validator`.
    ///
    /// # Examples
    /// ```
    /// use timely::dataflow::operators::capture::Event;
    /// use timely::dataflow::operators::{Capture, ToStream};
    /// use tidewater_operators::dataflow::Decode;
    /// use tidewater_operators::model::{AckToken, RecordBody, SourceRecord};
    /// use tidewater_operators::validate::{ValidationLimits, Validator};
    ///
    /// let (tasks, rejects) = timely::example(|scope| {
    ///     let records = ["{\"kind\":\"noop\"}", "{\"kind\":5}"].map(|json| SourceRecord {
    ///         body: RecordBody::Json(json.as_bytes().to_vec()),
    ///         ack: AckToken::NONE,
    ///         source_name: "example".into(),
    ///         received_at_us: 0,
    ///         trace: None,
    ///     });
    ///     let validator = Validator::new(ValidationLimits::default(), 0, 1);
    ///     let (tasks, rejects) = records.to_stream(scope).decode(validator);
    ///     (tasks.capture(), rejects.capture())
    /// });
    /// fn records<D>(events: std::sync::mpsc::Receiver<Event<u64, Vec<D>>>) -> Vec<D> {
    ///     events.try_iter().flat_map(|e| match e {
    ///         Event::Messages(_, data) => data,
    ///         Event::Progress(_) => Vec::new(),
    ///     }).collect()
    /// }
    /// assert_eq!(records(tasks).len(), 1);
    /// assert_eq!(records(rejects)[0].reason.code(), "wrong_type");
    /// ```
    fn decode(
        self,
        validator: Validator,
    ) -> (TimedStream<'scope, Task>, TimedStream<'scope, Rejection>);
}

impl<'scope> Decode<'scope> for TimedStream<'scope, SourceRecord> {
    fn decode(
        self,
        mut validator: Validator,
    ) -> (TimedStream<'scope, Task>, TimedStream<'scope, Rejection>) {
        let mut builder = OperatorBuilder::new("Decode".to_owned(), self.scope());
        let mut input = builder.new_input(self, Pipeline);
        builder.set_notify_for(0, FrontierInterest::Never);
        let (tasks_out, tasks) = builder.new_output();
        let (rejects_out, rejects) = builder.new_output();
        let mut tasks_out = OutputBuilder::<
            _,
            timely::container::CapacityContainerBuilder<Vec<Task>>,
        >::from(tasks_out);
        let mut rejects_out = OutputBuilder::<
            _,
            timely::container::CapacityContainerBuilder<Vec<Rejection>>,
        >::from(rejects_out);

        builder.build(move |_capabilities| {
            move |_frontiers| {
                let mut tasks_handle = tasks_out.activate();
                let mut rejects_handle = rejects_out.activate();
                input.for_each_stamp(|cap, data| {
                    let mut tasks = tasks_handle.session(&cap);
                    let mut rejects = rejects_handle.session(&cap);
                    let now_us = now_micros();
                    for record in data.flat_map(|d| d.drain(..)) {
                        match decode_one(&mut validator, record, now_us) {
                            Ok(task) => tasks.give(task),
                            Err(rejection) => rejects.give(rejection),
                        }
                    }
                });
            }
        });
        (tasks, rejects)
    }
}

// Both variants are records that move on at once; boxing either would add an
// allocation per record on the hot path.
#[allow(clippy::result_large_err)]
fn decode_one(
    validator: &mut Validator,
    record: SourceRecord,
    now_us: u64,
) -> Result<Task, Rejection> {
    let SourceRecord {
        body,
        ack,
        source_name,
        received_at_us,
        trace,
    } = record;
    let received_at_us = if received_at_us == 0 {
        now_us
    } else {
        received_at_us
    };
    match body {
        RecordBody::Json(bytes) => {
            let task = validator
                .decode(&bytes, ack, received_at_us)
                .map(|task| Task { trace, ..task })
                .map_err(|reason| Rejection {
                    reason,
                    task_id: None,
                    tenant: None,
                    source_name: source_name.clone(),
                    excerpt: excerpt(&bytes),
                    ack,
                    at_us: now_us,
                    trace,
                })?;
            // Well formed, but can it ever run? Refused with its id, so
            // that it reads back `rejected`.
            match validator.admit(&task) {
                Ok(()) => Ok(task),
                Err(reason) => Err(Rejection {
                    reason,
                    task_id: Some(task.id.clone()),
                    tenant: Some(task.tenant.clone()),
                    source_name,
                    excerpt: excerpt(&bytes),
                    ack,
                    at_us: now_us,
                    trace,
                }),
            }
        }
        RecordBody::Task(mut task) => {
            task.ack = ack;
            // A context the source delivered wins over one the task carried.
            task.trace = trace.or(task.trace);
            if task.submitted_at_us == 0 {
                task.submitted_at_us = received_at_us;
            }
            match check_task(&task, validator.limits()).and_then(|()| validator.admit(&task)) {
                Ok(()) => Ok(*task),
                Err(reason) => Err(Rejection {
                    reason,
                    task_id: Some(task.id.clone()),
                    tenant: Some(task.tenant.clone()),
                    source_name,
                    excerpt: Name::from(task.kind.as_str()).to_string(),
                    ack,
                    at_us: now_us,
                    trace: task.trace,
                }),
            }
        }
    }
}

/// The first 256 bytes of a record, as text, for dead-letter reports.
fn excerpt(bytes: &[u8]) -> String {
    let end = bytes.len().min(256);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}
