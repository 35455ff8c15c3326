//! Membership: executors that join at run time, heartbeat, leave, or are
//! declared lost when their heartbeats stop (their running attempts are
//! aborted and their capacity leaves the shard).

use crate::allocate::ExecutorState;
use crate::model::{AbortReason, ExecutorSpec, Lease, Name};

use super::{home_shard, Decision, ShardAllocator};

impl ShardAllocator {
    /// An executor joins or re-joins (every shard sees every join).
    pub fn join(&mut self, spec: ExecutorSpec, ttl_us: Option<u64>, now_us: u64) {
        let owner = match self.registry.get(&spec.id) {
            Some(entry) => entry.owner,
            None => home_shard(&spec.id, self.shard_count()),
        };
        let new = self.registry.join(&spec.id, owner, ttl_us, now_us);
        if new {
            self.feasibility.add(owner, spec.clone());
        }
        if owner != self.shard {
            return;
        }
        match self.by_id.get(&spec.id) {
            Some(&index) => {
                let executor = self.placer.executor_mut(index);
                if new && executor.running == 0 {
                    // Back after being lost or leaving: fresh capacity, maybe a new shape.
                    *executor = ExecutorState::new(spec);
                } else {
                    executor.accepting = true;
                }
            }
            None => {
                let index = self.placer.push(ExecutorState::new(spec.clone()));
                self.by_id.insert(spec.id, index);
            }
        }
        self.tenants.set_capacity(self.capacity());
        self.dirty = true;
        self.capacity_version += 1;
    }

    /// An executor is alive.
    pub fn heartbeat(&mut self, id: &str, now_us: u64) -> bool {
        self.registry.heartbeat(id, now_us)
    }

    /// An executor leaves: no new work; gone when its attempts finish.
    pub fn leave(&mut self, id: &str) {
        let Some(entry) = self.registry.leave(id) else {
            return;
        };
        let owned = entry.owner == self.shard;
        self.feasibility.remove(id);
        if owned {
            if let Some(&index) = self.by_id.get(id) {
                let executor = self.placer.executor_mut(index);
                executor.accepting = false;
                if executor.running == 0 {
                    self.registry.remove(id);
                }
            }
            self.tenants.set_capacity(self.capacity());
        }
    }

    /// Declares executors whose heartbeats stopped lost: their attempts'
    /// leases are released and [`Decision::Abort`]ed, their reservations
    /// dropped. Also lets reservations lapse.
    pub fn expire(&mut self, now_us: u64, out: &mut Vec<Decision>) {
        for (id, entry) in self.registry.expire(now_us) {
            self.feasibility.mark_lost(&id);
            if entry.owner != self.shard {
                continue;
            }
            let Some(&index) = self.by_id.get(&id) else {
                continue;
            };
            tracing::warn!(executor = %id, shard = self.shard, "executor lost: no heartbeat within its TTL");
            self.placer.executor_mut(index).accepting = false;
            let leases: Vec<u64> = self
                .running
                .iter()
                .filter(|(_, p)| p.executor == index)
                .map(|(l, _)| *l)
                .collect();
            for lease in leases {
                if let Some(placement) = self.running.remove(&lease) {
                    self.give_back(&placement);
                    self.lost.insert(lease);
                    out.push(Decision::Abort {
                        lease: Lease(lease),
                        reason: AbortReason::ExecutorLost,
                    });
                }
            }
            let dropped: Vec<Name> = self
                .reservations
                .iter()
                .filter(|r| r.executor == index)
                .map(|r| r.id.clone())
                .collect();
            for id in dropped {
                self.end_reservation(&id, "its executor was lost", now_us, out);
            }
            self.tenants.set_capacity(self.capacity());
        }
        let lapsed: Vec<Name> = self
            .reservations
            .iter()
            .filter(|r| r.expires_at_us <= now_us)
            .map(|r| r.id.clone())
            .collect();
        for id in lapsed {
            self.end_reservation(&id, "expired", now_us, out);
        }
        // Tasks waiting for an executor to join are looked at every tick,
        // so that one that joined on another shard or a passed deadline is
        // seen.
        if !self.waiting_for_executor.is_empty() {
            self.dirty = true;
        }
    }
}
