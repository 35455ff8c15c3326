//! Cached placement scores: per request shape, a tournament tree over the
//! executors' scores, updated only where executors changed.
//!
//! ```text
//!  executor changes ──► change log (indices) ─┐
//!                                             ▼
//!  choose(req) ──► shape's tree ──► rescore executors changed since this
//!                    │               shape last chose (or rebuild if many)
//!                    ▼
//!                  root = (lowest score, lowest index) ──► chosen executor
//! ```
//!
//! A placement policy's score depends only on the request and one
//! executor's state, and a placement changes one executor, so most scores
//! stay valid from one decision to the next. Each distinct request shape
//! keeps a tree of its scores; a decision replays the change log since that
//! shape's last decision, rescoring O(changes) executors at O(log n) each,
//! and reads the winner at the root. Shapes are bounded (least recently used
//! go first), the log is compacted (shapes behind it rebuild), and a new
//! policy generation rebuilds every shape.

use std::cmp::Ordering;

use rustc_hash::FxHashMap;

use crate::model::ResourceRequest;

use super::{ExecutorState, PlacementPolicy, Score};

/// Most request shapes kept.
const MAX_SHAPES: usize = 512;

/// A min-tree over `(score, index)`.
#[derive(Clone, Debug)]
struct MinTree {
    /// Leaves start at `width`; node `i` holds the best of its children.
    nodes: Vec<(Score, u32)>,
    width: usize,
}

fn better(a: (Score, u32), b: (Score, u32)) -> (Score, u32) {
    match a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)) {
        Ordering::Greater => b,
        _ => a,
    }
}

impl MinTree {
    fn new(len: usize) -> Self {
        let width = len.next_power_of_two().max(1);
        MinTree {
            nodes: vec![(Score::UNFIT, u32::MAX); 2 * width],
            width,
        }
    }

    fn set(&mut self, index: usize, score: Score) {
        let mut i = self.width + index;
        self.nodes[i] = (score, index as u32);
        while i > 1 {
            i /= 2;
            self.nodes[i] = better(self.nodes[2 * i], self.nodes[2 * i + 1]);
        }
    }

    /// Sets every leaf, then every inner node once.
    fn fill(&mut self, scores: impl Iterator<Item = Score>) {
        for (index, score) in scores.enumerate() {
            self.nodes[self.width + index] = (score, index as u32);
        }
        for i in (1..self.width).rev() {
            self.nodes[i] = better(self.nodes[2 * i], self.nodes[2 * i + 1]);
        }
    }

    fn best(&self) -> Option<usize> {
        let (score, index) = self.nodes[1];
        score.fits().then_some(index as usize)
    }
}

#[derive(Clone, Debug)]
struct Shape {
    tree: MinTree,
    /// Executors covered by the tree.
    len: usize,
    /// Absolute change-log position up to which the tree is current.
    seen: u64,
    generation: u64,
    last_used: u64,
}

/// Scores cached per request shape; see the module documentation.
#[derive(Clone, Debug, Default)]
pub struct ScoreCache {
    shapes: FxHashMap<ResourceRequest, Shape>,
    /// Indices of executors whose state changed, in order.
    log: Vec<u32>,
    /// Absolute position of `log[0]`.
    log_base: u64,
    clock: u64,
}

fn score_of(
    policy: &mut dyn PlacementPolicy,
    req: &ResourceRequest,
    index: usize,
    e: &ExecutorState,
) -> Score {
    match e.fit(req) {
        Some(pick) => policy.score(req, index, e, &pick),
        None => Score::UNFIT,
    }
}

impl ScoreCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// Notes that executor `index` changed (its free capacity, whether it
    /// accepts work, or its shape).
    pub fn touch(&mut self, index: usize, executors: usize) {
        self.log.push(index as u32);
        if self.log.len() > 4 * executors + 1024 {
            // Shapes that have not caught up rebuild on their next decision.
            self.log_base += self.log.len() as u64;
            self.log.clear();
        }
    }

    /// The executor the policy would choose for `req`, from cached scores.
    pub fn choose(
        &mut self,
        policy: &mut dyn PlacementPolicy,
        req: &ResourceRequest,
        executors: &[ExecutorState],
    ) -> Option<usize> {
        if !policy.cacheable() {
            return policy.choose(req, executors);
        }
        self.clock += 1;
        let (clock, generation, n) = (self.clock, policy.generation(), executors.len());
        let log_end = self.log_base + self.log.len() as u64;
        if !self.shapes.contains_key(req) {
            if self.shapes.len() >= MAX_SHAPES {
                self.evict();
            }
            self.shapes.insert(
                req.clone(),
                Shape {
                    tree: MinTree::new(n),
                    len: usize::MAX,
                    seen: 0,
                    generation,
                    last_used: clock,
                },
            );
        }
        let shape = self.shapes.get_mut(req)?;
        shape.last_used = clock;
        let behind = log_end.saturating_sub(shape.seen);
        let rebuild = shape.len != n
            || shape.generation != generation
            || shape.seen < self.log_base
            || behind > n as u64 / 2;
        if rebuild {
            if shape.len != n {
                shape.tree = MinTree::new(n);
            }
            shape.tree.fill(
                executors
                    .iter()
                    .enumerate()
                    .map(|(i, e)| score_of(policy, req, i, e)),
            );
            shape.len = n;
            shape.generation = generation;
        } else {
            let from = (shape.seen - self.log_base) as usize;
            for &index in &self.log[from..] {
                let index = index as usize;
                shape
                    .tree
                    .set(index, score_of(policy, req, index, &executors[index]));
            }
        }
        shape.seen = log_end;
        shape.tree.best()
    }

    fn evict(&mut self) {
        let oldest = self
            .shapes
            .iter()
            .min_by_key(|(_, shape)| shape.last_used)
            .map(|(req, _)| req.clone());
        if let Some(req) = oldest {
            self.shapes.remove(&req);
        }
    }

    /// Request shapes cached.
    pub fn shapes(&self) -> usize {
        self.shapes.len()
    }
}
