//! Results counted in the background: a [`Collector`] counts the messages
//! a broker client reads, by task id, while the test waits on it. The AMQP
//! client ([`Amqp::collect`](super::Amqp::collect)) and the Kafka client
//! ([`Kafka::collect`](super::kafka::Kafka::collect)) feed the same type,
//! each from its own background reader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The counts a background reader adds to.
#[derive(Clone, Default)]
pub struct Counts(Arc<Mutex<HashMap<String, usize>>>);

impl Counts {
    /// Counts one message for `id`.
    pub fn add(&self, id: String) {
        if let Ok(mut counts) = self.0.lock() {
            *counts.entry(id).or_insert(0) += 1;
        }
    }
}

/// Counts messages by task id, read in the background until dropped.
pub struct Collector {
    counts: Counts,
    stop: Option<Box<dyn FnOnce() + Send>>,
}

impl Collector {
    /// A collector over `counts`, whose reader `stop` ends.
    pub fn new(counts: Counts, stop: impl FnOnce() + Send + 'static) -> Collector {
        Collector {
            counts,
            stop: Some(Box::new(stop)),
        }
    }

    /// Distinct task ids seen.
    pub fn distinct(&self) -> usize {
        self.counts.0.lock().map(|c| c.len()).unwrap_or_default()
    }

    /// Counts by task id.
    pub fn counts(&self) -> HashMap<String, usize> {
        self.counts.0.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Waits until `count` distinct ids were seen; false after `timeout`.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.distinct() < count {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}
