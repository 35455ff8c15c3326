//! TLS for AMQP connections (`amqps://` URLs) and the one way every
//! RabbitMQ connection of Tidewater is opened.
//!
//! The `[rabbitmq.tls]` block names the certificate authorities to trust
//! besides the system's roots (`ca_file`, for a private CA) and, for mutual
//! TLS, the client's certificate and key. [`connect`] reads them and opens
//! the connection with lapin (rustls with ring underneath); the pipeline's
//! connector, its agent link and the `tidewater agent` process all connect
//! through it, so a broker that speaks only TLS is reached the same way
//! everywhere. With a plain `amqp://` URL the block is not used.

use std::path::{Path, PathBuf};

use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::{Connection, ConnectionProperties, DefaultConnectionBuilder};
use serde::{Deserialize, Serialize};

use super::error::{redact_url, RabbitMqError};

/// `[rabbitmq.tls]`: what an `amqps://` connection trusts and presents.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpTlsConfig {
    /// PEM file of certificate authorities to trust, added to the system's
    /// roots (for a broker whose certificate a private CA signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM certificate (chain) the client presents, for brokers that verify
    /// peers (`ssl_options.verify = verify_peer`). Needs `key_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    /// PEM (PKCS#8) private key of `cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
}

impl AmqpTlsConfig {
    /// Whether nothing is set (system roots, no client certificate).
    pub fn is_empty(&self) -> bool {
        self == &Self::default()
    }

    /// Checks what the schema cannot: a client certificate comes with its key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => Err(("rabbitmq.tls.key_file", "cert_file needs key_file".into())),
            (None, Some(_)) => Err(("rabbitmq.tls.cert_file", "key_file needs cert_file".into())),
            _ => Ok(()),
        }
    }

    /// Reads the files into lapin's TLS settings.
    fn load(&self) -> Result<OwnedTLSConfig, RabbitMqError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| RabbitMqError::TlsFile {
                path: path.to_path_buf(),
                source,
            })
        };
        let cert_chain = match &self.ca_file {
            Some(path) => Some(String::from_utf8_lossy(&read(path)?).into_owned()),
            None => None,
        };
        let identity = match (&self.cert_file, &self.key_file) {
            (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
                pem: read(cert)?,
                key: read(key)?,
            }),
            _ => None,
        };
        Ok(OwnedTLSConfig {
            identity,
            cert_chain,
        })
    }
}

/// Opens a connection to `url` named `name` (as the broker's management
/// shows it), with `tls` for an `amqps://` URL.
pub async fn connect(
    url: &str,
    tls: &AmqpTlsConfig,
    name: String,
) -> Result<Connection, RabbitMqError> {
    let failed = |source| RabbitMqError::Connect {
        url: redact_url(url),
        source,
    };
    DefaultConnectionBuilder::new()
        .map_err(failed)?
        .with_uri_str(url.to_string())
        .with_properties(ConnectionProperties::default().with_connection_name(name.into()))
        .with_tls_config(tls.load()?)
        .connect()
        .await
        .map_err(failed)
}
