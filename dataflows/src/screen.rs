//! The screen between decoding and coordination: a per-worker check that
//! may turn decoded tasks into rejections before anything runs them.
//!
//! ```text
//!  Decode ─► tasks ─► Screen ─┬─► tasks ─► Coordinate …
//!                             └─► rejections ─► (dead letters, acks)
//! ```
//!
//! The runtime screens broker deliveries against the store: it admits
//! them, and a delivery whose id another submission already holds leaves
//! as a `duplicate` rejection (see `tidewater::screen`). Each batch the
//! operator receives is one call, so that a screen can do its work in one
//! store transaction.

use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::core::OkErr;
use timely::dataflow::operators::generic::operator::Operator;

use tidewater_operators::dataflow::TimedStream;
use tidewater_operators::model::{Rejection, Task};

/// Decides, for a batch of decoded tasks, which go on (`Ok`) and which are
/// refused (`Err`); one answer per task, in order or not.
pub type Screen = Box<dyn FnMut(Vec<Task>) -> Vec<Result<Task, Rejection>>>;

/// Passes `tasks` through `screen`, batch by batch: the tasks it lets
/// through on the first stream, its rejections on the second.
// `OkErr` splits on a `Result`; a rejection is large, but moved, never boxed.
#[allow(clippy::result_large_err)]
pub fn screened<'scope>(
    tasks: TimedStream<'scope, Task>,
    mut screen: Screen,
) -> (TimedStream<'scope, Task>, TimedStream<'scope, Rejection>) {
    let answers: TimedStream<'scope, Result<Task, Rejection>> =
        tasks.unary(Pipeline, "Screen", move |_capability, _info| {
            move |input, output| {
                input.for_each_stamp(|cap, data| {
                    let batch: Vec<Task> = data.flat_map(|d| d.drain(..)).collect();
                    if batch.is_empty() {
                        return;
                    }
                    output
                        .session(&cap)
                        .give_iterator(screen(batch).into_iter());
                });
            }
        });
    answers.ok_err(|answer| answer)
}
