//! The `Coordinate` operator: the coordinator and resource manager of one
//! shard, as a timely operator around a [`CoordinatorState`].
//!
//! ```text
//!  tasks ───────────────┐
//!  feedback (exchanged  │                     ┌─► work (run / abort) ──► Execute
//!   to the owning shard)├─► CoordinatorState ─┼─► final completions
//!  model updates ───────┤   (ShardAllocator,  ├─► rejections
//!  control (broadcast) ─┘    retries, models, ├─► feedback (forwards, quota releases,
//!                            cancellations)   │   reservations) back into the loop
//!                                             ├─► metrics
//!                                             ├─► reservations
//!                                             └─► retried attempts (when recorded)
//! ```
//!
//! The operator exchanges the feedback loop to the shard each record
//! addresses, broadcasts model updates and control commands to every
//! shard, hands each input to the state machine with the time, and emits
//! what the state machine produced on its seven outputs, holding the
//! capabilities the state machine's timers need (retries, reservation
//! expiries) until they fire.

use std::time::Duration;

use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, Pipeline};
use timely::dataflow::operators::generic::builder_rc::OperatorBuilder;
use timely::dataflow::operators::generic::OutputBuilder;
use timely::dataflow::operators::Capability;
use timely::progress::frontier::AntichainRef;

use crate::model::{
    now_micros, Completion, ControlCommand, Epoch, ExecutorWork, MetricEvent, ModelUpdate,
    Rejection, ReservationStatus, Task,
};

use super::{CoordinatorOutputs, CoordinatorState, Feedback, TimedStream};

/// The coordinator operator's output streams.
pub struct CoordinatorStreams<'scope> {
    /// Attempts to start or stop on executors of this worker's shard.
    pub work: TimedStream<'scope, ExecutorWork>,
    /// Final completions.
    pub finals: TimedStream<'scope, Completion>,
    /// Tasks that can never run.
    pub rejections: TimedStream<'scope, Rejection>,
    /// Tasks for other shards; connect into the feedback loop.
    pub forwards: TimedStream<'scope, Feedback>,
    /// Metric events.
    pub metrics: TimedStream<'scope, MetricEvent>,
    /// What became of reservations handled by this shard.
    pub reservations: TimedStream<'scope, ReservationStatus>,
    /// Attempts that ended and will be retried (empty unless the state
    /// records attempts: [`CoordinatorState::with_attempt_records`]).
    pub retried: TimedStream<'scope, Completion>,
}

/// Places tasks on this worker's shard of executors.
pub trait Coordinate<'scope> {
    /// Runs `state` over this stream of tasks, the `feedback` loop (exchanged
    /// here to the shard each record addresses), and broadcast `models` and
    /// `control` commands.
    fn coordinate(
        self,
        feedback: TimedStream<'scope, Feedback>,
        models: TimedStream<'scope, ModelUpdate>,
        control: TimedStream<'scope, ControlCommand>,
        state: CoordinatorState,
    ) -> CoordinatorStreams<'scope>;
}

/// Number of the operator's outputs (capabilities held per input batch).
const OUTPUTS: usize = 7;

type Out<D> = OutputBuilder<Epoch, CapacityContainerBuilder<Vec<D>>>;

impl<'scope> Coordinate<'scope> for TimedStream<'scope, Task> {
    fn coordinate(
        self,
        feedback: TimedStream<'scope, Feedback>,
        models: TimedStream<'scope, ModelUpdate>,
        control: TimedStream<'scope, ControlCommand>,
        mut state: CoordinatorState,
    ) -> CoordinatorStreams<'scope> {
        let scope = self.scope();
        let mut builder = OperatorBuilder::new("Coordinate".to_owned(), scope);
        let activator = scope.activator_for(builder.operator_info().address);
        let mut tasks_in = builder.new_input(self, Pipeline);
        let mut feedback_in =
            builder.new_input(feedback, Exchange::new(|f: &Feedback| u64::from(f.shard())));
        let mut models_in = builder.new_input(models, Pipeline);
        let mut control_in = builder.new_input(control, Pipeline);
        let (a, work) = builder.new_output();
        let (f, finals) = builder.new_output();
        let (r, rejections) = builder.new_output();
        let (w, forwards) = builder.new_output();
        let (m, metrics) = builder.new_output();
        let (v, reservations) = builder.new_output();
        let (t, retried) = builder.new_output();
        let (mut a, mut f, mut r, mut w, mut m, mut v, mut t): (
            Out<_>,
            Out<_>,
            Out<_>,
            Out<_>,
            Out<_>,
            Out<_>,
            Out<_>,
        ) = (
            OutputBuilder::from(a),
            OutputBuilder::from(f),
            OutputBuilder::from(r),
            OutputBuilder::from(w),
            OutputBuilder::from(m),
            OutputBuilder::from(v),
            OutputBuilder::from(t),
        );

        builder.build(move |capabilities| {
            let mut caps: Option<Vec<Capability<Epoch>>> = Some(capabilities);
            let mut out = CoordinatorOutputs::default();
            move |frontiers| {
                let now_us = now_micros();
                // The latest epoch of any input this round: outputs are
                // stamped no earlier, even when the frontier (which waits on
                // every worker) still lags behind it.
                let mut latest: Epoch = 0;
                // Control first, so that an executor joining in the same
                // epoch as the tasks meant for it is known when they arrive.
                control_in.for_each(|cap, data| {
                    latest = latest.max(cap.least().copied().unwrap_or(0));
                    if caps.is_none() {
                        caps = (0..OUTPUTS).map(|port| cap.retain_least(port)).collect();
                    }
                    for command in data.drain(..) {
                        state.on_control(command, now_us, &mut out);
                    }
                });
                tasks_in.for_each(|cap, data| {
                    latest = latest.max(cap.least().copied().unwrap_or(0));
                    for task in data.drain(..) {
                        state.on_task(task, now_us, &mut out);
                    }
                });
                feedback_in.for_each(|cap, data| {
                    latest = latest.max(cap.least().copied().unwrap_or(0));
                    // Work forwarded or completed after this shard went idle
                    // arrives with the capability to answer it.
                    if caps.is_none() {
                        caps = (0..OUTPUTS).map(|port| cap.retain_least(port)).collect();
                    }
                    for fb in data.drain(..) {
                        state.on_feedback(fb, now_us, &mut out);
                    }
                });
                models_in.for_each(|_cap, data| {
                    for update in data.drain(..) {
                        state.on_model(update);
                    }
                });
                state.tick(now_us, &mut out);

                // Hold capabilities while the shard has work or its task or
                // control input is open, following the earlier of the two.
                if let Some(held) = caps.as_mut() {
                    let time = *held[0].time();
                    let inputs_frontier = [0, 3]
                        .into_iter()
                        .filter_map(|port| {
                            let frontier: AntichainRef<Epoch> = frontiers[port].frontier();
                            frontier.first().copied()
                        })
                        .min();
                    // Catch up with the inputs before emitting, so that what
                    // this round produced is stamped with the current epoch
                    // rather than the one the shard last held (metric
                    // windows and results are timed by these stamps).
                    if let Some(t) = inputs_frontier.filter(|t| *t > time) {
                        held.iter_mut().for_each(|c| c.downgrade(&t));
                    }
                    let stamp = latest.max(*held[0].time());
                    emit(&mut a, &held[0], stamp, &mut out.work);
                    emit(&mut f, &held[1], stamp, &mut out.finals);
                    emit(&mut r, &held[2], stamp, &mut out.rejections);
                    emit(&mut w, &held[3], stamp, &mut out.forwards);
                    emit(&mut m, &held[4], stamp, &mut out.metrics);
                    emit(&mut v, &held[5], stamp, &mut out.reservations);
                    emit(&mut t, &held[6], stamp, &mut out.retried);
                    match inputs_frontier {
                        Some(_) => {}
                        None if state.is_idle() => {
                            tracing::debug!(
                                shard = state.allocator().shard(),
                                "coordinator idle; releasing capabilities"
                            );
                            caps = None
                        }
                        None => tracing::debug!(
                            shard = state.allocator().shard(),
                            queued = state.allocator().queued(),
                            running = state.allocator().running(),
                            delayed = state.retries_waiting(),
                            "input closed; holding capabilities until work drains"
                        ),
                    }
                }
                if let Some(due) = state.next_wakeup_us() {
                    activator
                        .activate_after(Duration::from_micros(due.saturating_sub(now_micros())));
                }
            }
        });
        CoordinatorStreams {
            reservations,
            work,
            finals,
            rejections,
            forwards,
            metrics,
            retried,
        }
    }
}

/// Sends `data` at `stamp` (no earlier than `cap`'s time).
fn emit<D: Clone + 'static>(
    output: &mut Out<D>,
    cap: &Capability<Epoch>,
    stamp: Epoch,
    data: &mut Vec<D>,
) {
    if !data.is_empty() {
        let at = cap.delayed(&stamp);
        output.activate().session(&at).give_container(data);
        data.clear();
    }
}
