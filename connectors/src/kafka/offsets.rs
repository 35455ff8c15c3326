//! Consumed messages that await their outcome, per assigned partition, and
//! the offsets that may be committed.
//!
//! Every consumed message is recorded here before it goes to the pipeline,
//! under a connector-wide tag that travels with it. Outcomes arrive in any
//! order; a partition's committable offset is the highest offset up to which
//! every consumed message has a recorded (and, where one is due, produced)
//! outcome, plus one. A message that never gets one (the pipeline stopped)
//! holds its partition's commit back, so a restart consumes it again.
//!
//! Each assignment of a partition gets a fresh epoch: outcomes of messages
//! consumed under an earlier assignment are ignored (the partition's new
//! owner, perhaps this process again, consumes them again from the
//! committed offset).

use std::collections::{BTreeMap, HashMap};

/// What the connector keeps about a consumed message until its outcome is
/// known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InFlight {
    /// The message value, for the dead-letter topic.
    pub body: Vec<u8>,
    /// The message key, kept on its dead letter.
    pub key: Option<Vec<u8>>,
    /// Where to send the result, when the message asked for a reply.
    pub reply_to: Option<String>,
    /// The message's correlation id, copied to its result.
    pub correlation_id: Option<String>,
}

/// A consumed message, as the outcome handler sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumed {
    /// Index of its topic in the configured topics.
    pub topic: usize,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// What was kept of it.
    pub entry: InFlight,
}

/// An offset to commit: the next message to consume in a partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Commit {
    /// Index of the topic in the configured topics.
    pub topic: usize,
    /// The partition.
    pub partition: i32,
    /// The offset of the next message to consume.
    pub offset: i64,
}

#[derive(Debug)]
struct Partition {
    epoch: u32,
    /// Consumed offsets in order, with whether their outcome is in.
    in_flight: BTreeMap<i64, (bool, InFlight)>,
    /// The last offset returned for committing.
    committed: Option<i64>,
}

impl Partition {
    /// Pops the completed prefix; the new commit point when it advanced.
    fn advance(&mut self) -> Option<i64> {
        let mut next = None;
        while let Some(entry) = self.in_flight.first_entry() {
            if !entry.get().0 {
                break;
            }
            next = Some(*entry.key() + 1);
            entry.remove();
        }
        let next = next?;
        if self.committed.is_some_and(|c| c >= next) {
            return None;
        }
        self.committed = Some(next);
        Some(next)
    }
}

/// Consumed messages of every assigned partition.
#[derive(Debug, Default)]
pub struct Offsets {
    partitions: HashMap<(usize, i32), Partition>,
    tags: HashMap<u64, (usize, i32, i64, u32)>,
    next_tag: u64,
    next_epoch: u32,
}

impl Offsets {
    /// A partition was assigned to this consumer. Already assigned (an
    /// incremental rebalance that kept it): nothing changes.
    pub fn assign(&mut self, topic: usize, partition: i32) {
        if self.partitions.contains_key(&(topic, partition)) {
            return;
        }
        self.next_epoch = self.next_epoch.wrapping_add(1);
        self.partitions.insert(
            (topic, partition),
            Partition {
                epoch: self.next_epoch,
                in_flight: BTreeMap::new(),
                committed: None,
            },
        );
    }

    /// A partition was taken away: forgets its messages (their outcomes
    /// will be ignored) and returns its last commit point, if it advanced.
    pub fn revoke(&mut self, topic: usize, partition: i32) -> Option<Commit> {
        let mut p = self.partitions.remove(&(topic, partition))?;
        let offset = p.advance();
        if !p.in_flight.is_empty() {
            self.tags
                .retain(|_, (t, part, _, _)| (*t, *part) != (topic, partition));
        }
        offset.map(|offset| Commit {
            topic,
            partition,
            offset,
        })
    }

    /// Records a consumed message; the tag to submit it with. A message of
    /// a partition not (yet) known as assigned assigns it.
    pub fn consume(&mut self, topic: usize, partition: i32, offset: i64, entry: InFlight) -> u64 {
        self.assign(topic, partition);
        self.next_tag = self.next_tag.wrapping_add(1).max(1);
        let tag = self.next_tag;
        if let Some(p) = self.partitions.get_mut(&(topic, partition)) {
            p.in_flight.insert(offset, (false, entry));
            self.tags.insert(tag, (topic, partition, offset, p.epoch));
        }
        tag
    }

    /// The message a tag names, while its partition's assignment lasts and
    /// its outcome is not in yet.
    pub fn get(&self, tag: u64) -> Option<Consumed> {
        let &(topic, partition, offset, epoch) = self.tags.get(&tag)?;
        let p = self.partitions.get(&(topic, partition))?;
        if p.epoch != epoch {
            return None;
        }
        let (done, entry) = p.in_flight.get(&offset)?;
        (!done).then(|| Consumed {
            topic,
            partition,
            offset,
            entry: entry.clone(),
        })
    }

    /// Marks a message's outcome as recorded (and produced where due).
    /// Unknown or stale tags are ignored.
    pub fn complete(&mut self, tag: u64) {
        let Some((topic, partition, offset, epoch)) = self.tags.remove(&tag) else {
            return;
        };
        if let Some(p) = self.partitions.get_mut(&(topic, partition)) {
            if p.epoch == epoch {
                if let Some(slot) = p.in_flight.get_mut(&offset) {
                    slot.0 = true;
                    slot.1 = InFlight::default();
                }
            }
        }
    }

    /// The commit points that advanced since the last call.
    pub fn commits(&mut self) -> Vec<Commit> {
        let mut out: Vec<Commit> = self
            .partitions
            .iter_mut()
            .filter_map(|(&(topic, partition), p)| {
                p.advance().map(|offset| Commit {
                    topic,
                    partition,
                    offset,
                })
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// Consumed messages whose outcome is not in yet.
    pub fn in_flight(&self) -> usize {
        self.tags.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::seq::SliceRandom;
    use rand::SeedableRng;

    #[test]
    fn commits_only_the_completed_prefix() {
        let mut offsets = Offsets::default();
        offsets.assign(0, 3);
        let tags: Vec<u64> = (10..16)
            .map(|o| offsets.consume(0, 3, o, InFlight::default()))
            .collect();
        offsets.complete(tags[1]);
        offsets.complete(tags[2]);
        assert!(offsets.commits().is_empty(), "10 is still running");
        offsets.complete(tags[0]);
        assert_eq!(
            offsets.commits(),
            vec![Commit {
                topic: 0,
                partition: 3,
                offset: 13
            }]
        );
        assert!(offsets.commits().is_empty(), "nothing new");
        offsets.complete(tags[4]);
        offsets.complete(tags[4]);
        assert!(offsets.commits().is_empty());
        assert_eq!(offsets.in_flight(), 2);
        offsets.complete(tags[3]);
        assert_eq!(offsets.commits()[0].offset, 15);
    }

    #[test]
    fn a_revoked_partition_ignores_old_outcomes() {
        let mut offsets = Offsets::default();
        let a = offsets.consume(1, 0, 0, InFlight::default());
        let b = offsets.consume(1, 0, 1, InFlight::default());
        offsets.complete(a);
        assert_eq!(
            offsets.revoke(1, 0),
            Some(Commit {
                topic: 1,
                partition: 0,
                offset: 1
            })
        );
        assert_eq!(offsets.in_flight(), 0);
        offsets.assign(1, 0);
        // Re-consumed from the committed offset under the new assignment.
        let b2 = offsets.consume(1, 0, 1, InFlight::default());
        assert!(offsets.get(b).is_none());
        offsets.complete(b);
        assert!(offsets.commits().is_empty(), "the stale outcome counts not");
        assert_eq!(offsets.get(b2).map(|c| c.offset), Some(1));
        offsets.complete(b2);
        assert_eq!(offsets.commits()[0].offset, 2);
    }

    #[test]
    fn a_commit_never_passes_a_message_without_an_outcome() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for _ in 0..50 {
            let mut offsets = Offsets::default();
            let n = 300i64;
            let tags: Vec<u64> = (0..n)
                .map(|o| offsets.consume(0, (o % 3) as i32, o / 3, InFlight::default()))
                .collect();
            let stuck = n / 2;
            let mut order: Vec<i64> = (0..n).filter(|&o| o != stuck).collect();
            order.shuffle(&mut rng);
            let mut done = std::collections::BTreeSet::new();
            let mut last = HashMap::new();
            for chunk in order.chunks(9) {
                for &o in chunk {
                    offsets.complete(tags[o as usize]);
                    done.insert(o);
                }
                for c in offsets.commits() {
                    // Every message of the partition below the commit is done.
                    for off in 0..c.offset {
                        let global = off * 3 + i64::from(c.partition);
                        assert!(done.contains(&global), "{c:?} passes {global}");
                    }
                    assert!(last.insert(c.partition, c.offset) < Some(c.offset));
                }
            }
            let stuck_partition = (stuck % 3) as i32;
            assert_eq!(
                last.get(&stuck_partition),
                Some(&(stuck / 3)).filter(|&&o| o > 0)
            );
            assert_eq!(offsets.in_flight(), 1);
        }
    }
}
