//! The source's loop: watch, decode, admit, submit, settle, keep the
//! position; reconnect with backoff.
//!
//! One tokio task owns the connection. It reads inserts in batches, turns
//! each document into submission JSON ([`super::decode`]) and validates it
//! with the pipeline's limits. Valid tasks are admitted to the store in one
//! call (so a restart resumes them from the store) and, when new, handed to
//! the pipeline; an id the store already holds is not run again. Bad
//! documents go to the pipeline under this source's number, whose decoder
//! dead-letters them with their reason; the dead-letter sink's report (the
//! [`OutcomeListener`]) settles them. The position is written after every
//! batch and whenever settlements move it ([`super::progress`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt;
use mongodb::bson::{doc, Document};
use mongodb::change_stream::event::{ChangeStreamEvent, ResumeToken};
use mongodb::change_stream::ChangeStream;
use mongodb::options::{ClientOptions, ConnectionString};
use mongodb::{Client, Collection};
use tokio::sync::{mpsc, watch};

use tidewater_operators::model::{now_micros, AckToken, Rejection, Task};
use tidewater_operators::validate::{ValidationLimits, Validator};

use super::config::MongoSourceConfig;
use super::decode::submission_json;
use super::error::MongoSourceError;
use super::progress::Progress;
use super::tokens;
use crate::ingest::RecordIngress;
use crate::outcome::{Finished, OutcomeListener};
use crate::store::TaskStore;

/// First pause before reconnecting; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause before reconnecting.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one attempt waits for a usable server.
const SERVER_SELECTION: Duration = Duration::from_secs(5);

/// What the source needs from the pipeline.
pub struct MongoSourceContext {
    /// Where records go.
    pub ingress: Arc<dyn RecordIngress>,
    /// Where tasks are admitted.
    pub store: Arc<dyn TaskStore>,
    /// This source's number, for acknowledgements.
    pub source: u16,
    /// The pipeline's submission limits.
    pub limits: ValidationLimits,
}

/// A running change-stream source.
#[derive(Clone)]
pub struct MongoSourceHandle {
    source: u16,
    listener: Arc<Listener>,
    watching: watch::Receiver<bool>,
    stop: watch::Sender<Phase>,
    task: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

/// What the owner asked the loop to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Run,
    /// Read no more; keep settling.
    StopReading,
    /// Write the last position and end.
    Finish,
}

/// Hands dead-letter reports to the loop.
struct Listener {
    settled: mpsc::UnboundedSender<Vec<u64>>,
}

impl OutcomeListener for Listener {
    fn finished(&self, _batch: Vec<Finished>) {
        // Valid tasks were settled when admitted; their outcomes are the
        // store's business.
    }

    fn rejected(&self, batch: Vec<Rejection>) {
        let _ = self.settled.send(batch.iter().map(|r| r.ack.tag).collect());
    }
}

impl MongoSourceHandle {
    /// Starts watching on `runtime`.
    pub fn start(
        config: MongoSourceConfig,
        context: MongoSourceContext,
        runtime: &tokio::runtime::Handle,
    ) -> Result<Self, MongoSourceError> {
        config
            .validate()
            .map_err(|(key, detail)| MongoSourceError::Config { key, detail })?;
        let url = ConnectionString::parse(&config.url)
            .map_err(|e| MongoSourceError::Url(e.to_string()))?;
        let (settled_tx, settled_rx) = mpsc::unbounded_channel();
        let (watching_tx, watching) = watch::channel(false);
        let (stop, phase) = watch::channel(Phase::Run);
        let source = context.source;
        let worker = Worker {
            config,
            url,
            context,
            settled: settled_rx,
            watching: watching_tx,
            phase,
            progress: Progress::default(),
            resume: None,
            tokens: None,
        };
        let task = runtime.spawn(worker.run());
        Ok(MongoSourceHandle {
            source,
            listener: Arc::new(Listener {
                settled: settled_tx,
            }),
            watching,
            stop,
            task: Arc::new(Mutex::new(Some(task))),
        })
    }

    /// The source number its records carry.
    pub fn source(&self) -> u16 {
        self.source
    }

    /// The listener to register for [`source`](Self::source).
    pub fn listener(&self) -> Arc<dyn OutcomeListener> {
        Arc::clone(&self.listener) as Arc<dyn OutcomeListener>
    }

    /// Waits until the change stream is open (inserts from then on are
    /// seen). Returns whether it opened within `timeout`.
    pub async fn wait_watching(&self, timeout: Duration) -> bool {
        let mut watching = self.watching.clone();
        tokio::time::timeout(timeout, watching.wait_for(|open| *open))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops reading the change stream; dead-letter reports are still taken.
    pub fn stop_consuming(&self) {
        let _ = self.stop.send(Phase::StopReading);
    }

    /// Writes the last position and ends the loop. Call after the workers
    /// have stopped.
    pub async fn finish(&self) {
        let _ = self.stop.send(Phase::Finish);
        let task = self.task.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}

/// The loop's state.
struct Worker {
    config: MongoSourceConfig,
    url: ConnectionString,
    context: MongoSourceContext,
    settled: mpsc::UnboundedReceiver<Vec<u64>>,
    watching: watch::Sender<bool>,
    phase: watch::Receiver<Phase>,
    progress: Progress,
    /// The last event read: where a reconnection resumes.
    resume: Option<ResumeToken>,
    tokens: Option<Collection<Document>>,
}

/// Why a connection's stream ended.
enum Ended {
    /// The owner asked the loop to stop reading.
    Stopped,
    /// The connection or the stream failed.
    Failed(String),
}

impl Worker {
    async fn run(mut self) {
        let mut backoff = MIN_BACKOFF;
        while *self.phase.borrow() == Phase::Run {
            match self.connection().await {
                Ended::Stopped => break,
                Ended::Failed(e) => {
                    let _ = self.watching.send(false);
                    tracing::warn!(source = %self.config.name, error = %e, retry_in = ?backoff, "MongoDB change stream failed; reconnecting");
                    self.pause(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        let _ = self.watching.send(false);
        // Dead-letter reports still settle events until the owner finishes.
        while *self.phase.borrow() != Phase::Finish {
            tokio::select! {
                Some(numbers) = self.settled.recv() => self.settle(numbers).await,
                changed = self.phase.changed() => if changed.is_err() { break },
            }
        }
        while let Ok(numbers) = self.settled.try_recv() {
            self.settle(numbers).await;
        }
        self.save_position().await;
        if self.progress.unsettled() > 0 {
            tracing::info!(
                source = %self.config.name,
                unsettled = self.progress.unsettled(),
                "stopping with unsettled documents; they are read again on restart"
            );
        }
    }

    /// Sleeps, waking early when the owner stops the loop.
    async fn pause(&mut self, pause: Duration) {
        let _ = tokio::time::timeout(pause, self.phase.changed()).await;
    }

    /// One connection: open the stream and process it until it fails.
    async fn connection(&mut self) -> Ended {
        // Parsing may look up SRV records, so it is done on each connection.
        let mut options = match ClientOptions::parse(self.url.clone()).await {
            Ok(options) => options,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        options
            .server_selection_timeout
            .get_or_insert(SERVER_SELECTION);
        let client = match Client::with_options(options) {
            Ok(client) => client,
            Err(e) => return Ended::Failed(e.to_string()),
        };
        let db = client.database(&self.config.database);
        let tokens: Collection<Document> = db.collection(&self.config.tokens_collection);
        self.tokens = Some(tokens.clone());
        if self.resume.is_none() {
            match tokens::load(&tokens, &self.config.token_key()).await {
                Ok(token) => self.resume = token,
                Err(e) => return Ended::Failed(format!("reading the resume token: {e}")),
            }
        }
        let watched: Collection<Document> = db.collection(&self.config.collection);
        let opened = watched
            .watch()
            .pipeline([doc! { "$match": { "operationType": "insert" } }])
            .resume_after(self.resume.clone())
            .await;
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) => return Ended::Failed(format!("opening the change stream: {e}")),
        };
        if self.resume.is_none() {
            // Inserts from now on must not be missed after a restart either.
            if let Some(start) = stream.resume_token() {
                self.progress.start_at(start.clone());
                self.resume = Some(start);
                self.save_position().await;
            }
        }
        let _ = self.watching.send(true);
        tracing::info!(source = %self.config.name, namespace = %self.config.token_key(), "watching for inserted tasks");
        loop {
            tokio::select! {
                Some(numbers) = self.settled.recv() => self.settle(numbers).await,
                changed = self.phase.changed() => {
                    if changed.is_err() || *self.phase.borrow() != Phase::Run {
                        return Ended::Stopped;
                    }
                }
                event = stream.next() => match event {
                    Some(Ok(event)) => {
                        let batch = match self.more(&mut stream, event).await {
                            Ok(batch) => batch,
                            Err(e) => return Ended::Failed(e.to_string()),
                        };
                        if let Err(ended) = self.process(batch).await {
                            return ended;
                        }
                    }
                    Some(Err(e)) => return Ended::Failed(e.to_string()),
                    None => return Ended::Failed("the change stream ended".into()),
                },
            }
        }
    }

    /// `first` and the events already at hand after it, up to a batch.
    async fn more(
        &self,
        stream: &mut ChangeStream<ChangeStreamEvent<Document>>,
        first: ChangeStreamEvent<Document>,
    ) -> Result<Vec<ChangeStreamEvent<Document>>, mongodb::error::Error> {
        let mut batch = vec![first];
        while batch.len() < self.config.batch_size {
            match stream.next_if_any().await? {
                Some(event) => batch.push(event),
                None => break,
            }
        }
        Ok(batch)
    }

    /// Decodes a batch, admits its valid tasks and submits what is new,
    /// and sends bad documents to be dead-lettered.
    async fn process(&mut self, batch: Vec<ChangeStreamEvent<Document>>) -> Result<(), Ended> {
        let mut validator = Validator::for_source(self.context.limits.clone(), "mongodb", 0);
        let mut valid: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut tasks: Vec<Task> = Vec::new();
        let mut invalid: Vec<(u64, Vec<u8>)> = Vec::new();
        let now = now_micros();
        for event in batch {
            self.resume = Some(event.id.clone());
            let number = self.progress.read(event.id);
            let Some(document) = event.full_document else {
                // An insert always carries its document; nothing to run.
                self.progress.settle(number);
                continue;
            };
            let json = submission_json(document);
            match validator.decode(&json, AckToken::NONE, now) {
                Ok(task) => {
                    tasks.push(task);
                    valid.push((number, json));
                }
                Err(_) => invalid.push((number, json)),
            }
        }
        if !tasks.is_empty() {
            let admissions = self.admit(tasks).await?;
            for ((number, json), admission) in valid.into_iter().zip(admissions) {
                if admission {
                    self.submit(json, 0, 0)?;
                }
                self.progress.settle(number);
            }
        }
        for (number, json) in invalid {
            self.submit(json, self.context.source, number)?;
        }
        self.save_position().await;
        Ok(())
    }

    /// Admits tasks, retrying while the store fails; per task, whether it
    /// was new.
    async fn admit(&mut self, tasks: Vec<Task>) -> Result<Vec<bool>, Ended> {
        let tasks = Arc::new(tasks);
        let mut backoff = MIN_BACKOFF;
        loop {
            let store = Arc::clone(&self.context.store);
            let batch = Arc::clone(&tasks);
            let admitted = tokio::task::spawn_blocking(move || store.admit(&batch)).await;
            match admitted {
                Ok(Ok(admissions)) => {
                    return Ok(admissions.iter().map(|a| a.is_new()).collect());
                }
                Ok(Err(e)) => {
                    tracing::error!(source = %self.config.name, error = %e, retry_in = ?backoff, "admitting tasks failed; retrying");
                }
                Err(e) => return Err(Ended::Failed(format!("admission panicked: {e}"))),
            }
            if *self.phase.borrow() != Phase::Run {
                return Err(Ended::Stopped);
            }
            self.pause(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn submit(&self, json: Vec<u8>, source: u16, tag: u64) -> Result<(), Ended> {
        self.context
            .ingress
            .submit_json(&self.config.name, json, source, tag, None)
            .map_err(|_| Ended::Stopped)
    }

    async fn settle(&mut self, numbers: Vec<u64>) {
        for number in numbers {
            self.progress.settle(number);
        }
        self.save_position().await;
    }

    /// Writes the position if it moved; a failure is retried next time.
    async fn save_position(&mut self) {
        let (Some(tokens), Some(token)) = (&self.tokens, self.progress.unsaved().cloned()) else {
            return;
        };
        match tokens::save(tokens, &self.config.token_key(), &token).await {
            Ok(()) => self.progress.saved(&token),
            Err(e) => {
                tracing::warn!(source = %self.config.name, error = %e, "saving the change stream position failed; retrying later");
            }
        }
    }
}
