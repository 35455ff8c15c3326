//! How a scheduling round fills capacity past a queued task that does not
//! fit: greedily, or EASY-style with a reservation for that task.
//!
//! ```text
//!  schedule round: pop by rank ─► route ─► placed, or passed over
//!     greedy: any later task that fits is placed (up to backfill_depth)
//!     easy:   the first task passed over for lack of capacity (the head)
//!             gets a shadow: the executor and the earliest time it would fit
//!             there, found by releasing that executor's running placements
//!             in order of their expected end. A later task may take that
//!             executor only if it is expected to end by the shadow time;
//!             other executors stay open to it. A blocked task whose shadow
//!             falls after its deadline (latest start) would expire waiting,
//!             so it gets no reservation and the next blocked task is the head.
//! ```
//!
//! Expected ends come from each task's run-time estimate when it was
//! placed: the learner's newest run-time model if the coordinator holds
//! one, else the user's `requested_runtime_s`, else its timeout (a hard
//! bound). Placements inside tenant reservations hold capacity of their own
//! and are left out. A placement with no estimate is never counted as
//! released, so a head that only such placements block gets no shadow and
//! the round backfills greedily. The head's reservation is recomputed every
//! round, so a task that overruns its estimate moves the shadow later
//! rather than breaking it.

use serde::{Deserialize, Serialize};

use super::executor_state::ExecutorState;
use super::placement::Placement;
use crate::model::ResourceRequest;

/// How a round backfills past a task that does not fit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillMode {
    /// Place any later task that fits now.
    #[default]
    Greedy,
    /// Reserve the earliest start for the first task that does not fit and
    /// backfill only what is expected to end before it, by run-time
    /// estimates (the learner's predictions when a model is held).
    Easy,
}

/// Where and when the head of a round would start at the earliest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shadow {
    /// Index of the executor in the shard.
    pub executor: usize,
    /// The expected start, µs since the epoch.
    pub start_us: u64,
}

impl Shadow {
    /// Whether placing a task on `executor`, expected to end at `end_us`
    /// (`None`: unknown), keeps this reservation.
    pub fn admits(&self, executor: usize, end_us: Option<u64>) -> bool {
        executor != self.executor || end_us.is_some_and(|end| end <= self.start_us)
    }
}

/// The earliest start of `head` among `executors`, releasing the running
/// `placements` in order of expected end; `None` if no accepting executor
/// would fit it with the releases whose end is known.
pub fn shadow_for<'a>(
    executors: &[ExecutorState],
    placements: impl IntoIterator<Item = &'a Placement>,
    head: &ResourceRequest,
    now_us: u64,
) -> Option<Shadow> {
    let mut ends: Vec<Vec<(u64, &Placement)>> = vec![Vec::new(); executors.len()];
    for placement in placements {
        if placement.reservation.is_some() {
            continue;
        }
        if let (Some(end), Some(list)) =
            (placement.expected_end_us, ends.get_mut(placement.executor))
        {
            list.push((end.max(now_us), placement));
        }
    }
    let mut best: Option<Shadow> = None;
    for (index, (executor, mut releases)) in executors.iter().zip(ends).enumerate() {
        if !executor.accepting || !executor.could_ever_fit(head) {
            continue;
        }
        releases.sort_unstable_by_key(|(end, _)| *end);
        let mut state = executor.clone();
        for (end, placement) in releases {
            if best.is_some_and(|b| b.start_us <= end) {
                break;
            }
            state.give_back(&placement.request, &placement.gpu);
            if state.fit(head).is_some() {
                best = Some(Shadow {
                    executor: index,
                    start_us: end,
                });
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::allocate::GpuPick;
    use crate::model::{ExecutorSpec, Name, TaskId};

    fn placement(executor: usize, cpu: u32, end: Option<u64>) -> Placement {
        Placement {
            executor,
            task_id: TaskId::from("t"),
            tenant: Name::from("acme"),
            request: ResourceRequest::cpu(cpu, 1),
            gpu: GpuPick::default(),
            reservation: None,
            expected_end_us: end,
        }
    }

    fn executors(running: &[(usize, u32)]) -> Vec<ExecutorState> {
        let mut states = vec![
            ExecutorState::new(ExecutorSpec::cpu("a", 4000, 100)),
            ExecutorState::new(ExecutorSpec::cpu("b", 4000, 100)),
        ];
        for &(executor, cpu) in running {
            states[executor].take(&ResourceRequest::cpu(cpu, 1), &GpuPick::default());
        }
        states
    }

    #[test]
    fn the_head_starts_where_releases_free_room_first() {
        let states = executors(&[(0, 2000), (0, 2000), (1, 3000)]);
        let running = HashMap::from([
            (1, placement(0, 2000, Some(500))),
            (2, placement(0, 2000, Some(900))),
            (3, placement(1, 3000, Some(700))),
        ]);
        let head = ResourceRequest::cpu(3000, 1);
        // Executor 0 frees 2000 at 500 (not enough), 4000 at 900;
        // executor 1 frees 4000 at 700.
        let shadow = shadow_for(&states, running.values(), &head, 100).expect("a start");
        assert_eq!(
            shadow,
            Shadow {
                executor: 1,
                start_us: 700
            }
        );
        assert!(shadow.admits(0, None), "other executors stay open");
        assert!(shadow.admits(1, Some(700)));
        assert!(!shadow.admits(1, Some(701)));
        assert!(
            !shadow.admits(1, None),
            "an unknown end could delay the head"
        );
    }

    #[test]
    fn unknown_ends_and_reservations_are_not_released() {
        let states = executors(&[(0, 4000), (1, 4000)]);
        let mut in_reservation = placement(1, 4000, Some(10));
        in_reservation.reservation = Some((Name::from("r"), GpuPick::default()));
        let running = HashMap::from([(1, placement(0, 4000, None)), (2, in_reservation)]);
        assert_eq!(
            shadow_for(&states, running.values(), &ResourceRequest::cpu(1000, 1), 0),
            None
        );
    }

    #[test]
    fn overdue_ends_count_as_now_and_oversized_heads_get_no_shadow() {
        let states = executors(&[(0, 4000), (1, 4000)]);
        let running = HashMap::from([
            (1, placement(0, 4000, Some(50))),
            (2, placement(1, 4000, None)),
        ]);
        assert_eq!(
            shadow_for(
                &states,
                running.values(),
                &ResourceRequest::cpu(4000, 1),
                80
            ),
            Some(Shadow {
                executor: 0,
                start_us: 80
            })
        );
        assert_eq!(
            shadow_for(
                &states,
                running.values(),
                &ResourceRequest::cpu(8000, 1),
                80
            ),
            None
        );
    }
}
