//! RabbitMQ (AMQP 0-9-1): tasks in from queues, results and dead letters out,
//! with acknowledgements only after outcomes are durable.
//!
//! ```text
//!  queue ──deliveries (prefetch)──► consumer task ──submit_json(source, tag)──► pipeline
//!                                      │ pending (tag → body, reply_to)            │
//!                                      ▼                                           ▼
//!  ack ◄── confirms ◄── publish: results exchange ({tenant}.{kind}),    store records outcome
//!                              reply_to (correlation id),                          │
//!                              dead-letter exchange (reason headers) ◄── OutcomeListener
//! ```
//!
//! - [`RabbitMqConfig`]: the `[rabbitmq]` block (connection, topology,
//!   prefetch, exchanges for results and dead letters, reconnection).
//! - [`RabbitMqHandle`]: the running connector; register its
//!   [`listener`](RabbitMqHandle::listener) for each of its
//!   [`sources`](RabbitMqHandle::sources).
//!
//! - [`AmqpTlsConfig`] and [`connect`]: `amqps://` connections (a private
//!   CA, mutual TLS), the one way every connection here is opened.
//! - [`AgentLink`]: with `agents = true`, remote executor agents join
//!   through the control exchange and get their assignments over the broker
//!   ([`agent_protocol`] has the messages).
//!
//! Delivery guarantees: a message is acknowledged only after its outcome is
//! recorded in the store and every message it calls for is confirmed by the
//! broker. A crash or an outage redelivers what was not acknowledged; task
//! ids make recording idempotent (the first outcome wins). Messages must
//! carry an `id` for that: one without gets a generated id, different on
//! each delivery.

mod agent_link;
pub mod agent_protocol;
mod config;
mod connection;
mod error;
mod handle;
pub mod messages;
mod outcomes;
mod pending;
mod session;
mod tag;
mod tls;
mod topology;

pub use agent_link::{undeliverable, AgentEvents, AgentLink};
pub use config::{BindingConfig, ExchangeConfig, ExchangeType, QueueConfig, RabbitMqConfig};
pub use error::{redact_url, RabbitMqError};
pub use handle::{RabbitMqContext, RabbitMqHandle};
pub use tag::DeliveryRef;
pub use tls::{connect, AmqpTlsConfig};
