//! The continuous-query dataflow: metric events into exact, windowed,
//! grouped aggregates on differential dataflow.
//!
//! ```text
//!  metric events ─► Window (every query: filter, group, consolidate the
//!                   epoch; insert at the epoch, retract when the event
//!                   leaves the window)
//!    queries of count, sum and avg:
//!      ─► one collection of (query, group) with (count, fixed sum)
//!          differences
//!      ─► count_total: each group's accumulated moments ─► aggregates
//!    queries of min, max or quantiles:
//!      ─► one collection of (query, group, value) (each epoch's extremes,
//!          or every value when quantiles need them)
//!      ─► OrderStatistics: each group's sorted multiset ─► aggregates
//!  ─► result changes and group names, exchanged to worker 0
//!  ─► ResultSink: applies each epoch's changes once the epoch is complete
//!     and publishes the snapshot "as of" that epoch
//! ```
//!
//! Times are the pipeline's epochs (wall-clock milliseconds), so a sliding
//! window of 60,000 ms at epoch `e` covers the events of epochs
//! `e − 59,999 ..= e`. Every published result counts exactly the events up
//! to its `as_of` epoch and nothing later.

use differential_dataflow::operators::CountTotal;
use differential_dataflow::AsCollection;
use timely::dataflow::channels::pact::Exchange;
use timely::dataflow::operators::generic::Operator;
use timely::dataflow::operators::vec::Map;
use timely::dataflow::operators::Concat;

use tidewater_operators::dataflow::TimedStream;
use tidewater_operators::model::{Epoch, MetricEvent};

use super::aggregate::{aggregate_moments, encode};
use super::order_statistics::order_statistics;
use super::result_table::ResultTable;
use super::window::{window, KeyAnnouncement};
use super::{Aggregate, QueryResults, QuerySpec};

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
    if specs.is_empty() {
        return;
    }
    let publishes = metrics.scope().index() == 0;
    let windowed = window(metrics, specs);
    let aggregates: Vec<Vec<Aggregate>> = specs.iter().map(|s| s.aggregates.clone()).collect();
    let moments_aggregates = aggregates.clone();
    let moments = windowed
        .moments
        .as_collection()
        .count_total()
        .inner
        .flat_map(move |(((query, group), moments), epoch, diff)| {
            let aggregates = moments_aggregates.get(query as usize)?;
            aggregate_moments(moments, aggregates).map(|result| {
                let encoded = result.into_iter().map(encode).collect();
                ToSink::Result(query as usize, group, encoded, epoch, diff)
            })
        });
    let order = order_statistics(windowed.values, aggregates).map(
        |((query, group), encoded, epoch, diff)| {
            ToSink::Result(query as usize, group, encoded, epoch, diff)
        },
    );
    let all = windowed.keys.map(ToSink::Key).concat(moments).concat(order);
    // Results are exchanged to worker 0; only its sink publishes.
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
                        if table.take_changed(query) {
                            results.publish(spec, as_of, &table.groups(query));
                        } else {
                            results.advance(spec, as_of);
                        }
                    }
                    results.published(as_of);
                }
            }
        },
    );
}
