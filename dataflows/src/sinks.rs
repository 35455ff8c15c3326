//! Batch sinks: hand each received batch to a closure on the worker thread.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use tidewater_operators::dataflow::TimedStream;

/// Calls `write` with each batch of records as it arrives (any epoch), on
/// the worker that holds them. Used for the runtime's result, dead-letter
/// and metric sinks.
pub fn sink_batches<'scope, D, F>(stream: TimedStream<'scope, D>, name: &str, mut write: F)
where
    D: Clone + 'static,
    F: FnMut(&mut Vec<D>) + 'static,
{
    stream.sink(Pipeline, name, move |(input, _frontier)| {
        input.for_each(|_cap, data| write(data));
    });
}
