//! The continuous-query dataflow: metric events into exact, windowed,
//! grouped aggregates on differential dataflow.
//!
//! ```text
//!  metric events ─► Window (per query: filter, key, value;
//!                   +1 at the event's epoch, −1 when it leaves the window)
//!                ─► differential collection ─► reduce by key (exact
//!                   aggregates of the group's sorted values)
//!                ─► results, exchanged to worker 0 ─► ResultSink: applies
//!                   each epoch's changes once the epoch is complete and
//!                   publishes the snapshot "as of" that epoch
//! ```
//!
//! Times are the pipeline's epochs (wall-clock milliseconds), so a sliding
//! window of 60,000 ms at epoch `e` covers the events of epochs
//! `e − 59,999 ..= e`. Every published result counts exactly the events up
//! to its `as_of` epoch and nothing later.

use std::collections::BTreeMap;

use differential_dataflow::AsCollection;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Concat;

use tidewater_operators::dataflow::TimedStream;
use tidewater_operators::model::{Epoch, MetricEvent, Name};

use super::aggregate::{aggregate, decode, encode};
use super::{QueryResults, QuerySpec};

/// A query's view of one event: (group key, encoded value), with the
/// epoch it enters or leaves the window and +1 or −1.
type WindowedUpdate = ((Vec<Name>, u64), Epoch, isize);

/// Each group's results as a multiset (one element once consolidated).
type Groups = BTreeMap<Vec<Name>, BTreeMap<Vec<u64>, isize>>;

/// One update of one query's result: (query index, group key, encoded
/// aggregates), with its epoch and multiplicity change.
type ResultUpdate = ((usize, (Vec<Name>, Vec<u64>)), Epoch, isize);

/// Runs `specs` over `metrics`, publishing results into `results` (on
/// worker 0, which receives every query's results).
pub fn continuous_queries<'scope>(
    metrics: TimedStream<'scope, MetricEvent>,
    specs: &[QuerySpec],
    results: QueryResults,
) {
    let metrics_scope_index = metrics.scope().index();
    let mut all: Option<timely::dataflow::Stream<'scope, Epoch, Vec<ResultUpdate>>> = None;
    for (index, spec) in specs.iter().enumerate() {
        let windowed = window(metrics.clone(), spec.clone());
        let aggregates = spec.aggregates.clone();
        let reduced = windowed
            .as_collection()
            .reduce(move |_key, values: &[(&u64, isize)], output| {
                let decoded: Vec<(f64, i64)> = values
                    .iter()
                    .filter(|(_, n)| *n > 0)
                    .map(|(v, n)| (decode(**v), *n as i64))
                    .collect();
                if let Some(result) = aggregate(&decoded, &aggregates) {
                    output.push((result.into_iter().map(encode).collect::<Vec<u64>>(), 1));
                }
            })
            .map(move |(key, values)| (index, (key, values)));
        let stream = reduced.inner;
        all = Some(match all {
            None => stream,
            Some(previous) => previous.concat(stream),
        });
    }
    let Some(all) = all else {
        return;
    };
    // Results are exchanged to worker 0; only its sink publishes.
    let publishes = metrics_scope_index == 0;
    let specs = specs.to_vec();
    let mut table = ResultTable::new(specs.len());
    all.sink(
        Exchange::new(|_update: &ResultUpdate| 0u64),
        "QueryResults",
        move |(input, frontier)| {
            input.for_each(|_cap, data| {
                for ((query, (key, values)), epoch, diff) in data.drain(..) {
                    table.stage(epoch, query, key, values, diff);
                }
            });
            // Every epoch before the frontier is complete.
            let complete_before = frontier.frontier().first().copied();
            table.apply_complete(complete_before);
            if let Some(before) = complete_before.filter(|_| publishes) {
                let as_of = before.saturating_sub(1);
                if table.published != Some(as_of) && before > 0 {
                    table.published = Some(as_of);
                    for (query, spec) in specs.iter().enumerate() {
                        results.publish(spec, as_of, &table.groups(query));
                    }
                }
            }
        },
    );
}

/// Per query: the events it sees as differential updates, each inserted at
/// its epoch and retracted when it leaves the window.
fn window<'scope>(
    metrics: TimedStream<'scope, MetricEvent>,
    spec: QuerySpec,
) -> timely::dataflow::Stream<'scope, Epoch, Vec<WindowedUpdate>> {
    metrics.unary(Pipeline, "Window", move |_cap, _info| {
        move |input, output| {
            input.for_each(|cap, data| {
                let Some(&epoch) = cap.least() else {
                    return;
                };
                let mut session = output.session(&cap);
                for event in data.drain(..) {
                    if !spec.filter.matches(&event) {
                        continue;
                    }
                    let key: Vec<Name> = spec.group_by.iter().map(|d| d.of(&event)).collect();
                    let value = encode(event.value);
                    if let Some(expiry) = spec.window.expiry(epoch) {
                        session.give(((key.clone(), value), expiry, -1));
                    }
                    session.give(((key, value), epoch, 1));
                }
            });
        }
    })
}

/// A change to one group's result, waiting for its epoch to complete.
type Staged = (usize, Vec<Name>, Vec<u64>, isize);

/// Applies result updates in epoch order as epochs complete.
struct ResultTable {
    pending: BTreeMap<Epoch, Vec<Staged>>,
    /// Per query, per group: the multiset of results.
    current: Vec<Groups>,
    published: Option<Epoch>,
}

impl ResultTable {
    fn new(queries: usize) -> Self {
        ResultTable {
            pending: BTreeMap::new(),
            current: vec![BTreeMap::new(); queries],
            published: None,
        }
    }

    fn stage(&mut self, epoch: Epoch, query: usize, key: Vec<Name>, values: Vec<u64>, diff: isize) {
        self.pending
            .entry(epoch)
            .or_default()
            .push((query, key, values, diff));
    }

    /// Applies every staged epoch before `before` (all of them if `None`).
    fn apply_complete(&mut self, before: Option<Epoch>) {
        while let Some(entry) = self.pending.first_entry() {
            if before.is_some_and(|b| *entry.key() >= b) {
                break;
            }
            for (query, key, values, diff) in entry.remove() {
                let group = self.current[query].entry(key.clone()).or_default();
                let count = group.entry(values.clone()).or_insert(0);
                *count += diff;
                if *count == 0 {
                    group.remove(&values);
                }
                if group.is_empty() {
                    self.current[query].remove(&key);
                }
            }
        }
    }

    /// A query's groups and their decoded aggregates.
    fn groups(&self, query: usize) -> BTreeMap<Vec<Name>, Vec<f64>> {
        self.current[query]
            .iter()
            .filter_map(|(key, results)| {
                results
                    .iter()
                    .find(|(_, n)| **n > 0)
                    .map(|(values, _)| (key.clone(), values.iter().map(|v| decode(*v)).collect()))
            })
            .collect()
    }
}
