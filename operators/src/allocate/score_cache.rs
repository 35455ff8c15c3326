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
//! shape's last decision, rescoring each changed executor once (at O(log n)
//! each, or with one O(n) pass over the inner nodes when many changed), and
//! reads the winner at the root. Shapes are bounded (at most 512, and
//! at most 64 MiB of trees; least recently used go first), the log is
//! compacted (shapes behind it rebuild), and a new policy generation
//! rebuilds every shape.

use std::cmp::Ordering;

use rustc_hash::FxHashMap;

use crate::model::ResourceRequest;

use super::{ExecutorState, PlacementPolicy, Score};

/// Most request shapes kept.
const MAX_SHAPES: usize = 512;

/// Memory the cached trees may take, in bytes; fewer shapes are kept on
/// large clusters.
const CACHE_BUDGET_BYTES: usize = 64 << 20;

/// A min-tree over executors' scores: leaves hold scores, inner nodes the
/// index of the best leaf below them (ties to the lower index).
#[derive(Clone, Debug)]
struct MinTree {
    scores: Vec<Score>,
    /// Node `i` (1-based heap order) holds the winning leaf index; leaves
    /// start at `width`.
    winners: Vec<u32>,
    width: usize,
}

impl MinTree {
    fn new(len: usize) -> Self {
        let width = len.next_power_of_two().max(1);
        let mut winners = vec![0u32; 2 * width];
        for (i, w) in winners[width..].iter_mut().enumerate() {
            *w = i as u32;
        }
        MinTree {
            scores: vec![Score::UNFIT; width],
            winners,
            width,
        }
    }

    /// Bytes a tree over `len` executors takes.
    fn bytes(len: usize) -> usize {
        let width = len.next_power_of_two().max(1);
        width * std::mem::size_of::<Score>() + 2 * width * std::mem::size_of::<u32>()
    }

    fn winner(&self, a: u32, b: u32) -> u32 {
        match self.scores[a as usize]
            .total_cmp(&self.scores[b as usize])
            .then(a.cmp(&b))
        {
            Ordering::Greater => b,
            _ => a,
        }
    }

    /// Sets leaf `index` and repairs its path towards the root, stopping
    /// at the first node whose winner is unchanged and is not `index`
    /// (every node above it then holds the same winner with the same
    /// score, so nothing above can change). A worse score for an executor
    /// that was not winning, the common case after a placement, stops at
    /// the first level whose other side wins.
    fn set(&mut self, index: usize, score: Score) {
        self.scores[index] = score;
        let leaf = index as u32;
        let mut i = (self.width + index) / 2;
        while i >= 1 {
            let before = self.winners[i];
            let after = self.winner(self.winners[2 * i], self.winners[2 * i + 1]);
            self.winners[i] = after;
            if after == before && after != leaf {
                break;
            }
            i /= 2;
        }
    }

    /// Sets every leaf, then every inner node once.
    fn fill(&mut self, scores: impl Iterator<Item = Score>) {
        for (index, score) in scores.enumerate() {
            self.scores[index] = score;
        }
        self.rebuild_inner();
    }

    /// Recomputes every inner node from the leaves.
    fn rebuild_inner(&mut self) {
        for i in (1..self.width).rev() {
            self.winners[i] = self.winner(self.winners[2 * i], self.winners[2 * i + 1]);
        }
    }

    /// Levels above the leaves.
    fn depth(&self) -> usize {
        self.width.trailing_zeros() as usize
    }

    fn best(&self) -> Option<usize> {
        let index = if self.width == 1 { 0 } else { self.winners[1] } as usize;
        self.scores[index].fits().then_some(index)
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
    /// Scratch for replaying the log: the pass in which each executor was
    /// last rescored, and the executors rescored in this pass.
    stamps: Vec<u64>,
    pass: u64,
    changed: Vec<u32>,
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
            let max_shapes = (CACHE_BUDGET_BYTES / MinTree::bytes(n)).clamp(8, MAX_SHAPES);
            while self.shapes.len() >= max_shapes {
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
        let rebuild =
            shape.len != n || shape.generation != generation || shape.seen < self.log_base;
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
            // Rescore each executor changed since this shape last decided,
            // once however often it changed.
            let from = (shape.seen - self.log_base) as usize;
            self.pass += 1;
            if self.stamps.len() < n {
                self.stamps.resize(n, 0);
            }
            self.changed.clear();
            for &index in &self.log[from..] {
                let stamp = &mut self.stamps[index as usize];
                if *stamp != self.pass {
                    *stamp = self.pass;
                    self.changed.push(index);
                }
            }
            let many = self.changed.len() * (shape.tree.depth() + 1) > n;
            for &index in &self.changed {
                let index = index as usize;
                let score = score_of(policy, req, index, &executors[index]);
                if many {
                    shape.tree.scores[index] = score;
                } else {
                    shape.tree.set(index, score);
                }
            }
            if many {
                shape.tree.rebuild_inner();
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
