//! The result sink's table: every query's groups and their latest
//! aggregates, changed only by complete epochs.
//!
//! Result changes arrive staged by epoch and are applied in epoch order
//! once the sink's input frontier has passed the epoch, so a published
//! snapshot reflects exactly the epochs up to its `as_of`.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use tidewater_operators::model::{Epoch, Name};

use super::aggregate::decode;

/// Each group's results as a multiset (one element once consolidated).
type Groups = BTreeMap<u64, BTreeMap<Vec<u64>, isize>>;

/// A change to one group's result, waiting for its epoch to complete.
type Staged = (usize, u64, Vec<u64>, isize);

/// Applies result updates in epoch order as epochs complete.
pub struct ResultTable {
    pending: BTreeMap<Epoch, Vec<Staged>>,
    /// Per query, per group: the multiset of results.
    current: Vec<Groups>,
    /// Each query's group ids and their values.
    names: Vec<FxHashMap<u64, Vec<Name>>>,
    /// Per query: whether its groups changed since it was last published.
    changed: Vec<bool>,
    /// The epoch of the last published snapshot.
    pub published: Option<Epoch>,
}

impl ResultTable {
    pub fn new(queries: usize) -> Self {
        ResultTable {
            pending: BTreeMap::new(),
            current: vec![BTreeMap::new(); queries],
            names: vec![FxHashMap::default(); queries],
            changed: vec![true; queries],
            published: None,
        }
    }

    pub fn name(&mut self, query: usize, key: u64, names: Vec<Name>) {
        self.changed[query] = true;
        self.names[query].entry(key).or_insert(names);
    }

    pub fn stage(&mut self, epoch: Epoch, query: usize, key: u64, values: Vec<u64>, diff: isize) {
        self.pending
            .entry(epoch)
            .or_default()
            .push((query, key, values, diff));
    }

    /// Applies every staged epoch before `before` (all of them if `None`).
    pub fn apply_complete(&mut self, before: Option<Epoch>) {
        while let Some(entry) = self.pending.first_entry() {
            if before.is_some_and(|b| *entry.key() >= b) {
                break;
            }
            for (query, key, values, diff) in entry.remove() {
                self.changed[query] = true;
                let group = self.current[query].entry(key).or_default();
                let count = group.entry(values.clone()).or_insert(0);
                *count += diff;
                if *count == 0 {
                    group.remove(&values);
                }
                if group.is_empty() {
                    self.current[query].remove(&key);
                }
            }
        }
    }

    /// Whether `query`'s groups changed since the last call for it (a
    /// group's values first arriving counts as a change).
    pub fn take_changed(&mut self, query: usize) -> bool {
        std::mem::take(&mut self.changed[query])
    }

    /// A query's groups and their decoded aggregates.
    pub fn groups(&self, query: usize) -> BTreeMap<Vec<Name>, Vec<f64>> {
        self.current[query]
            .iter()
            .filter_map(|(key, results)| {
                let names = self.names[query].get(key)?;
                results
                    .iter()
                    .find(|(_, n)| **n > 0)
                    .map(|(values, _)| (names.clone(), values.iter().map(|v| decode(*v)).collect()))
            })
            .collect()
    }
}
