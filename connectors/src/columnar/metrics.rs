//! Metric snapshots as Arrow record batches: at each snapshot, one row per
//! value the monitoring agent holds — every continuous query's aggregates
//! for each of its groups, and every built-in metric series — all stamped
//! with the time the snapshot was taken, so that a reader can chart any
//! value over time (`GROUP BY taken_at`).
//!
//! The rows are in long form (one value per row) so that queries with
//! different groupings and aggregates share one schema.

use std::sync::{Arc, OnceLock};

use arrow_array::builder::{MapBuilder, StringBuilder};
use arrow_array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use arrow_schema::{ArrowError, DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Where a sampled value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricSource {
    /// A continuous query's latest result (`[[queries]]`).
    Query,
    /// A built-in metric, as `GET /metrics` serves it.
    Builtin,
}

impl MetricSource {
    /// The name stored in the `source` column.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricSource::Query => "query",
            MetricSource::Builtin => "builtin",
        }
    }
}

/// One value of a snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricSample {
    /// Query result or built-in metric.
    pub source: MetricSource,
    /// The query's name, or the built-in metric family's
    /// (`tidewater_tasks_total`).
    pub metric: String,
    /// For a query, the epoch (milliseconds since the Unix epoch) its result
    /// is exact as of; `None` for built-in metrics and for a query that has
    /// no result yet.
    pub as_of: Option<u64>,
    /// The query group's key, or the series' labels, by name.
    pub labels: Vec<(String, String)>,
    /// Which value: the query's aggregate label (`count`, `avg`, `p99`, …),
    /// `value` for a counter or gauge, `count` or `sum` for a histogram.
    pub stat: String,
    /// The value.
    pub value: f64,
}

fn labels_type() -> DataType {
    // The layout `MapBuilder` produces with its default field names.
    DataType::Map(
        Arc::new(Field::new(
            "entries",
            DataType::Struct(Fields::from(vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ])),
            false,
        )),
        false,
    )
}

/// The columns of a metric snapshot batch.
///
/// | column | type | meaning |
/// |---|---|---|
/// | `taken_at` | timestamp µs UTC | when the snapshot was taken |
/// | `source` | utf8 | `query` or `builtin` |
/// | `metric` | utf8 | the query's or metric family's name |
/// | `as_of` | uint64, nullable | the epoch (ms) a query's result is exact as of |
/// | `labels` | map of utf8 to utf8 | the group key or series labels |
/// | `stat` | utf8 | `count`, `avg`, `p99`, …; `value`; `count`/`sum` of a histogram |
/// | `value` | float64 | |
pub fn metric_snapshot_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    Arc::clone(SCHEMA.get_or_init(|| {
        Arc::new(Schema::new(vec![
            Field::new(
                "taken_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("source", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("as_of", DataType::UInt64, true),
            Field::new("labels", labels_type(), false),
            Field::new("stat", DataType::Utf8, false),
            Field::new("value", DataType::Float64, false),
        ]))
    }))
}

/// The batch for one snapshot taken at `taken_at_us` (microseconds since
/// the Unix epoch), in [`metric_snapshot_schema`]'s columns.
pub fn metric_snapshot_batch(
    taken_at_us: u64,
    samples: &[MetricSample],
) -> Result<RecordBatch, ArrowError> {
    let taken_at = i64::try_from(taken_at_us).unwrap_or(i64::MAX);
    let mut labels = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for sample in samples {
        for (name, value) in &sample.labels {
            labels.keys().append_value(name);
            labels.values().append_value(value);
        }
        labels.append(true)?;
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(samples.iter().map(|_| taken_at))
                .with_timezone("UTC"),
        ),
        Arc::new(StringArray::from_iter_values(
            samples.iter().map(|s| s.source.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            samples.iter().map(|s| s.metric.as_str()),
        )),
        Arc::new(UInt64Array::from_iter(samples.iter().map(|s| s.as_of))),
        Arc::new(labels.finish()),
        Arc::new(StringArray::from_iter_values(
            samples.iter().map(|s| s.stat.as_str()),
        )),
        Arc::new(Float64Array::from_iter_values(
            samples.iter().map(|s| s.value),
        )),
    ];
    RecordBatch::try_new(metric_snapshot_schema(), columns)
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, MapArray};

    use super::*;

    #[test]
    fn a_snapshot_becomes_one_row_per_value_with_its_labels() {
        let samples = vec![
            MetricSample {
                source: MetricSource::Query,
                metric: "completed".into(),
                as_of: Some(1_700_000_000_000),
                labels: vec![
                    ("kind".into(), "sleep".into()),
                    ("status".into(), "ok".into()),
                ],
                stat: "count".into(),
                value: 40.0,
            },
            MetricSample {
                source: MetricSource::Builtin,
                metric: "tidewater_tasks_total".into(),
                as_of: None,
                labels: Vec::new(),
                stat: "value".into(),
                value: 3.5,
            },
        ];
        let batch = metric_snapshot_batch(5_000_000, &samples).expect("batch");
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), metric_snapshot_schema());
        let as_of = batch
            .column_by_name("as_of")
            .and_then(|c| c.as_any().downcast_ref::<UInt64Array>())
            .expect("as_of");
        assert_eq!(as_of.value(0), 1_700_000_000_000);
        assert!(as_of.is_null(1));
        let labels = batch
            .column_by_name("labels")
            .and_then(|c| c.as_any().downcast_ref::<MapArray>())
            .expect("labels");
        assert_eq!(labels.value_length(0), 2);
        assert_eq!(labels.value_length(1), 0);
        let keys = labels
            .keys()
            .as_any()
            .downcast_ref::<StringArray>()
            .expect("keys");
        assert_eq!((keys.value(0), keys.value(1)), ("kind", "status"));
        let values = batch
            .column_by_name("value")
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
            .expect("value");
        assert_eq!((values.value(0), values.value(1)), (40.0, 3.5));
        let empty = metric_snapshot_batch(1, &[]).expect("empty batch");
        assert_eq!(empty.num_rows(), 0);
    }
}
