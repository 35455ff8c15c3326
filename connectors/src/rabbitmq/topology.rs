//! Declares the configured exchanges, queues and bindings, and the results
//! and dead-letter exchanges, on every (re)connection. Declarations are
//! idempotent, so a broker that lost its non-durable topology in a restart
//! gets it back.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};

use super::config::{ExchangeType, RabbitMqConfig};
use super::error::RabbitMqError;

fn kind(t: ExchangeType) -> ExchangeKind {
    match t {
        ExchangeType::Direct => ExchangeKind::Direct,
        ExchangeType::Fanout => ExchangeKind::Fanout,
        ExchangeType::Topic => ExchangeKind::Topic,
        ExchangeType::Headers => ExchangeKind::Headers,
    }
}

/// Declares a durable topic exchange.
pub async fn declare_topic(channel: &Channel, name: &str) -> Result<(), RabbitMqError> {
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(RabbitMqError::amqp(format!("declaring exchange {name:?}")))
}

/// Declares everything the config names.
pub async fn declare(channel: &Channel, config: &RabbitMqConfig) -> Result<(), RabbitMqError> {
    for exchange in &config.exchanges {
        channel
            .exchange_declare(
                exchange.name.as_str().into(),
                kind(exchange.kind),
                ExchangeDeclareOptions {
                    durable: exchange.durable,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(RabbitMqError::amqp(format!(
                "declaring exchange {:?}",
                exchange.name
            )))?;
    }
    for name in [
        &config.results_exchange,
        &config.dead_letter_exchange,
        &config.alerts_exchange,
    ] {
        if !name.is_empty() {
            declare_topic(channel, name).await?;
        }
    }
    for queue in &config.queues {
        channel
            .queue_declare(
                queue.name.as_str().into(),
                QueueDeclareOptions {
                    durable: queue.durable,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(RabbitMqError::amqp(format!(
                "declaring queue {:?}",
                queue.name
            )))?;
    }
    for binding in &config.bindings {
        channel
            .queue_bind(
                binding.queue.as_str().into(),
                binding.exchange.as_str().into(),
                binding.routing_key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(RabbitMqError::amqp(format!(
                "binding queue {:?} to exchange {:?}",
                binding.queue, binding.exchange
            )))?;
    }
    Ok(())
}
