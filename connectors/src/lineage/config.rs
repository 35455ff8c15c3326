//! The `[lineage]` config block: where the graph server is and how writes
//! are batched and retried.
//!
//! ```toml
//! [lineage]
//! uri = "127.0.0.1:7687"
//! user = "neo4j"
//! password = "secret"
//! batch_size = 500
//! ```

use serde::{Deserialize, Serialize};

/// The lineage graph's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageConfig {
    /// Whether completions are written to the graph; a present block is on
    /// unless this says `false`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The Bolt server, `host:port` or `bolt://host:port`.
    pub uri: String,
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// The database written to and queried.
    #[serde(default = "default_database")]
    pub database: String,
    /// Most completions per `UNWIND` statement (one round trip each).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Connections kept open to the server.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// First retry delay after a failed write, in milliseconds.
    #[serde(default = "default_retry_min_ms")]
    pub retry_min_ms: u64,
    /// Longest retry delay, in milliseconds.
    #[serde(default = "default_retry_max_ms")]
    pub retry_max_ms: u64,
    /// Retries of one batch before the write is given up and reported as an
    /// error (the caller then leaves its sources unacknowledged); 0 retries
    /// without limit.
    #[serde(default)]
    pub retry_max_times: usize,
}

fn default_enabled() -> bool {
    true
}

fn default_database() -> String {
    "neo4j".to_string()
}

fn default_batch_size() -> usize {
    500
}

fn default_max_connections() -> usize {
    4
}

fn default_retry_min_ms() -> u64 {
    50
}

fn default_retry_max_ms() -> u64 {
    5_000
}

impl LineageConfig {
    /// A config for `uri` with the default settings.
    pub fn new(
        uri: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        LineageConfig {
            enabled: true,
            uri: uri.into(),
            user: user.into(),
            password: password.into(),
            database: default_database(),
            batch_size: default_batch_size(),
            max_connections: default_max_connections(),
            retry_min_ms: default_retry_min_ms(),
            retry_max_ms: default_retry_max_ms(),
            retry_max_times: 0,
        }
    }

    /// Checks values the schema alone cannot; the error names the key
    /// (`lineage.<key>`) and says why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let invalid = |key: &str, detail: &str| Err((format!("lineage.{key}"), detail.to_string()));
        if self.uri.trim().is_empty() {
            return invalid("uri", "must name the Bolt server, host:port");
        }
        if self.user.is_empty() {
            return invalid("user", "must not be empty");
        }
        if self.database.is_empty() {
            return invalid("database", "must not be empty");
        }
        if self.batch_size == 0 || self.batch_size > 100_000 {
            return invalid("batch_size", "must be in 1..=100000");
        }
        if self.max_connections == 0 {
            return invalid("max_connections", "must be at least 1");
        }
        if self.retry_min_ms == 0 || self.retry_min_ms > self.retry_max_ms {
            return invalid(
                "retry_min_ms",
                "must be at least 1 and not above `retry_max_ms`",
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_in_and_bad_values_name_their_key() {
        let config: LineageConfig =
            toml::from_str("uri = \"127.0.0.1:7687\"\nuser = \"neo4j\"\npassword = \"pw\"\n")
                .expect("parses");
        assert_eq!(config, LineageConfig::new("127.0.0.1:7687", "neo4j", "pw"));
        assert!(config.validate().is_ok());

        let mut bad = config.clone();
        bad.batch_size = 0;
        assert_eq!(
            bad.validate().map_err(|e| e.0),
            Err("lineage.batch_size".to_string())
        );
        let mut bad = config.clone();
        bad.retry_min_ms = 10_000;
        assert_eq!(
            bad.validate().map_err(|e| e.0),
            Err("lineage.retry_min_ms".to_string())
        );
        let mut bad = config;
        bad.uri = " ".into();
        assert_eq!(
            bad.validate().map_err(|e| e.0),
            Err("lineage.uri".to_string())
        );
        assert!(toml::from_str::<LineageConfig>(
            "uri = \"x\"\nuser = \"u\"\npassword = \"p\"\nbatch = 1\n"
        )
        .is_err());
    }
}
