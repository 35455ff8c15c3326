//! The `Execute` operator: assignments into completions, through a backend.
//!
//! It receives [`ExecutorWork`] from its shard's coordinator: `Run` starts an
//! attempt, `Abort` asks the backend to stop one (cancellation, executor
//! loss); the stopped attempt still completes, with an outcome saying why.

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::Pipeline;
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::scheduling::SyncActivator;

use crate::model::{AbortReason, Assignment, Completion, Epoch, ExecutorWork, Lease};

use super::TimedStream;

/// Runs assignments. Implemented outside this crate (the runtime runs
/// handlers on tokio; remote agents run them over a broker).
///
/// Cheap, non-blocking handlers may complete inline in [`start`](Self::start);
/// anything else completes later and is collected by [`poll`](Self::poll).
/// The backend wakes the operator through the activator it is given when an
/// asynchronous completion is ready.
pub trait ExecutionBackend {
    /// Called once with the operator's activator, before any assignment.
    fn set_activator(&mut self, activator: SyncActivator);
    /// Starts one assignment; pushes its completion to `done` if it finished
    /// inline.
    fn start(&mut self, assignment: Assignment, done: &mut Vec<Completion>);
    /// Stops the attempt holding `lease` if it still runs; its completion
    /// (outcome `Cancelled`, or `Failed` for a lost executor) then comes
    /// through [`poll`](Self::poll). Unknown or finished leases are ignored.
    fn abort(&mut self, lease: Lease, reason: AbortReason);
    /// Moves completions finished since the last call into `done`.
    fn poll(&mut self, done: &mut Vec<Completion>);
    /// Assignments started but not yet completed.
    fn in_flight(&self) -> usize;
}

/// Runs assignments on an [`ExecutionBackend`].
pub trait Execute<'scope> {
    /// Starts each assignment on `backend` and emits completions as they
    /// finish. The operator holds a capability, advanced with its input
    /// frontier, only while work is in flight, so completions are stamped
    /// with (about) the epoch in which they are observed.
    fn execute<B: ExecutionBackend + 'static>(self, backend: B) -> TimedStream<'scope, Completion>;
}

impl<'scope> Execute<'scope> for TimedStream<'scope, ExecutorWork> {
    fn execute<B: ExecutionBackend + 'static>(
        self,
        mut backend: B,
    ) -> TimedStream<'scope, Completion> {
        let scope = self.scope();
        let mut builder = OperatorBuilder::new("Execute".to_owned(), scope);
        backend.set_activator(
            scope
                .worker()
                .sync_activator_for(builder.operator_info().address.to_vec()),
        );
        let mut input = builder.new_input(self, Pipeline);
        let (output, completions) = builder.new_output();
        let mut output =
            OutputBuilder::<Epoch, CapacityContainerBuilder<Vec<Completion>>>::from(output);

        builder.build(move |capabilities| {
            let mut cap: Option<Capability<Epoch>> = capabilities.into_iter().next();
            let mut done = Vec::new();
            move |frontiers| {
                let mut handle = output.activate();
                input.for_each(|input_cap, data| {
                    for work in data.drain(..) {
                        match work {
                            ExecutorWork::Run(assignment) => backend.start(assignment, &mut done),
                            ExecutorWork::Abort { lease, reason } => backend.abort(lease, reason),
                        }
                    }
                    if !done.is_empty() {
                        handle.session(&input_cap).give_container(&mut done);
                        done.clear();
                    }
                    if cap.is_none() && backend.in_flight() > 0 {
                        cap = input_cap.retain_least(0);
                    }
                });
                backend.poll(&mut done);
                if let Some(held) = cap.as_mut() {
                    if !done.is_empty() {
                        handle.session(&*held).give_container(&mut done);
                        done.clear();
                    }
                    // Only work in flight needs a capability. Waiting for the
                    // input frontier to empty would never end: through the
                    // release loop, this capability is part of that frontier.
                    if backend.in_flight() == 0 {
                        cap = None;
                    } else if let Some(&t) = frontiers[0].frontier().first() {
                        if t > *held.time() {
                            held.downgrade(&t);
                        }
                    }
                }
            }
        });
        completions
    }
}
