//! The Kafka connector's errors, each with what was being done.

/// A Kafka operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    /// A client (consumer, producer or admin) could not be created.
    #[error("creating the Kafka {client} for {brokers}: {source}")]
    Client {
        /// Which client.
        client: &'static str,
        /// The bootstrap servers.
        brokers: String,
        /// The client's account.
        source: rdkafka::error::KafkaError,
    },
    /// A Kafka operation failed.
    #[error("Kafka {operation}: {source}")]
    Kafka {
        /// What was being done.
        operation: String,
        /// The client's account.
        source: rdkafka::error::KafkaError,
    },
    /// The broker did not acknowledge a produced message.
    #[error("producing to topic {topic:?}: {source}")]
    Produce {
        /// Where it was produced.
        topic: String,
        /// The client's account.
        source: rdkafka::error::KafkaError,
    },
    /// The configuration is not usable.
    #[error("invalid Kafka config at {key}: {detail}")]
    Config {
        /// The offending key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A result could not be encoded.
    #[error("encoding the result of task {task}: {source}")]
    Encode {
        /// The task.
        task: String,
        /// The encoder's account.
        source: serde_json::Error,
    },
    /// A thread could not be started.
    #[error("starting the Kafka {what} thread: {source}")]
    Thread {
        /// Which thread.
        what: &'static str,
        /// The OS's account.
        source: std::io::Error,
    },
    /// The connector stopped before the request was served.
    #[error("the Kafka connector has stopped")]
    Stopped,
}

impl KafkaError {
    /// Wraps a client error with what was being done.
    pub fn kafka(
        operation: impl Into<String>,
    ) -> impl FnOnce(rdkafka::error::KafkaError) -> KafkaError {
        let operation = operation.into();
        move |source| KafkaError::Kafka { operation, source }
    }
}
