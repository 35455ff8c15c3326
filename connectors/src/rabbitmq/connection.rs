//! The connector's connection loop: consume, hand records to the pipeline,
//! publish outcomes with confirms, acknowledge, and reconnect with backoff.
//! This module is the loop ([`run`]); one connection's work is a
//! [`Session`] ([`super::session`]), and what it does with outcomes is
//! [`super::outcomes`].
//!
//! One tokio task owns the connection. Per consumed queue, a consumer task
//! records each delivery as pending and submits it to the pipeline with a
//! packed (generation, delivery tag). Recorded outcomes come back as
//! commands through the [`OutcomeListener`](crate::outcome::OutcomeListener); the owner publishes results,
//! replies and dead letters on a confirm-mode channel, waits for the
//! broker's confirms, and only then acknowledges the deliveries.
//!
//! When the connection or a channel fails, everything of that generation is
//! dropped unacknowledged: the broker redelivers it on the next connection,
//! and outcomes still arriving for the old generation are ignored. A
//! redelivered task whose outcome the store already holds is acknowledged,
//! and its stored result is published again (the earlier publication may
//! not have been confirmed), so results on the broker are at least once,
//! each with the task id as message id; the store records each exactly once.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use super::config::RabbitMqConfig;
use super::error::RabbitMqError;
use super::handle::{Command, RabbitMqContext};
use super::messages::Outbound;
use super::session::Session;

/// Most events held for publication while the broker is unreachable; the
/// oldest are dropped beyond this (with a warning).
const MAX_HELD_EVENTS: usize = 10_000;

/// Why a connection's session ended.
pub(super) enum Ended {
    /// Asked to finish; answer when closed.
    Finish(oneshot::Sender<()>),
    /// Every handle is gone.
    Dropped,
    /// The connection or a channel failed.
    Failed(RabbitMqError),
}

/// The connection task: opens a [`Session`], serves it until it ends, and
/// reconnects with exponential backoff after a failure.
pub(super) async fn run(
    config: RabbitMqConfig,
    context: RabbitMqContext,
    mut commands: mpsc::UnboundedReceiver<Command>,
    connected: watch::Sender<u32>,
) {
    let initial = Duration::from_millis(config.reconnect_initial_ms);
    let max = Duration::from_millis(config.reconnect_max_ms);
    let mut backoff = initial;
    let mut generation = 0u32;
    let mut consuming = true;
    // Events (alerts) not yet confirmed by the broker.
    let mut held: Vec<Outbound> = Vec::new();
    loop {
        generation = generation.wrapping_add(1).max(1);
        let ended = match Session::open(&config, &context, generation, consuming).await {
            Ok(mut session) => {
                backoff = initial;
                let _ = connected.send(generation);
                let ended = session
                    .serve(&mut commands, &mut consuming, &mut held)
                    .await;
                let _ = connected.send(0);
                session.close().await;
                ended
            }
            Err(e) => Ended::Failed(e),
        };
        match ended {
            Ended::Finish(reply) => {
                let _ = reply.send(());
                return;
            }
            Ended::Dropped => return,
            Ended::Failed(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "RabbitMQ connection failed or lost; retrying");
            }
        }
        // Outcomes of the lost connection cannot be acknowledged: the broker
        // redelivers those messages. Keep serving control commands meanwhile.
        let deadline = tokio::time::Instant::now() + backoff;
        loop {
            match tokio::time::timeout_at(deadline, commands.recv()).await {
                Err(_elapsed) => break,
                Ok(None) => return,
                Ok(Some(Command::Finish(reply))) => {
                    let _ = reply.send(());
                    return;
                }
                Ok(Some(Command::StopConsuming(reply))) => {
                    consuming = false;
                    let _ = reply.send(());
                }
                Ok(Some(Command::Publish(message))) => hold(&mut held, *message),
                Ok(Some(Command::Finished(_) | Command::Rejected(_))) => {}
            }
        }
        backoff = (backoff * 2).min(max);
    }
}

/// Holds `message` for publication, dropping the oldest held message
/// beyond [`MAX_HELD_EVENTS`].
pub(super) fn hold(held: &mut Vec<Outbound>, message: Outbound) {
    if held.len() >= MAX_HELD_EVENTS {
        let dropped = held.remove(0);
        tracing::warn!(exchange = %dropped.exchange, routing_key = %dropped.routing_key, "the broker has been unreachable too long; dropping the oldest held event");
    }
    held.push(message);
}
