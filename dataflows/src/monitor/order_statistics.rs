//! Order statistics (min, max, quantiles) of each group's values, kept
//! incrementally from a query's windowed value updates.
//!
//! ```text
//!  ((query, group, value), time, Δ(multiplicity, count, sum)),
//!    exchanged by group
//!    ─► staged by time until the input frontier passes it
//!    ─► applied in time order to each group's sorted multiset of values
//!       (all its values, or each epoch's extremes) and to its count and
//!       fixed-point sum
//!    ─► once per frontier advance: the changed groups' aggregates, as a
//!       retraction of the old result and an insertion of the new one at
//!       the last complete epoch
//! ```
//!
//! Each change costs a tree update rather than a recomputation of the
//! group from all its values, and a group's aggregates are recomputed once
//! per frontier advance however many epochs it covers. Memory is the
//! distinct values in each group's window.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::Capability;
use timely::dataflow::Stream;

use tidewater_operators::model::Epoch;

use super::aggregate::{aggregate_sorted, decode, encode, Moments};
use super::window::{QueryIndex, ValueDiff, ValueUpdate};
use super::Aggregate;

/// A change to a group's result: (query, group id), encoded aggregates,
/// time, ±1.
pub type ResultUpdate = ((QueryIndex, u64), Vec<u64>, Epoch, isize);

/// A value update waiting for its time to complete: (query, group, value)
/// and the change.
type StagedUpdate = ((QueryIndex, u64, u64), ValueDiff);

/// One group's values in the window.
#[derive(Default)]
struct GroupValues {
    /// Encoded value → multiplicity (always positive).
    values: BTreeMap<u64, i64>,
    moments: Moments,
    /// The result last sent downstream.
    sent: Option<Vec<u64>>,
    /// Whether the values changed since the result was sent.
    dirty: bool,
}

impl GroupValues {
    fn apply(&mut self, value: u64, (multiplicity, count, sum): ValueDiff) {
        let held = self.values.entry(value).or_insert(0);
        *held += multiplicity;
        if *held == 0 {
            self.values.remove(&value);
        }
        self.moments.0 += count;
        self.moments.1 += sum;
        self.dirty = true;
    }

    fn result(&self, aggregates: &[Aggregate]) -> Option<Vec<u64>> {
        let values = self.values.iter().map(|(v, n)| (decode(*v), *n));
        aggregate_sorted(self.moments, values, aggregates)
            .map(|result| result.into_iter().map(encode).collect())
    }
}

/// Maintains the aggregates of each query's groups in `updates`
/// (`aggregates[q]` for query `q`).
pub fn order_statistics<'scope>(
    updates: Stream<'scope, Epoch, Vec<ValueUpdate>>,
    aggregates: Vec<Vec<Aggregate>>,
) -> Stream<'scope, Epoch, Vec<ResultUpdate>> {
    let by_group = Exchange::new(|((query, group, _), _, _): &ValueUpdate| {
        group.wrapping_add(u64::from(*query))
    });
    updates.unary_frontier::<CapacityContainerBuilder<Vec<ResultUpdate>>, _, _, _>(
        by_group,
        "OrderStatistics",
        |_initial, _info| {
            let mut staged: BTreeMap<Epoch, Vec<StagedUpdate>> = BTreeMap::new();
            let mut groups: FxHashMap<(QueryIndex, u64), GroupValues> = FxHashMap::default();
            let mut changed: Vec<(QueryIndex, u64)> = Vec::new();
            // Held at or before the earliest staged time.
            let mut capability: Option<Capability<Epoch>> = None;
            move |(input, frontier), output| {
                input.for_each(|held, data| {
                    for (group_value, time, diff) in data.drain(..) {
                        staged.entry(time).or_default().push((group_value, diff));
                    }
                    if let Some(time) = held.least() {
                        if capability.as_ref().is_none_or(|c| time < c.time()) {
                            capability = held.retain_least(0);
                        }
                    }
                });
                let Some(held) = capability.as_mut() else {
                    return;
                };
                let mut last_applied = None;
                while let Some(entry) = staged.first_entry() {
                    if frontier.less_equal(entry.key()) {
                        break;
                    }
                    let (time, updates) = entry.remove_entry();
                    for ((query, group, value), diff) in updates {
                        let values = groups.entry((query, group)).or_default();
                        if !values.dirty {
                            changed.push((query, group));
                        }
                        values.apply(value, diff);
                    }
                    last_applied = Some(time);
                }
                let Some(last_applied) = last_applied else {
                    return;
                };
                // Results are as of the last complete epoch.
                let as_of = frontier
                    .frontier()
                    .first()
                    .map_or(last_applied, |f| f.saturating_sub(1));
                let at = held.delayed(&as_of);
                let mut session = output.session(&at);
                for group in changed.drain(..) {
                    let Some(values) = groups.get_mut(&group) else {
                        continue;
                    };
                    values.dirty = false;
                    let Some(aggregates) = aggregates.get(group.0 as usize) else {
                        continue;
                    };
                    let result = values.result(aggregates);
                    if result != values.sent {
                        if let Some(old) = values.sent.take() {
                            session.give((group, old, as_of, -1));
                        }
                        if let Some(new) = &result {
                            session.give((group, new.clone(), as_of, 1));
                        }
                        values.sent = result;
                    }
                    if values.values.is_empty() {
                        groups.remove(&group);
                    }
                }
                drop(session);
                match staged.keys().next() {
                    Some(next) => held.downgrade(next),
                    None => capability = None,
                }
            }
        },
    )
}
