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

use std::hash::{Hash, Hasher};
use tidewater_operators::dataflow::TimedStream;

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::vec::Map;

use tidewater_operators::model::{Epoch, MetricEvent, Name};

use super::aggregate::{aggregate, decode, encode};
use super::{Aggregate, Dimension, QueryResults, QuerySpec};

/// A query's view of events: (group id, encoded value), with the epoch it
/// enters or leaves the window and the change in count. Groups travel as
/// 64-bit ids (a hash of the group's values) so that differential dataflow
/// sorts and merges plain integers; each worker announces a group's values
/// once, the first time it sees the group.
type WindowedUpdate = ((u64, u64), Epoch, isize);

/// One query's windowed updates and its group announcements.
type QueryWindow<'scope> = (
    timely::dataflow::Stream<'scope, Epoch, Vec<WindowedUpdate>>,
    timely::dataflow::Stream<'scope, Epoch, Vec<KeyAnnouncement>>,
);

/// Groups sharing a hash of their values, each with its values' counts.
type HashSlot = Vec<(Vec<Name>, FxHashMap<u64, isize>)>;

/// A group id and its values, announced once per worker and query.
type KeyAnnouncement = (usize, u64, Vec<Name>);

/// Each group's results as a multiset (one element once consolidated).
type Groups = BTreeMap<u64, BTreeMap<Vec<u64>, isize>>;

/// What the result sink receives: a change to a query's result for a
/// group, or a group's values.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
enum ToSink {
    /// (query, group id, encoded aggregates), epoch, change.
    Result(usize, u64, Vec<u64>, Epoch, isize),
    /// A group's values.
    Key(KeyAnnouncement),
}

/// Runs `specs` over `metrics`, publishing results into `results` (on
/// worker 0, which receives every query's results).
pub fn continuous_queries<'scope>(
    metrics: TimedStream<'scope, MetricEvent>,
    specs: &[QuerySpec],
    results: QueryResults,
) {
    let metrics_scope_index = metrics.scope().index();
    let mut all: Option<timely::dataflow::Stream<'scope, Epoch, Vec<ToSink>>> = None;
    let windows = window(metrics, specs.to_vec());
    for (index, (spec, (windowed, keys))) in specs.iter().zip(windows).enumerate() {
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
            .inner
            .map(move |((key, values), epoch, diff)| {
                ToSink::Result(index, key, values, epoch, diff)
            })
            .concat(keys.map(ToSink::Key));
        let stream = reduced;
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
        Exchange::new(|_update: &ToSink| 0u64),
        "QueryResults",
        move |(input, frontier)| {
            input.for_each(|_cap, data| {
                for update in data.drain(..) {
                    match update {
                        ToSink::Result(query, key, values, epoch, diff) => {
                            table.stage(epoch, query, key, values, diff)
                        }

                        ToSink::Key((query, key, names)) => table.name(query, key, names),
                    }
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
                    results.published(as_of);
                }
            }
        },
    );
}

/// Per query: the events it sees as differential updates, each inserted at
/// its epoch and retracted when it leaves the window. Each received batch
/// is consolidated first: one update per distinct (group, value) — and per
/// group only, when the query needs nothing but counts — so differential
/// work grows with distinct values, not with events.
fn window<'scope>(
    metrics: TimedStream<'scope, MetricEvent>,
    specs: Vec<QuerySpec>,
) -> Vec<QueryWindow<'scope>> {
    type UpdatesOut = OutputBuilder<Epoch, CapacityContainerBuilder<Vec<WindowedUpdate>>>;
    type KeysOut = OutputBuilder<Epoch, CapacityContainerBuilder<Vec<KeyAnnouncement>>>;
    // One operator for every query, so that each batch of events is read
    // once rather than copied to each query.
    let mut builder = OperatorBuilder::new("Window".to_owned(), metrics.scope());
    let mut input = builder.new_input(metrics, Pipeline);
    let mut outputs: Vec<(UpdatesOut, KeysOut)> = Vec::new();
    let mut streams = Vec::new();
    for _ in &specs {
        let (updates_out, updates) = builder.new_output();
        let (keys_out, keys) = builder.new_output();
        outputs.push((UpdatesOut::from(updates_out), KeysOut::from(keys_out)));
        streams.push((updates, keys));
    }
    builder.build(move |_capabilities| {
        let mut batches: Vec<BatchConsolidator> =
            specs.iter().map(|_| BatchConsolidator::default()).collect();
        let mut announced: Vec<FxHashSet<u64>> =
            specs.iter().map(|_| FxHashSet::default()).collect();
        let counts_only: Vec<bool> = specs
            .iter()
            .map(|s| s.aggregates.iter().all(|a| matches!(a, Aggregate::Count)))
            .collect();
        move |_frontiers| {
            input.for_each(|cap, data| {
                let Some(&epoch) = cap.least() else {
                    return;
                };
                for event in data.iter() {
                    for (q, spec) in specs.iter().enumerate() {
                        if spec.filter.matches(event) {
                            let value = if counts_only[q] {
                                encode(0.0)
                            } else {
                                encode(event.value)
                            };
                            batches[q].add(&spec.group_by, event, value);
                        }
                    }
                }
                for (q, spec) in specs.iter().enumerate() {
                    let (updates_out, keys_out) = &mut outputs[q];
                    let mut updates_handle = updates_out.activate();
                    let mut keys_handle = keys_out.activate();
                    let mut session = updates_handle.session(&cap);
                    let mut new_keys = keys_handle.session(&cap);
                    let expiry = spec.window.expiry(epoch);
                    for (names, values) in batches[q].drain() {
                        let id = group_id(&names);
                        if announced[q].insert(id) {
                            new_keys.give((q, id, names));
                        }
                        for (value, count) in values {
                            if let Some(expiry) = expiry {
                                session.give(((id, value), expiry, -count));
                            }
                            session.give(((id, value), epoch, count));
                        }
                    }
                }
            });
        }
    });
    streams
}

/// A group's id: a 64-bit SipHash of its values (collisions are negligible
/// for any realistic number of groups: about 3 in 10^8 at a million groups).
fn group_id(names: &[Name]) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    names.hash(&mut hasher);
    hasher.finish()
}

/// Counts of (group, value) within one batch, keyed without allocating per
/// event: a hash of the group's dimension values finds the group, whose key
/// is built once.
#[derive(Default)]
struct BatchConsolidator {
    groups: FxHashMap<u64, HashSlot>,
}

impl BatchConsolidator {
    fn add(&mut self, dims: &[Dimension], event: &MetricEvent, value: u64) {
        let mut hasher = FxHasher::default();
        for d in dims {
            d.hash_value(event, &mut hasher);
        }
        let slot = self.groups.entry(hasher.finish()).or_default();
        let index = match slot
            .iter()
            .position(|(key, _)| dims.iter().zip(key).all(|(d, k)| d.value_eq(event, k)))
        {
            Some(index) => index,
            None => {
                slot.push((
                    dims.iter().map(|d| d.of(event)).collect(),
                    FxHashMap::default(),
                ));
                slot.len() - 1
            }
        };
        *slot[index].1.entry(value).or_insert(0) += 1;
    }

    fn drain(&mut self) -> impl Iterator<Item = (Vec<Name>, FxHashMap<u64, isize>)> + '_ {
        self.groups.drain().flat_map(|(_, slot)| slot.into_iter())
    }
}

/// A change to one group's result, waiting for its epoch to complete.
type Staged = (usize, u64, Vec<u64>, isize);

/// Applies result updates in epoch order as epochs complete.
struct ResultTable {
    pending: BTreeMap<Epoch, Vec<Staged>>,
    /// Per query, per group: the multiset of results.
    current: Vec<Groups>,
    /// Each query's group ids and their values.
    names: Vec<FxHashMap<u64, Vec<Name>>>,
    published: Option<Epoch>,
}

impl ResultTable {
    fn new(queries: usize) -> Self {
        ResultTable {
            pending: BTreeMap::new(),
            current: vec![BTreeMap::new(); queries],
            names: vec![FxHashMap::default(); queries],
            published: None,
        }
    }

    fn name(&mut self, query: usize, key: u64, names: Vec<Name>) {
        self.names[query].entry(key).or_insert(names);
    }

    fn stage(&mut self, epoch: Epoch, query: usize, key: u64, values: Vec<u64>, diff: isize) {
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
                let group = self.current[query].entry(key).or_default();
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
                let names = self.names[query].get(key)?;
                results
                    .iter()
                    .find(|(_, n)| **n > 0)
                    .map(|(values, _)| (names.clone(), values.iter().map(|v| decode(*v)).collect()))
            })
            .collect()
    }
}
