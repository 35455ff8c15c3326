//! The wait queue: QoS class first, then priority, then earliest deadline,
//! then the queue order's key (shortest predicted run time first under
//! [`QueueOrder::ShortestPredictedFirst`]; nothing under arrival order),
//! then fair share between tenants, then arrival order.
//!
//! Each tenant has its own heap ordered by (class, priority, deadline, key,
//! arrival). Taking the next task compares the heads of the tenants' heaps
//! and, among heads of equal class, priority and deadline, serves the tenant
//! with the smallest weighted dominant share (see [`super::TenantBook`]), so
//! that under contention tenants share capacity in proportion to their
//! weights. With one tenant this is a single heap.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap as HashMap;
use serde::{Deserialize, Serialize};

use crate::model::{Name, QosClass, Task};

/// How queued tasks of equal class, priority and deadline are ordered
/// before fair share and arrival.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueOrder {
    /// No further order: fair share, then arrival.
    #[default]
    Arrival,
    /// Shortest predicted run time first, by the newest run-time model the
    /// coordinator holds (tasks it cannot predict go last; before any model
    /// arrives, arrival order). Re-ranked when a new model version arrives.
    /// Long tasks can wait behind a stream of short ones: use priorities or
    /// deadlines for work that must not.
    ShortestPredictedFirst,
}

/// Where a popped task stood, to [`restore`](TaskQueue::restore) it there.
#[derive(Clone, Copy, Debug)]
pub struct QueueSlot {
    seq: u64,
    key: u64,
}

struct Queued {
    task: Task,
    slot: QueueSlot,
}

type Rank = (Reverse<QosClass>, i32, Reverse<u64>, Reverse<u64>);

impl Queued {
    /// Class, priority, deadline and key: what outranks fair share.
    fn rank(&self) -> Rank {
        (
            Reverse(self.task.qos),
            self.task.priority,
            Reverse(self.task.deadline_ms.unwrap_or(u64::MAX)),
            Reverse(self.slot.key),
        )
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.slot.seq == other.slot.seq
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank()
            .cmp(&other.rank())
            .then_with(|| other.slot.seq.cmp(&self.slot.seq))
    }
}

/// Tasks waiting for capacity, one heap per tenant.
#[derive(Default)]
pub struct TaskQueue {
    heaps: Vec<(Name, BinaryHeap<Queued>)>,
    by_tenant: HashMap<Name, usize>,
    len: usize,
    next_seq: u64,
}

impl TaskQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task with no ordering key (arrival order).
    pub fn push(&mut self, task: Task) {
        self.push_keyed(task, 0);
    }

    /// Adds a task ordered by `key` (smaller first) among tasks of equal
    /// class, priority and deadline.
    pub fn push_keyed(&mut self, task: Task, key: u64) {
        self.next_seq += 1;
        let seq = self.next_seq;
        self.restore(task, QueueSlot { seq, key });
    }

    /// Recomputes every queued task's key (a new model), keeping arrival
    /// order among equal keys.
    pub fn rekey(&mut self, mut key: impl FnMut(&Task) -> u64) {
        for (_, heap) in &mut self.heaps {
            let rekeyed: Vec<Queued> = std::mem::take(heap)
                .into_vec()
                .into_iter()
                .map(|mut q| {
                    q.slot.key = key(&q.task);
                    q
                })
                .collect();
            *heap = BinaryHeap::from(rekeyed);
        }
    }

    /// The highest-ranked task, serving tenants with the smallest
    /// `share` first among equally ranked heads.
    pub fn pop(&mut self, share: impl Fn(&str) -> f64) -> Option<Task> {
        self.pop_entry(share).map(|(task, _)| task)
    }

    /// Like [`pop`](Self::pop), also returning where the task stood so
    /// that it can be [`restore`](Self::restore)d in place.
    pub fn pop_entry(&mut self, share: impl Fn(&str) -> f64) -> Option<(Task, QueueSlot)> {
        let index = self.next_tenant(share)?;
        let queued = self.heaps[index].1.pop()?;
        self.len -= 1;
        Some((queued.task, queued.slot))
    }

    fn next_tenant(&self, share: impl Fn(&str) -> f64) -> Option<usize> {
        if self.heaps.len() == 1 {
            return (!self.heaps[0].1.is_empty()).then_some(0);
        }
        let mut best: Option<(usize, Rank, f64, u64)> = None;
        for (index, (tenant, heap)) in self.heaps.iter().enumerate() {
            let Some(head) = heap.peek() else { continue };
            let candidate = (index, head.rank(), share(tenant), head.slot.seq);
            let better = match &best {
                None => true,
                Some((_, rank, s, seq)) => match candidate.1.cmp(rank) {
                    Ordering::Greater => true,
                    Ordering::Less => false,
                    Ordering::Equal => {
                        candidate.2 < *s || (candidate.2 == *s && candidate.3 < *seq)
                    }
                },
            };
            if better {
                best = Some(candidate);
            }
        }
        best.map(|(index, ..)| index)
    }

    /// Puts back a task taken with [`pop_entry`](Self::pop_entry).
    pub fn restore(&mut self, task: Task, slot: QueueSlot) {
        let index = if self.heaps.len() == 1 && self.heaps[0].0 == task.tenant {
            0
        } else if let Some(&index) = self.by_tenant.get(task.tenant.as_str()) {
            index
        } else {
            self.heaps.push((task.tenant.clone(), BinaryHeap::new()));
            self.by_tenant
                .insert(task.tenant.clone(), self.heaps.len() - 1);
            self.heaps.len() - 1
        };
        self.heaps[index].1.push(Queued { task, slot });
        self.len += 1;
    }

    /// Number of queued tasks.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Removes and returns the tasks matching `remove`.
    pub fn extract(&mut self, mut remove: impl FnMut(&Task) -> bool) -> Vec<Task> {
        let mut removed = Vec::new();
        for (_, heap) in &mut self.heaps {
            if !heap.iter().any(|q| remove(&q.task)) {
                continue;
            }
            let kept: Vec<Queued> = std::mem::take(heap)
                .into_vec()
                .into_iter()
                .filter_map(|q| {
                    if remove(&q.task) {
                        removed.push(q.task);
                        None
                    } else {
                        Some(q)
                    }
                })
                .collect();
            *heap = BinaryHeap::from(kept);
        }
        self.len -= removed.len();
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceRequest;

    fn task(id: &str, tenant: &str, priority: i32) -> Task {
        let mut t = Task::new(id, "noop", ResourceRequest::cpu(1, 0));
        t.tenant = Name::from(tenant);
        t.priority = priority;
        t
    }

    #[test]
    fn priority_outranks_fair_share_and_share_outranks_arrival() {
        let mut q = TaskQueue::new();
        q.push(task("a1", "a", 0));
        q.push(task("a2", "a", 0));
        q.push(task("b1", "b", 0));
        q.push(task("b-urgent", "b", 5));
        // Tenant a holds more than b.
        let share = |t: &str| if t == "a" { 0.5 } else { 0.1 };
        let order: Vec<String> = std::iter::from_fn(|| q.pop(share))
            .map(|t| t.id.to_string())
            .collect();
        assert_eq!(order, ["b-urgent", "b1", "a1", "a2"]);
        assert!(q.is_empty());
    }

    #[test]
    fn keys_order_equally_ranked_tasks_and_can_be_recomputed() {
        let mut q = TaskQueue::new();
        q.push_keyed(task("long", "a", 0), 100);
        q.push_keyed(task("short", "a", 0), 1);
        q.push_keyed(task("urgent-long", "a", 1), 500);
        q.push_keyed(task("medium", "a", 0), 10);
        let (first, slot) = q.pop_entry(|_| 0.0).expect("queued");
        assert_eq!(first.id.as_str(), "urgent-long", "priority outranks keys");
        q.restore(first, slot);
        q.rekey(|t| if t.id.as_str() == "long" { 0 } else { 50 });
        let order: Vec<String> = std::iter::from_fn(|| q.pop(|_| 0.0))
            .map(|t| t.id.to_string())
            .collect();
        // Re-keyed: "long" now first among priority 0; the others tie and
        // keep arrival order.
        assert_eq!(order, ["urgent-long", "long", "short", "medium"]);
    }

    #[test]
    fn extract_removes_across_tenants() {
        let mut q = TaskQueue::new();
        for i in 0..6 {
            q.push(task(
                &format!("t{i}"),
                if i % 2 == 0 { "a" } else { "b" },
                0,
            ));
        }
        let removed = q.extract(|t| t.id.as_str() < "t3");
        assert_eq!(removed.len(), 3);
        assert_eq!(q.len(), 3);
        let rest: Vec<String> = std::iter::from_fn(|| q.pop(|_| 0.0))
            .map(|t| t.id.to_string())
            .collect();
        assert_eq!(rest, ["t3", "t4", "t5"]);
    }
}
