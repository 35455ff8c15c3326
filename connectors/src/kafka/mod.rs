//! Kafka: tasks in from a consumer group's topics, results and dead letters
//! out through an idempotent producer, with offsets committed only after
//! outcomes are durable.
//!
//! ```text
//!  topics ──poll (consumer group)──► consumer thread ──submit_json(topic, tag)──► pipeline
//!    ▲    stop polling at max_in_flight  │ Offsets: partition → offset → (done?, body,   │
//!    │                                   │          key, reply-to, correlation id)        ▼
//!  commit ◄── acks=all ◄── produce: results topic (key {tenant}.{kind}),       store records outcome
//!  (highest                     reply-to topic (header),                                 │
//!   contiguous                  dead-letter topic (reason headers) ◄──── OutcomeListener ┘
//!   done + 1)
//! ```
//!
//! - [`KafkaConfig`]: the `[kafka]` block (bootstrap servers, group, topics,
//!   results and dead-letter topics, `max_in_flight`, librdkafka
//!   properties).
//! - [`KafkaHandle`]: the running connector; register its
//!   [`listener`](KafkaHandle::listener) for each of its
//!   [`sources`](KafkaHandle::sources).
//! - [`messages`]: the produced records' keys and headers.
//!
//! Delivery guarantees (at least once): an offset is committed only when
//! every message before it in its partition has a recorded outcome and every
//! record that outcome calls for (result, dead letter) is acknowledged by
//! the broker (`acks=all`, idempotent producer). Auto-commit and the
//! automatic offset store are off. A crash, or a partition moving to another
//! member, makes the group consume again from the last commit; task ids make
//! recording idempotent (the first outcome wins). Bad input (malformed JSON,
//! wrong types, missing fields, oversize) is never dropped: it goes to the
//! dead-letter topic with its reason in the `x-tidewater-reason` and
//! `x-tidewater-code` headers. Messages must carry an `id`: one without gets
//! a generated id, different each time it is consumed.

mod clients;
mod config;
mod connector;
mod consumer;
mod error;
mod handle;
pub mod messages;
mod offsets;
mod outcomes;

pub use config::{KafkaConfig, RESERVED_PROPERTIES};
pub use error::KafkaError;
pub use handle::{KafkaContext, KafkaHandle};
pub use offsets::{Commit, Consumed, InFlight, Offsets};
