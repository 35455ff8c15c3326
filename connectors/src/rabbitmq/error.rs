//! The RabbitMQ connector's errors, each with what was being done.

/// A RabbitMQ operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum RabbitMqError {
    /// The broker could not be reached or refused the connection.
    #[error("connecting to RabbitMQ at {url}: {source}")]
    Connect {
        /// The broker's address, without credentials.
        url: String,
        /// The client's account.
        source: lapin::Error,
    },
    /// An AMQP operation failed (the connection or channel is unusable).
    #[error("RabbitMQ {operation}: {source}")]
    Amqp {
        /// What was being done.
        operation: String,
        /// The client's account.
        source: lapin::Error,
    },
    /// The broker refused a published message (a negative confirm).
    #[error("RabbitMQ refused a message published to exchange {exchange:?}")]
    Nacked {
        /// Where it was published.
        exchange: String,
    },
    /// The configuration is not usable.
    #[error("invalid RabbitMQ config at {key}: {detail}")]
    Config {
        /// The offending key.
        key: String,
        /// What is wrong.
        detail: String,
    },
    /// A TLS file named in `[rabbitmq.tls]` could not be read.
    #[error("reading the RabbitMQ TLS file {path}: {source}")]
    TlsFile {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The connector stopped before the request was served.
    #[error("the RabbitMQ connector has stopped")]
    Stopped,
}

impl RabbitMqError {
    /// Wraps a client error with what was being done.
    pub fn amqp(operation: impl Into<String>) -> impl FnOnce(lapin::Error) -> RabbitMqError {
        let operation = operation.into();
        move |source| RabbitMqError::Amqp { operation, source }
    }
}

/// `url` with any password replaced, for logs and errors.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact_url("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_url("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
