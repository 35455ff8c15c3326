//! Acknowledgement routing: from recorded outcomes back to the sources.
//!
//! A source that needs acknowledgements (a broker consumer) registers a
//! callback under its source number; the result and dead-letter sinks call
//! [`AckRegistry::acknowledge`] only after the outcome is durably recorded.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tidewater_operators::model::AckToken;

/// Acknowledges a batch of deliveries of one source.
pub type AckCallback = Arc<dyn Fn(&[AckToken]) + Send + Sync>;

/// Callbacks by source number.
#[derive(Clone, Default)]
pub struct AckRegistry {
    callbacks: Arc<RwLock<HashMap<u16, AckCallback>>>,
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
}
