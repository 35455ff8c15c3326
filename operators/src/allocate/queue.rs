//! The wait queue: QoS class first, then priority, then earliest deadline.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::model::Task;

struct Queued {
    task: Task,
    seq: u64,
}

impl Queued {
    /// Larger is served first.
    fn rank(
        &self,
    ) -> (
        std::cmp::Reverse<crate::model::QosClass>,
        i32,
        std::cmp::Reverse<u64>,
        std::cmp::Reverse<u64>,
    ) {
        use std::cmp::Reverse;
        (
            Reverse(self.task.qos),
            self.task.priority,
            Reverse(self.task.deadline_ms.unwrap_or(u64::MAX)),
            Reverse(self.seq),
        )
    }
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.seq == other.seq
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
        self.rank().cmp(&other.rank())
    }
}

/// Tasks waiting for capacity, served by QoS class (latency sensitive
/// first), then priority (higher first), then deadline (earlier first), then
/// arrival.
#[derive(Default)]
pub struct TaskQueue {
    heap: BinaryHeap<Queued>,
    next_seq: u64,
}

impl TaskQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a task.
    pub fn push(&mut self, task: Task) {
        self.next_seq += 1;
        self.heap.push(Queued {
            task,
            seq: self.next_seq,
        });
    }

    /// Removes and returns the task to serve next.
    pub fn pop(&mut self) -> Option<Task> {
        self.heap.pop().map(|q| q.task)
    }

    /// Removes and returns the task to serve next with its arrival number.
    pub fn pop_entry(&mut self) -> Option<(Task, u64)> {
        self.heap.pop().map(|q| (q.task, q.seq))
    }

    /// Puts back a task taken by [`pop_entry`](Self::pop_entry), keeping its
    /// original place in arrival order.
    pub fn restore(&mut self, task: Task, seq: u64) {
        self.heap.push(Queued { task, seq });
    }

    /// Tasks waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no task waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Removes and returns every task for which `remove` is true.
    pub fn extract(&mut self, mut remove: impl FnMut(&Task) -> bool) -> Vec<Task> {
        let mut removed = Vec::new();
        let kept: Vec<Queued> = std::mem::take(&mut self.heap)
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
        self.heap = BinaryHeap::from(kept);
        removed
    }
}
