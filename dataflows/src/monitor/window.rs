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
//!       window (an update at the window's end with the negated difference,
//!       held here and sent once no input before that time remains),
//!       into one of two collections shared by all queries: moments keyed
//!       by (query, group), values keyed by (query, group, value)
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

/// A query's index, as carried in updates.
pub type QueryIndex = u32;

/// A moments query's update: (query, group id), time, change in
/// (count, fixed sum).
pub type MomentsUpdate = ((QueryIndex, u64), Epoch, Moments);

/// Change in one value of a group's multiset: (multiplicity, and the
/// group's count and fixed-point sum). For the values plan the count is the
/// multiplicity and the sum the value's; for the extremes plan an epoch's
/// least value carries the epoch's whole count and sum, its greatest none.
pub type ValueDiff = (i64, i64, i128);

/// An extremes or values query's update: (query, group id, encoded value),
/// time, change.
pub type ValueUpdate = ((QueryIndex, u64, u64), Epoch, ValueDiff);

/// A group's id and values, announced once per worker and query:
/// (query index, group id, values).
pub type KeyAnnouncement = (usize, u64, Vec<Name>);

/// Every query's updates and the group announcements.
pub struct Windowed<'scope> {
    /// The moments plan's queries: one collection keyed by (query, group),
    /// with (count, fixed sum) differences.
    pub moments: Stream<'scope, Epoch, Vec<MomentsUpdate>>,
    /// The extremes and values plans' queries: one collection keyed by
    /// (query, group, value).
    pub values: Stream<'scope, Epoch, Vec<ValueUpdate>>,
    /// Group announcements of every query.
    pub keys: Stream<'scope, Epoch, Vec<KeyAnnouncement>>,
}

type Out<D> = OutputBuilder<Epoch, CapacityContainerBuilder<Vec<D>>>;

/// Output ports, in the order of an epoch's capabilities.
const MOMENTS_PORT: usize = 0;
const VALUES_PORT: usize = 1;
const KEYS_PORT: usize = 2;

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

/// An open epoch: a capability for each output port, and what each query
/// accumulated.
struct OpenEpoch {
    capabilities: [Capability<Epoch>; 3],
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
    let (moments_port, moments) = builder.new_output();
    let mut moments_port: Out<MomentsUpdate> = Out::from(moments_port);
    let (values_port, values) = builder.new_output();
    let mut values_port: Out<ValueUpdate> = Out::from(values_port);
    let (keys_port, keys) = builder.new_output();
    let mut keys_port: Out<KeyAnnouncement> = Out::from(keys_port);
    let mut state = Queries {
        specs: specs.to_vec(),
        grouped: specs
            .iter()
            .fold(DimensionSet::default(), |set, s| set.with(&s.group_by)),
        plans: specs
            .iter()
            .map(|s| AggregatePlan::of(&s.aggregates))
            .collect(),
        by_metric: Vec::new(),
        announced: vec![FxHashSet::default(); specs.len()],
    };

    builder.build(move |_initial_capabilities| {
        let mut open: BTreeMap<Epoch, OpenEpoch> = BTreeMap::new();
        // Accumulators of closed epochs, kept for their allocations.
        let mut spare: Vec<Vec<Accumulator>> = Vec::new();
        let mut retractions = HeldRetractions::default();
        move |frontiers| {
            input.for_each(|capability, events| {
                let Some(&epoch) = capability.least() else {
                    return;
                };
                let batch = open.entry(epoch).or_insert_with(|| OpenEpoch {
                    capabilities: [MOMENTS_PORT, VALUES_PORT, KEYS_PORT]
                        .map(|port| capability.delayed(&epoch, port)),
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
                {
                    let mut moments_handle = moments_port.activate();
                    let mut moments = moments_handle.session(&batch.capabilities[MOMENTS_PORT]);
                    let mut values_handle = values_port.activate();
                    let mut values = values_handle.session(&batch.capabilities[VALUES_PORT]);
                    for (q, accumulator) in batch.accumulators.iter_mut().enumerate() {
                        let expiry = state.specs[q].window.expiry(epoch);
                        let later =
                            expiry.map(|expiry| retractions.at(expiry, &batch.capabilities));
                        flush(
                            q as QueryIndex,
                            accumulator,
                            &mut |update| moments.give(update),
                            &mut |update| values.give(update),
                            later,
                            epoch,
                        );
                    }
                }
                if !batch.announcements.is_empty() {
                    let mut handle = keys_port.activate();
                    handle
                        .session(&batch.capabilities[KEYS_PORT])
                        .give_iterator(batch.announcements.drain(..));
                }
                spare.push(batch.accumulators);
            }
            // Retractions are due once no input before their time remains.
            let due = frontiers[0].frontier().first().copied();
            retractions.release(due, &mut moments_port, &mut values_port);
        }
    });
    Windowed {
        moments,
        values,
        keys,
    }
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

/// Sends a query's accumulated updates of `epoch`, inserted at the epoch;
/// when the query has a window, their retractions go to `later`, the
/// bucket of the time they leave it.
fn flush(
    query: QueryIndex,
    accumulator: &mut Accumulator,
    moments: &mut impl FnMut(MomentsUpdate),
    values: &mut impl FnMut(ValueUpdate),
    mut later: Option<&mut Retractions>,
    epoch: Epoch,
) {
    match accumulator {
        Accumulator::Moments(groups) => {
            for (group, (count, sum)) in groups.drain() {
                if let Some(later) = later.as_deref_mut() {
                    later
                        .moments
                        .push(((query, group), later.time, (-count, -sum)));
                }
                moments(((query, group), epoch, (count, sum)));
            }
        }
        Accumulator::Extremes(groups) => {
            for (group, ((count, sum), min, max)) in groups.drain() {
                // The least value carries the moments; both are one
                // element of the group's multiset of epoch extremes.
                for (value, (n, count, sum)) in [(min, (1, count, sum)), (max, (1, 0, 0))] {
                    if let Some(later) = later.as_deref_mut() {
                        later
                            .values
                            .push(((query, group, value), later.time, (-n, -count, -sum)));
                    }
                    values(((query, group, value), epoch, (n, count, sum)));
                }
            }
        }
        Accumulator::Values(counts) => {
            for ((group, value), n) in counts.drain() {
                let sum = to_fixed(decode(value)) * i128::from(n);
                if let Some(later) = later.as_deref_mut() {
                    later
                        .values
                        .push(((query, group, value), later.time, (-n, -n, -sum)));
                }
                values(((query, group, value), epoch, (n, n, sum)));
            }
        }
    }
}

/// Retractions due at one time.
#[derive(Default)]
struct Retractions {
    time: Epoch,
    moments: Vec<MomentsUpdate>,
    values: Vec<ValueUpdate>,
}

/// Retractions held until their time, so that downstream operators do not
/// carry (and re-examine at every epoch) updates for times far ahead of
/// their frontier; with capabilities at the earliest of those times.
#[derive(Default)]
struct HeldRetractions {
    by_time: BTreeMap<Epoch, Retractions>,
    /// Capabilities for the moments and values ports at or before the
    /// earliest held time.
    capabilities: Option<[Capability<Epoch>; 2]>,
}

impl HeldRetractions {
    /// The bucket for `time`, holding capabilities for it (derived from an
    /// epoch's `capabilities`, whose time is at most `time`).
    fn at(&mut self, time: Epoch, capabilities: &[Capability<Epoch>; 3]) -> &mut Retractions {
        let earlier = self
            .capabilities
            .as_ref()
            .is_none_or(|held| time < *held[0].time());
        if earlier {
            self.capabilities = Some([
                capabilities[MOMENTS_PORT].delayed(&time),
                capabilities[VALUES_PORT].delayed(&time),
            ]);
        }
        self.by_time.entry(time).or_insert_with(|| Retractions {
            time,
            ..Retractions::default()
        })
    }

    /// Sends the retractions due by `due` (every held one when the input is
    /// done) and keeps capabilities only for those still held.
    fn release(
        &mut self,
        due: Option<Epoch>,
        moments_port: &mut Out<MomentsUpdate>,
        values_port: &mut Out<ValueUpdate>,
    ) {
        let Some(capabilities) = self.capabilities.as_mut() else {
            return;
        };
        while let Some(entry) = self.by_time.first_entry() {
            if due.is_some_and(|due| *entry.key() > due) {
                break;
            }
            let mut retractions = entry.remove();
            if !retractions.moments.is_empty() {
                let mut handle = moments_port.activate();
                handle
                    .session(&capabilities[0])
                    .give_iterator(retractions.moments.drain(..));
            }
            if !retractions.values.is_empty() {
                let mut handle = values_port.activate();
                handle
                    .session(&capabilities[1])
                    .give_iterator(retractions.values.drain(..));
            }
        }
        match self.by_time.keys().next() {
            Some(next) => capabilities.iter_mut().for_each(|c| c.downgrade(next)),
            None => self.capabilities = None,
        }
    }
}
