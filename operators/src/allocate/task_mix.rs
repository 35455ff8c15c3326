//! The observed task mix: how often each kind of resource request occurs.

use std::collections::HashMap;

use crate::model::ResourceRequest;

/// Most distinct request classes kept (the most popular ones).
const MAX_CLASSES: usize = 64;

/// One class of requests and its share of the workload.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskClass {
    /// The request (custom resources are ignored by the mix).
    pub request: ResourceRequest,
    /// Its share of observed requests, summing to 1 over the classes kept.
    pub weight: f64,
}

/// The distribution of resource requests seen so far, learned online.
#[derive(Clone, Debug, Default)]
pub struct TaskMix {
    counts: HashMap<ResourceRequest, u64>,
    classes: Vec<TaskClass>,
    stale: bool,
}

impl TaskMix {
    /// An empty mix.
    pub fn new() -> Self {
        Self::default()
    }

    /// A mix built from a list of requests (for example a trace).
    pub fn from_requests<'a>(requests: impl IntoIterator<Item = &'a ResourceRequest>) -> Self {
        let mut mix = Self::new();
        requests.into_iter().for_each(|r| mix.observe(r));
        mix
    }

    /// Counts one request.
    pub fn observe(&mut self, request: &ResourceRequest) {
        let key = ResourceRequest {
            custom: Box::new([]),
            ..request.clone()
        };
        *self.counts.entry(key).or_insert(0) += 1;
        self.stale = true;
    }

    /// Whether nothing has been observed.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// The most popular classes with normalized weights.
    pub fn classes(&mut self) -> &[TaskClass] {
        if self.stale {
            let mut by_count: Vec<(&ResourceRequest, u64)> =
                self.counts.iter().map(|(r, c)| (r, *c)).collect();
            by_count.sort_by(|a, b| {
                b.1.cmp(&a.1)
                    .then_with(|| format!("{:?}", a.0).cmp(&format!("{:?}", b.0)))
            });
            by_count.truncate(MAX_CLASSES);
            let total: u64 = by_count.iter().map(|(_, c)| c).sum();
            self.classes = by_count
                .into_iter()
                .map(|(request, count)| TaskClass {
                    request: request.clone(),
                    weight: count as f64 / total as f64,
                })
                .collect();
            self.stale = false;
        }
        &self.classes
    }
}
