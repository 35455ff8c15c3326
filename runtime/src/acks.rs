//! Acknowledgement routing: from recorded outcomes back to the sources.
//!
//! A source that needs acknowledgements (a broker consumer) registers a
//! callback under its source number; the result and dead-letter sinks call
//! [`AckRegistry::acknowledge`] only after the outcome is durably recorded.
//! A connector that must publish something first (results, dead letters)
//! registers an [`OutcomeListener`] instead and receives the recorded
//! outcomes themselves through [`AckRegistry::finished`] and
//! [`AckRegistry::rejected`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tidewater_connectors::outcome::{Finished, OutcomeListener};
use tidewater_operators::model::{AckToken, Completion, Rejection};

/// Acknowledges a batch of deliveries of one source.
pub type AckCallback = Arc<dyn Fn(&[AckToken]) + Send + Sync>;

/// Callbacks by source number.
#[derive(Clone, Default)]
pub struct AckRegistry {
    callbacks: Arc<RwLock<HashMap<u16, AckCallback>>>,
    listeners: Arc<RwLock<HashMap<u16, Arc<dyn OutcomeListener>>>>,
}

impl AckRegistry {
    /// Registers `callback` for source number `source` (non-zero).
    pub fn register(&self, source: u16, callback: AckCallback) {
        if let Ok(mut map) = self.callbacks.write() {
            map.insert(source, callback);
        }
    }

    /// Acknowledges every token that names a source; tokens are grouped by
    /// source and each group is passed to its callback in order.
    pub fn acknowledge(&self, tokens: impl IntoIterator<Item = AckToken>) {
        let mut by_source: HashMap<u16, Vec<AckToken>> = HashMap::new();
        for token in tokens.into_iter().filter(AckToken::is_some) {
            by_source.entry(token.source).or_default().push(token);
        }
        if by_source.is_empty() {
            return;
        }
        let Ok(map) = self.callbacks.read() else {
            return;
        };
        for (source, tokens) in by_source {
            match map.get(&source) {
                Some(callback) => callback(&tokens),
                None => tracing::warn!(
                    source,
                    count = tokens.len(),
                    "no acknowledgement callback for source"
                ),
            }
        }
    }

    /// Registers `listener` for source number `source` (non-zero): it gets
    /// the recorded outcomes of that source's records, and acknowledges them
    /// itself.
    pub fn register_listener(&self, source: u16, listener: Arc<dyn OutcomeListener>) {
        if let Ok(mut map) = self.listeners.write() {
            map.insert(source, listener);
        }
    }

    /// Final outcomes just recorded (`fresh[i]`: whether `finals[i]` was the
    /// first outcome recorded for its task): those of listening sources go
    /// to their listeners, the others' tokens to [`acknowledge`](Self::acknowledge).
    pub fn finished(&self, finals: &[Completion], fresh: &[bool]) {
        let listeners = self.listeners_of(finals.iter().map(|c| c.task.ack));
        let Some(listeners) = listeners else {
            self.acknowledge(finals.iter().map(|c| c.task.ack));
            return;
        };
        let mut batches: HashMap<u16, Vec<Finished>> = HashMap::new();
        let mut tokens = Vec::new();
        for (c, fresh) in finals.iter().zip(fresh) {
            if listeners.contains_key(&c.task.ack.source) {
                batches
                    .entry(c.task.ack.source)
                    .or_default()
                    .push(Finished {
                        completion: c.clone(),
                        fresh: *fresh,
                    });
            } else {
                tokens.push(c.task.ack);
            }
        }
        for (source, batch) in batches {
            listeners[&source].finished(batch);
        }
        self.acknowledge(tokens);
    }

    /// Rejections just dead-lettered: those of listening sources go to their
    /// listeners, the others' tokens to [`acknowledge`](Self::acknowledge).
    pub fn rejected(&self, rejections: &[Rejection]) {
        let Some(listeners) = self.listeners_of(rejections.iter().map(|r| r.ack)) else {
            self.acknowledge(rejections.iter().map(|r| r.ack));
            return;
        };
        let mut batches: HashMap<u16, Vec<Rejection>> = HashMap::new();
        let mut tokens = Vec::new();
        for r in rejections {
            if listeners.contains_key(&r.ack.source) {
                batches.entry(r.ack.source).or_default().push(r.clone());
            } else {
                tokens.push(r.ack);
            }
        }
        for (source, batch) in batches {
            listeners[&source].rejected(batch);
        }
        self.acknowledge(tokens);
    }

    /// The listeners, when any of `tokens` has one.
    fn listeners_of(
        &self,
        mut tokens: impl Iterator<Item = AckToken>,
    ) -> Option<HashMap<u16, Arc<dyn OutcomeListener>>> {
        let map = self.listeners.read().ok()?;
        if map.is_empty() || !tokens.any(|t| map.contains_key(&t.source)) {
            return None;
        }
        Some(map.clone())
    }
}
