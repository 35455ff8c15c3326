//! Where the source stands in the change stream.
//!
//! Events are numbered as they are read. An event is settled once its
//! outcome cannot be lost: a valid task once the store holds it as
//! accepted (a restart resumes it from there), a bad document once the
//! pipeline has dead-lettered it. The position kept for a restart is the
//! resume token of the last event of the settled prefix, so nothing after
//! an unsettled event is skipped.

use std::collections::VecDeque;

use mongodb::change_stream::event::ResumeToken;

/// Read events and their settlement.
#[derive(Debug, Default)]
pub struct Progress {
    /// Number of the first event in `pending`.
    first: u64,
    /// Events from `first` on: token, settled.
    pending: VecDeque<(ResumeToken, bool)>,
    /// The newest token of the settled prefix not yet written.
    unsaved: Option<ResumeToken>,
}

impl Progress {
    /// Notes an event read, returning its number.
    pub fn read(&mut self, token: ResumeToken) -> u64 {
        self.pending.push_back((token, false));
        self.first + self.pending.len() as u64 - 1
    }

    /// Marks event `number` settled. Unknown numbers are ignored.
    pub fn settle(&mut self, number: u64) {
        if let Some(index) = number.checked_sub(self.first) {
            if let Some(entry) = self.pending.get_mut(index as usize) {
                entry.1 = true;
            }
        }
        while self.pending.front().is_some_and(|(_, settled)| *settled) {
            if let Some((token, _)) = self.pending.pop_front() {
                self.unsaved = Some(token);
                self.first += 1;
            }
        }
    }

    /// A position to keep although no event settled it (the stream's start).
    pub fn start_at(&mut self, token: ResumeToken) {
        if self.pending.is_empty() {
            self.unsaved = Some(token);
        }
    }

    /// The position to write, if it moved since the last write.
    pub fn unsaved(&self) -> Option<&ResumeToken> {
        self.unsaved.as_ref()
    }

    /// The position was written.
    pub fn saved(&mut self, token: &ResumeToken) {
        if self.unsaved.as_ref() == Some(token) {
            self.unsaved = None;
        }
    }

    /// Events read but not settled.
    pub fn unsettled(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{self, doc};

    use super::*;

    fn token(n: i32) -> ResumeToken {
        bson::from_document(doc! { "_data": n }).expect("token")
    }

    #[test]
    fn the_position_stops_at_the_first_unsettled_event() {
        let mut p = Progress::default();
        let numbers: Vec<u64> = (0..4).map(|n| p.read(token(n))).collect();
        assert_eq!(numbers, vec![0, 1, 2, 3]);
        p.settle(1);
        assert!(p.unsaved().is_none());
        p.settle(0);
        assert_eq!(p.unsaved(), Some(&token(1)));
        p.saved(&token(1));
        p.settle(3);
        assert!(p.unsaved().is_none());
        assert_eq!(p.unsettled(), 2);
        p.settle(2);
        assert_eq!(p.unsaved(), Some(&token(3)));
        assert_eq!(p.unsettled(), 0);
        // Settling twice or settling unknown events changes nothing.
        p.settle(2);
        p.settle(99);
        assert_eq!(p.unsaved(), Some(&token(3)));
    }
}
