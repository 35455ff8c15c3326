//! Batch sinks: hand each received batch to a closure on the worker thread.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::Operator;

use tidewater_operators::dataflow::TimedStream;

/// Calls `write` with the records that arrived since the sink last ran (any
/// epoch), on the worker that holds them: every batch of one activation is
/// gathered into one call, so that a sink committing to a durable store
/// commits once per activation rather than once per batch. Used for the
/// runtime's result, dead-letter and metric sinks.
pub fn sink_batches<'scope, D, F>(stream: TimedStream<'scope, D>, name: &str, mut write: F)
where
    D: Clone + 'static,
    F: FnMut(&mut Vec<D>) + 'static,
{
    let mut gathered: Vec<D> = Vec::new();
    stream.sink(Pipeline, name, move |(input, _frontier)| {
        input.for_each(|_cap, data| gathered.append(data));
        if !gathered.is_empty() {
            write(&mut gathered);
            gathered.clear();
        }
    });
}
