//! How the synchronous store drives the async driver.
//!
//! [`TaskStore`](crate::store::TaskStore) is a blocking interface, called
//! from timely worker threads and from tokio's blocking pool. The store owns
//! a small multi-threaded tokio runtime on which the driver's connection
//! pool and monitors live; each call spawns its work there and waits for
//! the answer on a channel, so it may be called from any thread (even one
//! inside another runtime) without panicking.
//!
//! Each attempt of an operation is retried with exponential backoff
//! (backon) while it fails transiently: writes until they land, so that a
//! result sink blocks while MongoDB is unreachable and backpressure flows
//! upstream with nothing lost; reads a few times, then the error goes back
//! to the caller (an HTTP lookup answers 503 instead of hanging).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT;
use mongodb::options::{Acknowledgment, TransactionOptions, WriteConcern};
use mongodb::{Client, ClientSession};

use super::error::{is_transient, Failure};
use crate::store::StoreError;

/// Shortest pause before a retry.
const MIN_BACKOFF: Duration = Duration::from_millis(20);
/// Attempts a read makes before it reports the failure.
const READ_ATTEMPTS: usize = 3;
/// Times a commit whose outcome is unknown is retried before the whole
/// transaction is made again.
const COMMIT_RETRIES: usize = 3;

/// How long an operation keeps trying.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Persistence {
    /// Until it succeeds or fails for good: for writes, whose callers must
    /// not lose them.
    UntilDone,
    /// A few attempts: for reads.
    Bounded,
}

/// A boxed future borrowing a session, as transaction bodies return.
pub type SessionFuture<'s, T> = Pin<Box<dyn Future<Output = Result<T, Failure>> + Send + 's>>;

/// The store's runtime and retry policy.
pub struct Exec {
    runtime: Option<tokio::runtime::Runtime>,
    max_backoff: Duration,
}

impl Exec {
    /// Starts the runtime.
    pub fn new(max_backoff: Duration) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("tidewater-mongo")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Open {
                path: "mongodb runtime".into(),
                detail: e.to_string(),
            })?;
        Ok(Exec {
            runtime: Some(runtime),
            max_backoff: max_backoff.max(MIN_BACKOFF),
        })
    }

    /// Runs `future` on the store's runtime and waits for its output.
    pub fn block_on<T, F>(&self, operation: &'static str, future: F) -> Result<T, StoreError>
    where
        F: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        let closed = || StoreError::Database {
            operation,
            detail: "the store is closed".into(),
        };
        let runtime = self.runtime.as_ref().ok_or_else(closed)?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            // The receiver only goes away if the caller's thread died.
            let _ = tx.send(future.await);
        });
        rx.recv().map_err(|_| closed())
    }

    /// Runs `attempt` on the store's runtime, again after a backoff for as
    /// long as it fails transiently and `persistence` allows.
    pub fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        persistence: Persistence,
        attempt: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Failure>> + Send + 'static,
        T: Send + 'static,
    {
        let backoff = self.backoff(persistence);
        let retried = attempt
            .retry(backoff)
            .when(Failure::is_transient)
            .notify(move |e, pause| {
                tracing::warn!(operation, error = %e, retry_in = ?pause, "MongoDB store: attempt failed, retrying");
            });
        self.block_on(operation, retried)?
            .map_err(|e| e.into_store_error(operation))
    }

    fn backoff(&self, persistence: Persistence) -> ExponentialBuilder {
        let builder = ExponentialBuilder::default()
            .with_min_delay(MIN_BACKOFF)
            .with_max_delay(self.max_backoff)
            .with_jitter();
        match persistence {
            Persistence::UntilDone => builder.without_max_times(),
            Persistence::Bounded => builder.with_max_times(READ_ATTEMPTS - 1),
        }
    }
}

impl Drop for Exec {
    fn drop(&mut self) {
        // Never blocks, so dropping the store inside async code is safe.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs `body` in one transaction on a new session of `client` and commits
/// it with majority, journaled acknowledgement. Fails (for the caller's
/// retry loop to try again) when the body or the commit fails; a commit
/// whose outcome is unknown is retried on its own first, as the MongoDB
/// transactions specification asks.
pub async fn in_transaction<T, B>(client: &Client, body: B) -> Result<T, Failure>
where
    B: for<'s> FnOnce(&'s mut ClientSession) -> SessionFuture<'s, T>,
{
    let mut session = client.start_session().await?;
    let options = TransactionOptions::builder()
        .write_concern(
            WriteConcern::builder()
                .w(Acknowledgment::Majority)
                .journal(true)
                .build(),
        )
        .build();
    session.start_transaction().with_options(options).await?;
    let value = match body(&mut session).await {
        Ok(value) => value,
        Err(e) => {
            // The server aborts on its own when it cannot reach us; an
            // abort that fails changes nothing.
            let _ = session.abort_transaction().await;
            return Err(e);
        }
    };
    let mut retries = 0;
    loop {
        match session.commit_transaction().await {
            Ok(()) => return Ok(value),
            Err(e)
                if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                    && retries < COMMIT_RETRIES
                    && is_transient(&e) =>
            {
                retries += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
