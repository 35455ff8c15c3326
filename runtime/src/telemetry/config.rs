//! `[telemetry]`: where and how spans are exported over OTLP.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// OpenTelemetry export (`[telemetry]`). Absent: nothing is exported.
///
/// ```toml
/// [telemetry]
/// otlp_endpoint = "http://127.0.0.1:4318/v1/traces"
/// service_name = "tidewater"
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// The OTLP/HTTP traces endpoint (protobuf), used as given: an
    /// OpenTelemetry Collector or Jaeger listens on
    /// `http://HOST:4318/v1/traces`.
    pub otlp_endpoint: String,
    /// The `service.name` resource attribute of every span.
    pub service_name: String,
    /// How long one export may take before it is abandoned, in milliseconds.
    pub export_timeout_ms: u64,
    /// The share of traces started here (tasks delivered without a trace
    /// context) that are sampled, from 0 to 1. A task delivered with a
    /// context follows its caller's sampling decision.
    pub sample_ratio: f64,
    /// Extra HTTP headers on every export (for example a collector's API key).
    pub headers: BTreeMap<String, String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            service_name: "tidewater".into(),
            export_timeout_ms: 10_000,
            sample_ratio: 1.0,
            headers: BTreeMap::new(),
        }
    }
}

impl TelemetryConfig {
    /// Checks the endpoint's scheme, the timeout and the ratio.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, detail: &str| {
            Err(ConfigError::Invalid {
                key: format!("telemetry.{key}"),
                detail: detail.into(),
            })
        };
        let endpoint = self.otlp_endpoint.as_str();
        let has_scheme = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !has_scheme || endpoint.parse::<axum::http::Uri>().is_err() {
            return invalid(
                "otlp_endpoint",
                "must be an http:// or https:// URL (for example http://127.0.0.1:4318/v1/traces)",
            );
        }
        if self.service_name.is_empty() {
            return invalid("service_name", "must not be empty");
        }
        if self.export_timeout_ms == 0 {
            return invalid("export_timeout_ms", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return invalid("sample_ratio", "must be between 0 and 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_valid_and_bad_settings_name_their_key() {
        assert!(TelemetryConfig::default().validate().is_ok());
        let cases = [
            (
                TelemetryConfig {
                    otlp_endpoint: "127.0.0.1:4318".into(),
                    ..TelemetryConfig::default()
                },
                "telemetry.otlp_endpoint",
            ),
            (
                TelemetryConfig {
                    sample_ratio: 1.5,
                    ..TelemetryConfig::default()
                },
                "telemetry.sample_ratio",
            ),
            (
                TelemetryConfig {
                    sample_ratio: f64::NAN,
                    ..TelemetryConfig::default()
                },
                "telemetry.sample_ratio",
            ),
            (
                TelemetryConfig {
                    export_timeout_ms: 0,
                    ..TelemetryConfig::default()
                },
                "telemetry.export_timeout_ms",
            ),
        ];
        for (config, key) in cases {
            match config.validate() {
                Err(ConfigError::Invalid { key: got, .. }) => assert_eq!(got, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}
