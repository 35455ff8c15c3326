//! The window operator: every query's view of the metric stream, as
//! differential updates consolidated per epoch.
//!
//! ```text
//!  metric events (one epoch at a time)
//!    ─► per event: the hashes of the grouped dimensions, once for all
//!       queries, and the queries whose metric filter it passes
//!    ─► per query: rest of the filter ─► group id ─► the epoch's accumulator
//!         moments plan (count, sum, avg):  group ─► (count, fixed sum)
//!         extremes plan (+ min, max):      group ─► (count, sum, min, max)
//!         values plan (quantiles):         (group, value) ─► count
//!    ─► when the epoch closes: each accumulated update inserted at the
//!       epoch and, for windowed queries, retracted when it leaves the
//!       window (an update at the window's end with the negated difference)
//! ```
//!
//! Consolidating a whole epoch before anything leaves the operator makes the
//! rest of the dataflow's work grow with the distinct groups (or group
//! values) per epoch rather than with events. A group's values are
//! announced once per worker, the first time the worker sees the group.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use tidewater_operators::dataflow::TimedStream;
use tidewater_operators::model::{Epoch, MetricEvent, Name};

use super::aggregate::{decode, encode, to_fixed, AggregatePlan, Moments};
use super::group_key::{group_values, DimensionHashes, DimensionSet};
use super::QuerySpec;

/// A moments query's update: group id, time, change in (count, fixed sum).
pub type MomentsUpdate = (u64, Epoch, Moments);

/// Change in one value of a group's multiset: (multiplicity, and the
/// group's count and fixed-point sum). For the values plan the count is the
/// multiplicity and the sum the value's; for the extremes plan an epoch's
/// least value carries the epoch's whole count and sum, its greatest none.
pub type ValueDiff = (i64, i64, i128);

/// A value query's update: (group id, encoded value), time, change.
pub type ValueUpdate = ((u64, u64), Epoch, ValueDiff);

/// A group's id and values, announced once per worker and query:
/// (query index, group id, values).
pub type KeyAnnouncement = (usize, u64, Vec<Name>);

/// One query's windowed updates.
pub enum QueryUpdates<'scope> {
    /// Per group: count and sum (every aggregate follows from them).
    Moments(Stream<'scope, Epoch, Vec<MomentsUpdate>>),
    /// Per group and value: changes to the group's multiset of values (all
    /// of them, or each epoch's extremes) and to its moments.
    Values(Stream<'scope, Epoch, Vec<ValueUpdate>>),
}

/// Every query's updates and the group announcements.
pub struct Windowed<'scope> {
    /// Per query, in the order of the specs.
    pub queries: Vec<QueryUpdates<'scope>>,
    /// Group announcements of every query.
    pub keys: Stream<'scope, Epoch, Vec<KeyAnnouncement>>,
}

type Out<D> = OutputBuilder<Epoch, CapacityContainerBuilder<Vec<D>>>;

/// A query's output port.
enum Port {
    Moments(Out<MomentsUpdate>),
    Values(Out<ValueUpdate>),
}

/// A group's moments and least and greatest encoded values in one epoch.
type Extremes = (Moments, u64, u64);

/// One query's updates within an epoch, consolidated.
enum Accumulator {
    Moments(FxHashMap<u64, Moments>),
    Extremes(FxHashMap<u64, Extremes>),
    Values(FxHashMap<(u64, u64), i64>),
}

impl Accumulator {
    fn new(plan: AggregatePlan) -> Self {
        match plan {
            AggregatePlan::Moments => Accumulator::Moments(FxHashMap::default()),
            AggregatePlan::Extremes => Accumulator::Extremes(FxHashMap::default()),
            AggregatePlan::Values => Accumulator::Values(FxHashMap::default()),
        }
    }
}

/// An open epoch: capabilities to send its updates, one per output port
/// (each query's, then the announcements'), and what it accumulated.
struct OpenEpoch {
    capabilities: Vec<Capability<Epoch>>,
    accumulators: Vec<Accumulator>,
    announcements: Vec<KeyAnnouncement>,
}

/// What the operator knows of its queries.
struct Queries {
    specs: Vec<QuerySpec>,
    plans: Vec<AggregatePlan>,
    /// The dimensions any query groups by.
    grouped: DimensionSet,
    /// Per metric kind (by discriminant), the queries whose metric filter
    /// it passes; filled on first sight of each kind.
    by_metric: Vec<Option<Vec<usize>>>,
    /// Per query, the groups this worker announced.
    announced: Vec<FxHashSet<u64>>,
}

/// Builds the window operator for `specs` over `metrics`.
pub fn window<'scope>(
    metrics: TimedStream<'scope, MetricEvent>,
    specs: &[QuerySpec],
) -> Windowed<'scope> {
    // One operator for every query, so that each batch of events is read
    // once rather than copied to each query.
    let mut builder = OperatorBuilder::new("Window".to_owned(), metrics.scope());
    let mut input = builder.new_input(metrics, Pipeline);
    let plans: Vec<AggregatePlan> = specs
        .iter()
        .map(|s| AggregatePlan::of(&s.aggregates))
        .collect();
    let mut ports = Vec::with_capacity(specs.len());
    let mut queries = Vec::with_capacity(specs.len());
    for plan in &plans {
        if *plan == AggregatePlan::Moments {
            let (port, stream) = builder.new_output();
            ports.push(Port::Moments(Out::from(port)));
            queries.push(QueryUpdates::Moments(stream));
        } else {
            let (port, stream) = builder.new_output();
            ports.push(Port::Values(Out::from(port)));
            queries.push(QueryUpdates::Values(stream));
        }
    }
    let (keys_port, keys) = builder.new_output();
    let mut keys_port: Out<KeyAnnouncement> = Out::from(keys_port);
    let keys_port_index = specs.len();
    let mut state = Queries {
        specs: specs.to_vec(),
        grouped: specs
            .iter()
            .fold(DimensionSet::default(), |set, s| set.with(&s.group_by)),
        plans,
        by_metric: Vec::new(),
        announced: vec![FxHashSet::default(); specs.len()],
    };

    builder.build(move |_initial_capabilities| {
        let mut open: BTreeMap<Epoch, OpenEpoch> = BTreeMap::new();
        // Accumulators of closed epochs, kept for their allocations.
        let mut spare: Vec<Vec<Accumulator>> = Vec::new();
        move |frontiers| {
            input.for_each(|capability, events| {
                let Some(&epoch) = capability.least() else {
                    return;
                };
                let batch = open.entry(epoch).or_insert_with(|| OpenEpoch {
                    capabilities: (0..=keys_port_index)
                        .map(|port| capability.delayed(&epoch, port))
                        .collect(),
                    accumulators: spare.pop().unwrap_or_else(|| {
                        state.plans.iter().map(|p| Accumulator::new(*p)).collect()
                    }),
                    announcements: Vec::new(),
                });
                for event in events.iter() {
                    state.accumulate(event, batch);
                }
            });
            // Epochs the input frontier has passed are complete.
            while let Some(entry) = open.first_entry() {
                if frontiers[0].less_equal(entry.key()) {
                    break;
                }
                let (epoch, mut batch) = entry.remove_entry();
                for (q, (port, accumulator)) in
                    ports.iter_mut().zip(&mut batch.accumulators).enumerate()
                {
                    let expiry = state.specs[q].window.expiry(epoch);
                    flush(port, accumulator, &batch.capabilities[q], epoch, expiry);
                }
                if !batch.announcements.is_empty() {
                    let mut handle = keys_port.activate();
                    handle
                        .session(&batch.capabilities[keys_port_index])
                        .give_iterator(batch.announcements.drain(..));
                }
                spare.push(batch.accumulators);
            }
        }
    });
    Windowed { queries, keys }
}

impl Queries {
    /// The queries whose metric filter `event` passes.
    fn for_metric(&mut self, event: &MetricEvent) -> &[usize] {
        let kind = event.kind as usize;
        if self.by_metric.len() <= kind {
            self.by_metric.resize(kind + 1, None);
        }
        let specs = &self.specs;
        self.by_metric[kind].get_or_insert_with(|| {
            (0..specs.len())
                .filter(|q| specs[*q].filter.metric.is_none_or(|m| m == event.kind))
                .collect()
        })
    }

    /// Adds `event` to every query whose filter it passes.
    fn accumulate(&mut self, event: &MetricEvent, batch: &mut OpenEpoch) {
        let hashes = DimensionHashes::of(event, self.grouped);
        let encoded = encode(event.value);
        let fixed = to_fixed(event.value);
        let kind = event.kind as usize;
        self.for_metric(event);
        let Some(Some(relevant)) = self.by_metric.get(kind) else {
            return;
        };
        for &q in relevant {
            let spec = &self.specs[q];
            if !spec.filter.matches(event) {
                continue;
            }
            let group = hashes.group_id(&spec.group_by);
            let mut new = false;
            match &mut batch.accumulators[q] {
                Accumulator::Moments(groups) => {
                    let moments = groups.entry(group).or_insert_with(|| {
                        new = true;
                        (0, 0)
                    });
                    moments.0 += 1;
                    moments.1 += fixed;
                }
                Accumulator::Extremes(groups) => {
                    let ((count, sum), min, max) = groups.entry(group).or_insert_with(|| {
                        new = true;
                        ((0, 0), encoded, encoded)
                    });
                    *count += 1;
                    *sum += fixed;
                    *min = (*min).min(encoded);
                    *max = (*max).max(encoded);
                }
                Accumulator::Values(values) => {
                    *values.entry((group, encoded)).or_insert_with(|| {
                        new = true;
                        0
                    }) += 1;
                }
            }
            if new && self.announced[q].insert(group) {
                batch
                    .announcements
                    .push((q, group, group_values(&spec.group_by, event)));
            }
        }
    }
}

/// Sends a query's accumulated updates of `epoch`: each inserted at the
/// epoch and, when the query has a window, retracted at `expiry`.
fn flush(
    port: &mut Port,
    accumulator: &mut Accumulator,
    capability: &Capability<Epoch>,
    epoch: Epoch,
    expiry: Option<Epoch>,
) {
    match (port, accumulator) {
        (Port::Moments(port), Accumulator::Moments(groups)) => {
            let mut handle = port.activate();
            let mut session = handle.session(capability);
            for (group, (count, sum)) in groups.drain() {
                if let Some(expiry) = expiry {
                    session.give((group, expiry, (-count, -sum)));
                }
                session.give((group, epoch, (count, sum)));
            }
        }
        (Port::Values(port), Accumulator::Extremes(groups)) => {
            let mut handle = port.activate();
            let mut session = handle.session(capability);
            for (group, ((count, sum), min, max)) in groups.drain() {
                // The least value carries the moments; both are one
                // element of the group's multiset of epoch extremes.
                let updates = [((group, min), (1, count, sum)), ((group, max), (1, 0, 0))];
                for (group_value, (n, count, sum)) in updates {
                    if let Some(expiry) = expiry {
                        session.give((group_value, expiry, (-n, -count, -sum)));
                    }
                    session.give((group_value, epoch, (n, count, sum)));
                }
            }
        }
        (Port::Values(port), Accumulator::Values(values)) => {
            let mut handle = port.activate();
            let mut session = handle.session(capability);
            for ((group, value), n) in values.drain() {
                let sum = to_fixed(decode(value)) * i128::from(n);
                if let Some(expiry) = expiry {
                    session.give(((group, value), expiry, (-n, -n, -sum)));
                }
                session.give(((group, value), epoch, (n, n, sum)));
            }
        }
        // Ports and accumulators are built from the same plans, so their
        // kinds always agree.
        _ => {}
    }
}
