//! Deliveries of one consumed queue that await their outcome, and the plan
//! for acknowledging those that have one.
//!
//! Outcomes arrive in any order (tasks finish out of order). A contiguous
//! run of finished deliveries from the lowest outstanding tag is
//! acknowledged with one `basic.ack(multiple)`; finished deliveries behind a
//! still-running one are acknowledged one by one, so that a slow task never
//! holds the prefetch window shut. Every acknowledgement covers only tags
//! that are outstanding, so none is acknowledged twice.

use std::collections::{BTreeMap, BTreeSet};

/// What the connector keeps about a delivery until its outcome is known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// The message body, for the dead-letter exchange.
    pub body: Vec<u8>,
    /// Where to send the result, when the message asked for a reply.
    pub reply_to: Option<String>,
    /// The message's correlation id, copied to its result.
    pub correlation_id: Option<String>,
    /// Whether the broker had delivered it before (a crash or an outage
    /// interrupted an earlier delivery).
    pub redelivered: bool,
}

/// Acknowledgements to send for one queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckPlan {
    /// Acknowledge every outstanding delivery up to this tag (`multiple`).
    pub up_to: Option<u64>,
    /// Acknowledge each of these alone.
    pub singles: Vec<u64>,
}

impl AckPlan {
    /// Whether there is nothing to send.
    pub fn is_empty(&self) -> bool {
        self.up_to.is_none() && self.singles.is_empty()
    }
}

/// Outstanding deliveries of one queue on one connection.
#[derive(Debug, Default)]
pub struct Pending {
    in_flight: BTreeMap<u64, InFlight>,
    done: BTreeSet<u64>,
}

impl Pending {
    /// Records a delivery that goes into the pipeline.
    pub fn deliver(&mut self, tag: u64, entry: InFlight) {
        self.in_flight.insert(tag, entry);
    }

    /// The entry of an outstanding delivery.
    pub fn get(&self, tag: u64) -> Option<&InFlight> {
        self.in_flight.get(&tag)
    }

    /// Marks a delivery's outcome as published; it will be acknowledged by
    /// the next [`plan`](Self::plan). Unknown tags are ignored.
    pub fn complete(&mut self, tag: u64) {
        if self.in_flight.contains_key(&tag) {
            self.done.insert(tag);
        }
    }

    /// Deliveries awaiting an outcome or an acknowledgement.
    pub fn len(&self) -> usize {
        self.in_flight.len()
    }

    /// Takes every completed delivery out and says how to acknowledge them.
    pub fn plan(&mut self) -> AckPlan {
        let mut plan = AckPlan::default();
        while let Some((&lowest, _)) = self.in_flight.first_key_value() {
            if !self.done.remove(&lowest) {
                break;
            }
            self.in_flight.remove(&lowest);
            plan.up_to = Some(lowest);
        }
        for tag in std::mem::take(&mut self.done) {
            self.in_flight.remove(&tag);
            plan.singles.push(tag);
        }
        plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_prefix_is_one_multiple_ack_and_the_rest_single() {
        let mut pending = Pending::default();
        for tag in 1..=6 {
            pending.deliver(tag, InFlight::default());
        }
        pending.complete(1);
        pending.complete(2);
        pending.complete(4);
        pending.complete(99);
        assert_eq!(
            pending.plan(),
            AckPlan {
                up_to: Some(2),
                singles: vec![4]
            }
        );
        assert_eq!(pending.len(), 3);
        pending.complete(3);
        pending.complete(5);
        // 3 and 5 are now the lowest outstanding: one multiple ack up to 5
        // covers exactly them (4 was acknowledged before).
        assert_eq!(
            pending.plan(),
            AckPlan {
                up_to: Some(5),
                singles: vec![]
            }
        );
        assert!(pending.plan().is_empty());
        assert_eq!(pending.len(), 1);
    }

    #[test]
    fn every_tag_is_acknowledged_once_and_only_after_completing() {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..50 {
            let n = 200u64;
            let mut pending = Pending::default();
            // What the broker holds unacknowledged.
            let mut broker: BTreeSet<u64> = (1..=n).collect();
            (1..=n).for_each(|t| pending.deliver(t, InFlight::default()));
            // One delivery never completes (its record never got in).
            let stuck = 1 + n / 2;
            let mut order: Vec<u64> = (1..=n).filter(|&t| t != stuck).collect();
            order.shuffle(&mut rng);
            let mut completed = BTreeSet::new();
            for chunk in order.chunks(7) {
                for &t in chunk {
                    pending.complete(t);
                    completed.insert(t);
                }
                let plan = pending.plan();
                if let Some(up_to) = plan.up_to {
                    let covered: Vec<u64> = broker.range(..=up_to).copied().collect();
                    assert!(!covered.is_empty(), "multiple ack of nothing");
                    for t in covered {
                        assert!(
                            completed.contains(&t),
                            "{t} acknowledged before its outcome"
                        );
                        broker.remove(&t);
                    }
                }
                for t in plan.singles {
                    assert!(broker.remove(&t), "{t} acknowledged twice");
                    assert!(completed.contains(&t));
                }
            }
            assert_eq!(broker.into_iter().collect::<Vec<_>>(), vec![stuck]);
            assert_eq!(pending.len(), 1);
        }
    }
}
