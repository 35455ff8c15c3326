//! Reservations: capacity held on one executor for a tenant until it
//! lapses or is released; requests this shard cannot hold are passed on to
//! the next shard.

use crate::allocate::Reservation;
use crate::model::{ExecutorId, Name, ReservationRequest, ReservationState, ReservationStatus};

use super::{Decision, ShardAllocator};

impl ShardAllocator {
    /// Reserves capacity (on the reservation's home shard, else the next
    /// shards in turn).
    pub fn reserve(
        &mut self,
        request: ReservationRequest,
        hops: u32,
        now_us: u64,
        out: &mut Vec<Decision>,
    ) {
        let id = request.id.clone();
        if request.expires_at_ms * 1000 <= now_us {
            out.push(reservation_event(
                id,
                ReservationState::Refused,
                None,
                "it had already expired",
                now_us,
            ));
            return;
        }
        if self.reservations.iter().any(|r| r.id == id) {
            return;
        }
        match self.placer.choose(&request.resources) {
            Some((index, gpu)) => {
                let executor = self.placer.executor_mut(index);
                executor.take(&request.resources, &gpu);
                let reservation = Reservation::new(
                    id.clone(),
                    request.holder,
                    index,
                    executor,
                    request.resources,
                    gpu,
                    request.expires_at_ms * 1000,
                );
                out.push(reservation_event(
                    id,
                    ReservationState::Active,
                    Some(executor.spec.id.clone()),
                    "capacity held",
                    now_us,
                ));
                self.reservations.push(reservation);
                self.dirty = true;
                self.capacity_version += 1;
            }
            None if (hops as usize) + 1 < self.shard_count() => {
                out.push(Decision::ForwardReservation {
                    shard: (self.shard + 1) % self.shard_count() as u32,
                    request,
                    hops: hops + 1,
                });
            }
            None => out.push(reservation_event(
                id,
                ReservationState::Refused,
                None,
                "no executor has that much free capacity now",
                now_us,
            )),
        }
    }

    /// Releases a reservation early, if this shard holds it.
    pub fn unreserve(&mut self, id: &str, now_us: u64, out: &mut Vec<Decision>) {
        self.end_reservation(id, "released", now_us, out);
    }

    pub(super) fn end_reservation(
        &mut self,
        id: &str,
        why: &str,
        now_us: u64,
        out: &mut Vec<Decision>,
    ) {
        let Some(position) = self.reservations.iter().position(|r| r.id == id) else {
            return;
        };
        let reservation = self.reservations.swap_remove(position);
        reservation.return_unused(self.placer.executor_mut(reservation.executor));
        // Attempts still inside now hold their resources from the executor.
        for placement in self.running.values_mut() {
            if placement
                .reservation
                .as_ref()
                .is_some_and(|(rid, _)| *rid == reservation.id)
            {
                placement.reservation = None;
            }
        }
        self.dirty = true;
        self.capacity_version += 1;
        let executor = self.placer.executors()[reservation.executor]
            .spec
            .id
            .clone();
        out.push(reservation_event(
            reservation.id,
            ReservationState::Ended,
            Some(executor),
            why,
            now_us,
        ));
    }
}

fn reservation_event(
    id: Name,
    state: ReservationState,
    executor: Option<ExecutorId>,
    detail: &str,
    at_us: u64,
) -> Decision {
    Decision::ReservationEvent(ReservationStatus {
        id,
        state,
        executor,
        detail: detail.to_string(),
        at_us,
    })
}
