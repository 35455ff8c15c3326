//! Experience batches as Apache Arrow record batches.
//!
//! Final completions arrive one [`Experience`] at a time; the learner
//! collects them in an [`ExperienceBatcher`] and trains on whole columnar
//! batches ([`RecordBatch`] with [`experience_schema`]), the same form a
//! later export to files or another process would use. [`to_record_batch`]
//! and [`from_record_batch`] convert both ways; a batch whose columns do not
//! match the schema is a typed [`BatchError`], never a panic.

use std::sync::{Arc, OnceLock};

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type, UInt64Type, UInt8Type};
use arrow_array::{
    Array, ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array,
    UInt64Array, UInt8Array,
};
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef};

use crate::model::{Experience, Name};

/// Why a batch could not be built or read.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Arrow refused the columns.
    #[error("building an experience batch: {0}")]
    Arrow(#[from] ArrowError),
    /// A column is missing or of the wrong type.
    #[error("experience batch column {column:?}: expected {expected}")]
    Column {
        /// The column.
        column: &'static str,
        /// Its expected type.
        expected: &'static str,
    },
    /// A required value is null.
    #[error("experience batch column {column:?} row {row}: null")]
    Null {
        /// The column.
        column: &'static str,
        /// The row.
        row: usize,
    },
}

/// The columns of an experience batch, one per [`Experience`] field.
pub fn experience_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new("task_kind", DataType::Utf8, false),
            Field::new("tenant", DataType::Utf8, false),
            Field::new("cpu_milli", DataType::UInt32, false),
            Field::new("memory_mib", DataType::UInt32, false),
            Field::new("gpu_milli", DataType::UInt32, false),
            Field::new("requested_runtime_s", DataType::UInt32, true),
            Field::new("queue", DataType::Utf8, false),
            Field::new("hour_of_day", DataType::UInt8, false),
            Field::new("payload_bytes", DataType::UInt32, false),
            Field::new("executor_class", DataType::Utf8, false),
            Field::new("run_time_s", DataType::Float64, false),
            Field::new("succeeded", DataType::Boolean, false),
            Field::new("finished_at_ms", DataType::UInt64, false),
        ]))
    }))
}

/// Columns from experiences, in schema order.
pub fn to_record_batch(experiences: &[Experience]) -> Result<RecordBatch, BatchError> {
    let strings = |f: fn(&Experience) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(experiences.iter().map(f)))
    };
    let u32s = |f: fn(&Experience) -> u32| -> ArrayRef {
        Arc::new(UInt32Array::from_iter_values(experiences.iter().map(f)))
    };
    let columns: Vec<ArrayRef> = vec![
        strings(|e| &e.task_kind),
        strings(|e| &e.tenant),
        u32s(|e| e.cpu_milli),
        u32s(|e| e.memory_mib),
        u32s(|e| e.gpu_milli),
        Arc::new(UInt32Array::from_iter(
            experiences.iter().map(|e| e.requested_runtime_s),
        )),
        strings(|e| &e.queue),
        Arc::new(UInt8Array::from_iter_values(
            experiences.iter().map(|e| e.hour_of_day),
        )),
        u32s(|e| e.payload_bytes),
        strings(|e| &e.executor_class),
        Arc::new(Float64Array::from_iter_values(
            experiences.iter().map(|e| e.run_time_s),
        )),
        Arc::new(BooleanArray::from_iter(
            experiences.iter().map(|e| Some(e.succeeded)),
        )),
        Arc::new(UInt64Array::from_iter_values(
            experiences.iter().map(|e| e.finished_at_ms),
        )),
    ];
    Ok(RecordBatch::try_new(experience_schema(), columns)?)
}

fn column<'b>(batch: &'b RecordBatch, name: &'static str) -> Result<&'b ArrayRef, BatchError> {
    batch.column_by_name(name).ok_or(BatchError::Column {
        column: name,
        expected: "present",
    })
}

fn strings<'b>(batch: &'b RecordBatch, name: &'static str) -> Result<&'b StringArray, BatchError> {
    column(batch, name)?
        .as_string_opt::<i32>()
        .ok_or(BatchError::Column {
            column: name,
            expected: "utf8",
        })
}

macro_rules! primitive {
    ($batch:expr, $name:expr, $type:ty, $expected:expr) => {
        column($batch, $name)?
            .as_primitive_opt::<$type>()
            .ok_or(BatchError::Column {
                column: $name,
                expected: $expected,
            })
    };
}

/// Experiences from a batch with [`experience_schema`]'s columns (extra
/// columns are ignored).
pub fn from_record_batch(batch: &RecordBatch) -> Result<Vec<Experience>, BatchError> {
    let kind = strings(batch, "task_kind")?;
    let tenant = strings(batch, "tenant")?;
    let queue = strings(batch, "queue")?;
    let executor = strings(batch, "executor_class")?;
    let cpu = primitive!(batch, "cpu_milli", UInt32Type, "uint32")?;
    let memory = primitive!(batch, "memory_mib", UInt32Type, "uint32")?;
    let gpu = primitive!(batch, "gpu_milli", UInt32Type, "uint32")?;
    let requested = primitive!(batch, "requested_runtime_s", UInt32Type, "uint32")?;
    let hour = primitive!(batch, "hour_of_day", UInt8Type, "uint8")?;
    let payload = primitive!(batch, "payload_bytes", UInt32Type, "uint32")?;
    let run = primitive!(batch, "run_time_s", Float64Type, "float64")?;
    let finished = primitive!(batch, "finished_at_ms", UInt64Type, "uint64")?;
    let succeeded = column(batch, "succeeded")?
        .as_boolean_opt()
        .ok_or(BatchError::Column {
            column: "succeeded",
            expected: "boolean",
        })?;
    let required: [(&'static str, &dyn Array); 12] = [
        ("task_kind", kind),
        ("tenant", tenant),
        ("queue", queue),
        ("executor_class", executor),
        ("cpu_milli", cpu),
        ("memory_mib", memory),
        ("gpu_milli", gpu),
        ("hour_of_day", hour),
        ("payload_bytes", payload),
        ("run_time_s", run),
        ("finished_at_ms", finished),
        ("succeeded", succeeded),
    ];
    for (name, array) in required {
        if array.null_count() > 0 {
            let row = (0..array.len()).find(|&r| array.is_null(r)).unwrap_or(0);
            return Err(BatchError::Null { column: name, row });
        }
    }
    Ok((0..batch.num_rows())
        .map(|r| Experience {
            task_kind: Name::from(kind.value(r)),
            tenant: Name::from(tenant.value(r)),
            cpu_milli: cpu.value(r),
            memory_mib: memory.value(r),
            gpu_milli: gpu.value(r),
            requested_runtime_s: requested.is_valid(r).then(|| requested.value(r)),
            queue: Name::from(queue.value(r)),
            hour_of_day: hour.value(r),
            payload_bytes: payload.value(r),
            executor_class: Name::from(executor.value(r)),
            run_time_s: run.value(r),
            succeeded: succeeded.value(r),
            finished_at_ms: finished.value(r),
        })
        .collect())
}

/// Collects experiences into record batches of a fixed number of rows.
#[derive(Debug)]
pub struct ExperienceBatcher {
    rows: usize,
    pending: Vec<Experience>,
}

impl ExperienceBatcher {
    /// Batches of `rows` experiences (at least 1).
    pub fn new(rows: usize) -> Self {
        let rows = rows.max(1);
        ExperienceBatcher {
            rows,
            pending: Vec::with_capacity(rows),
        }
    }

    /// Experiences waiting for a full batch.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds one experience; returns a batch when `rows` are collected.
    pub fn push(&mut self, experience: Experience) -> Result<Option<RecordBatch>, BatchError> {
        self.pending.push(experience);
        if self.pending.len() < self.rows {
            return Ok(None);
        }
        self.flush()
    }

    /// A batch of whatever is pending (`None` when nothing is).
    pub fn flush(&mut self) -> Result<Option<RecordBatch>, BatchError> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let batch = to_record_batch(&self.pending)?;
        self.pending.clear();
        Ok(Some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn experience(i: u32) -> Experience {
        Experience {
            task_kind: Name::from(if i.is_multiple_of(2) { "train" } else { "etl" }),
            tenant: Name::from(format!("tenant-{}", i % 3).as_str()),
            cpu_milli: 100 * i,
            memory_mib: 64 + i,
            gpu_milli: if i.is_multiple_of(4) { 500 } else { 0 },
            requested_runtime_s: (!i.is_multiple_of(3)).then_some(30 * i),
            queue: Name::from("http"),
            hour_of_day: (i % 24) as u8,
            payload_bytes: i * 10,
            executor_class: Name::from("cpu"),
            run_time_s: f64::from(i) * 1.5,
            succeeded: !i.is_multiple_of(5),
            finished_at_ms: 1_700_000_000_000 + u64::from(i),
        }
    }

    #[test]
    fn batches_round_trip() {
        let experiences: Vec<Experience> = (0..37).map(experience).collect();
        let batch = to_record_batch(&experiences).expect("batch");
        assert_eq!(batch.num_rows(), 37);
        assert_eq!(batch.schema(), experience_schema());
        assert_eq!(from_record_batch(&batch).expect("read"), experiences);
        let empty = to_record_batch(&[]).expect("empty batch");
        assert!(from_record_batch(&empty).expect("read").is_empty());
    }

    #[test]
    fn batcher_emits_full_batches_and_flushes_the_rest() {
        let mut batcher = ExperienceBatcher::new(8);
        let mut batches = Vec::new();
        for i in 0..20 {
            if let Some(b) = batcher.push(experience(i)).expect("push") {
                batches.push(b);
            }
        }
        assert_eq!(batches.len(), 2);
        assert_eq!(batcher.pending(), 4);
        let rest = batcher.flush().expect("flush").expect("four pending");
        assert_eq!(rest.num_rows(), 4);
        assert!(batcher.flush().expect("flush").is_none());
        let all: Vec<Experience> = batches
            .iter()
            .chain([&rest])
            .flat_map(|b| from_record_batch(b).expect("read"))
            .collect();
        assert_eq!(all, (0..20).map(experience).collect::<Vec<_>>());
    }

    #[test]
    fn mismatched_batches_are_typed_errors() {
        let schema = Arc::new(Schema::new(vec![Field::new(
            "task_kind",
            DataType::UInt32,
            false,
        )]));
        let batch = RecordBatch::try_new(
            schema,
            vec![Arc::new(UInt32Array::from(vec![1u32])) as ArrayRef],
        )
        .expect("batch");
        let err = from_record_batch(&batch).expect_err("wrong type");
        assert!(matches!(
            err,
            BatchError::Column {
                column: "task_kind",
                ..
            }
        ));
    }
}
