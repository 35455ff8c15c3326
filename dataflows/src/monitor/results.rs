//! The latest result of every query, as of the last complete epoch.
//!
//! The dataflow's result sink applies each epoch's changes once the epoch is
//! complete (the sink's input frontier passed it) and publishes a snapshot
//! here; the HTTP API and the Prometheus exporter read it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;

use tidewater_operators::model::Name;

use super::QuerySpec;

/// One group's row.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueryRow {
    /// The group's key, by dimension name.
    pub key: BTreeMap<String, String>,
    /// The aggregates, by label (`count`, `avg`, `p99`, …).
    pub values: BTreeMap<String, f64>,
}

/// A query's result.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct QueryResult {
    /// The query's name.
    pub name: String,
    /// The epoch the result is exact as of: it counts every event up to and
    /// including this epoch and nothing later. `None` before the first
    /// epoch completes.
    pub as_of: Option<u64>,
    /// One row per group.
    pub rows: Vec<QueryRow>,
}

/// When each epoch's results were published.
type PublishLog = Vec<(u64, std::time::Instant)>;

/// Query results shared between the dataflow and readers.
#[derive(Clone, Default)]
pub struct QueryResults {
    results: Arc<RwLock<BTreeMap<String, QueryResult>>>,
    /// When each snapshot was published, if recording (for benchmarks).
    publish_log: Option<Arc<std::sync::Mutex<PublishLog>>>,
}

impl QueryResults {
    /// Results for `specs`, empty until their first epoch completes.
    pub fn new(specs: &[QuerySpec]) -> Self {
        let results = specs
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    QueryResult {
                        name: s.name.clone(),
                        ..Default::default()
                    },
                )
            })
            .collect();
        QueryResults {
            results: Arc::new(RwLock::new(results)),
            publish_log: None,
        }
    }

    /// Also records when each epoch's results were published.
    pub fn with_publish_log(mut self) -> Self {
        self.publish_log = Some(Arc::default());
        self
    }

    /// `(as_of, when)` of every publication so far, if recording.
    pub fn publish_log(&self) -> Vec<(u64, std::time::Instant)> {
        self.publish_log
            .as_ref()
            .and_then(|log| log.lock().ok().map(|l| l.clone()))
            .unwrap_or_default()
    }

    /// Notes that every query was published as of `as_of`.
    pub fn published(&self, as_of: u64) {
        if let Some(log) = &self.publish_log {
            if let Ok(mut log) = log.lock() {
                log.push((as_of, std::time::Instant::now()));
            }
        }
    }

    /// Publishes a query's result.
    pub fn publish(&self, spec: &QuerySpec, as_of: u64, groups: &BTreeMap<Vec<Name>, Vec<f64>>) {
        let rows = groups
            .iter()
            .map(|(key, values)| QueryRow {
                key: spec
                    .group_by
                    .iter()
                    .zip(key)
                    .map(|(d, v)| (d.as_str().to_string(), v.to_string()))
                    .collect(),
                values: spec
                    .aggregates
                    .iter()
                    .zip(values)
                    .map(|(a, v)| (a.label(), *v))
                    .collect(),
            })
            .collect();
        if let Ok(mut results) = self.results.write() {
            results.insert(
                spec.name.clone(),
                QueryResult {
                    name: spec.name.clone(),
                    as_of: Some(as_of),
                    rows,
                },
            );
        }
    }

    /// Moves a query's result, unchanged, to `as_of` (its groups did not
    /// change since it was last published).
    pub fn advance(&self, spec: &QuerySpec, as_of: u64) {
        if let Ok(mut results) = self.results.write() {
            if let Some(result) = results.get_mut(&spec.name) {
                result.as_of = Some(as_of);
            }
        }
    }

    /// A query's latest result.
    pub fn get(&self, name: &str) -> Option<QueryResult> {
        self.results.read().ok()?.get(name).cloned()
    }

    /// Every query's latest result.
    pub fn all(&self) -> Vec<QueryResult> {
        self.results
            .read()
            .map(|r| r.values().cloned().collect())
            .unwrap_or_default()
    }
}
