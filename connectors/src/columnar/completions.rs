//! Final completions as Arrow record batches: one row per completion, one
//! column per field a user filters or aggregates by.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt16Array,
    UInt32Array, UInt64Array,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use tidewater_operators::model::{Completion, Outcome};

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

/// The columns of a completions batch.
///
/// | column | type | meaning |
/// |---|---|---|
/// | `task_id`, `kind`, `tenant`, `qos` | utf8 | the task |
/// | `agent` | utf8, nullable | the submitting agent |
/// | `depends_on` | list of utf8 | the task's declared dependencies |
/// | `priority` | int32 | |
/// | `executor` | utf8 | where the final attempt ran |
/// | `attempt`, `max_attempts` | uint16 | |
/// | `outcome` | utf8 | `succeeded`, `failed`, `timed_out`, `cancelled` |
/// | `reason` | utf8, nullable | why it failed |
/// | `exit_code` | int32, nullable | a command's exit code |
/// | `output_bytes` | uint64 | |
/// | `submitted_at`, `started_at`, `finished_at` | timestamp µs UTC | |
/// | `run_time_us` | uint64 | the final attempt's run time |
/// | `shard` | uint32 | the worker whose shard ran it |
pub fn completion_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("task_id", DataType::Utf8, false),
            Field::new("kind", DataType::Utf8, false),
            Field::new("tenant", DataType::Utf8, false),
            Field::new("qos", DataType::Utf8, false),
            Field::new("agent", DataType::Utf8, true),
            Field::new(
                "depends_on",
                DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true))),
                false,
            ),
            Field::new("priority", DataType::Int32, false),
            Field::new("executor", DataType::Utf8, false),
            Field::new("attempt", DataType::UInt16, false),
            Field::new("max_attempts", DataType::UInt16, false),
            Field::new("outcome", DataType::Utf8, false),
            Field::new("reason", DataType::Utf8, true),
            Field::new("exit_code", DataType::Int32, true),
            Field::new("output_bytes", DataType::UInt64, false),
            Field::new("submitted_at", timestamp(), false),
            Field::new("started_at", timestamp(), false),
            Field::new("finished_at", timestamp(), false),
            Field::new("run_time_us", DataType::UInt64, false),
            Field::new("shard", DataType::UInt32, false),
        ]))
    }))
}

fn micros(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The batch for `completions`, in [`completion_schema`]'s columns.
pub fn completions_batch(completions: &[Completion]) -> Result<RecordBatch, ArrowError> {
    let strings = |f: fn(&Completion) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(completions.iter().map(f)))
    };
    let times = |f: fn(&Completion) -> u64| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(completions.iter().map(|c| micros(f(c))))
                .with_timezone("UTC"),
        )
    };
    let mut depends_on = ListBuilder::new(StringBuilder::new());
    for c in completions {
        for d in &c.task.depends_on {
            depends_on.values().append_value(d);
        }
        depends_on.append(true);
    }
    let columns: Vec<ArrayRef> = vec![
        strings(|c| &c.task.id),
        strings(|c| &c.task.kind),
        strings(|c| &c.task.tenant),
        strings(|c| c.task.qos.as_str()),
        Arc::new(StringArray::from_iter(
            completions.iter().map(|c| c.task.agent.as_deref()),
        )),
        Arc::new(depends_on.finish()),
        Arc::new(Int32Array::from_iter_values(
            completions.iter().map(|c| c.task.priority),
        )),
        strings(|c| &c.executor),
        Arc::new(UInt16Array::from_iter_values(
            completions.iter().map(|c| c.task.attempt),
        )),
        Arc::new(UInt16Array::from_iter_values(
            completions.iter().map(|c| c.task.max_attempts),
        )),
        strings(|c| c.outcome.status()),
        Arc::new(StringArray::from_iter(completions.iter().map(
            |c| match &c.outcome {
                Outcome::Failed { reason } => Some(reason.as_str()),
                _ => None,
            },
        ))),
        Arc::new(Int32Array::from_iter(
            completions.iter().map(|c| c.exit_code),
        )),
        Arc::new(UInt64Array::from_iter_values(
            completions.iter().map(|c| c.output_bytes),
        )),
        times(|c| c.task.submitted_at_us),
        times(|c| c.started_at_us),
        times(|c| c.finished_at_us),
        Arc::new(UInt64Array::from_iter_values(
            completions.iter().map(Completion::run_time_us),
        )),
        Arc::new(UInt32Array::from_iter_values(
            completions.iter().map(|c| c.shard),
        )),
    ];
    RecordBatch::try_new(completion_schema(), columns)
}
