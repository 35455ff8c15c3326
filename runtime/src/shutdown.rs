//! Safe shutdown on SIGINT and SIGTERM.
//!
//! The first signal starts a drain: brokers stop consuming, the HTTP API
//! refuses new tasks but keeps answering status, listings and cancels, and
//! the tasks in flight run to their end. When nothing is in flight, or
//! after `shutdown.drain_timeout_ms`, the pipeline shuts down; at the
//! timeout what still runs is stopped and left queued in the store (and
//! unacknowledged at its broker) for the next start. A second signal does
//! the same at once. Nothing accepted is lost either way.
//!
//! ```text
//!  signal ─► begin_drain ─► wait: idle? ──yes──► shutdown (all finished)
//!                             │  timeout or second signal
//!                             └──────────────► abandon_in_flight ─► shutdown (rest stays queued)
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::RuntimeError;
use crate::pipeline::RunningPipeline;
use crate::stats::StatsSnapshot;

/// How a drained shutdown ended.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DrainReport {
    /// Whether everything in flight finished before the pipeline stopped.
    pub drained: bool,
    /// Why the drain stopped waiting, when it did not finish.
    pub cut_short_by: Option<&'static str>,
    /// The run's counters.
    pub stats: StatsSnapshot,
}

/// Counts SIGINT and SIGTERM deliveries, from the moment it is created.
#[derive(Clone)]
pub struct Signals {
    received: Arc<AtomicU32>,
    notify: Arc<tokio::sync::Notify>,
}

impl Signals {
    /// Listens for SIGINT and SIGTERM on `runtime`.
    pub fn listen(runtime: &tokio::runtime::Handle) -> Result<Signals, RuntimeError> {
        let signals = Signals {
            received: Arc::new(AtomicU32::new(0)),
            notify: Arc::new(tokio::sync::Notify::new()),
        };
        let io = |source| RuntimeError::Io {
            context: "listening for signals".into(),
            source,
        };
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let _entered = runtime.enter();
            let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
            let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
            let counter = signals.clone();
            runtime.spawn(async move {
                loop {
                    let name = tokio::select! {
                        _ = interrupt.recv() => "SIGINT",
                        _ = terminate.recv() => "SIGTERM",
                    };
                    let n = counter.received.fetch_add(1, Ordering::AcqRel) + 1;
                    tracing::info!(signal = name, count = n, "signal received");
                    counter.notify.notify_waiters();
                }
            });
        }
        #[cfg(not(unix))]
        {
            let counter = signals.clone();
            let _ = io;
            runtime.spawn(async move {
                while tokio::signal::ctrl_c().await.is_ok() {
                    counter.received.fetch_add(1, Ordering::AcqRel);
                    counter.notify.notify_waiters();
                }
            });
        }
        Ok(signals)
    }

    /// Signals received so far.
    pub fn count(&self) -> u32 {
        self.received.load(Ordering::Acquire)
    }

    /// Waits (blocking the calling thread) until at least `n` signals have
    /// arrived.
    pub fn wait_for(&self, runtime: &tokio::runtime::Handle, n: u32) {
        runtime.block_on(async {
            loop {
                let notified = self.notify.notified();
                if self.count() >= n {
                    return;
                }
                notified.await;
            }
        });
    }
}

/// Drains and shuts `pipeline` down: waits up to `timeout` for in-flight
/// work, or until `signals` counts a second signal.
pub fn drain(
    pipeline: RunningPipeline,
    timeout: Duration,
    signals: Option<&Signals>,
) -> Result<DrainReport, RuntimeError> {
    pipeline.begin_drain();
    let started = Instant::now();
    let first = signals.map_or(0, Signals::count);
    let cut_short_by = loop {
        if pipeline.is_idle() {
            break None;
        }
        if signals.is_some_and(|s| s.count() > first) {
            break Some("a second signal");
        }
        if started.elapsed() >= timeout {
            break Some("shutdown.drain_timeout_ms");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let Some(why) = cut_short_by {
        tracing::warn!(
            cut_short_by = why,
            "stopping what still runs; it stays queued for the next start"
        );
        pipeline.abandon_in_flight();
    } else {
        tracing::info!(elapsed_ms = started.elapsed().as_millis() as u64, "drained");
    }
    let stats = pipeline.shutdown()?;
    Ok(DrainReport {
        drained: cut_short_by.is_none(),
        cut_short_by,
        stats,
    })
}
