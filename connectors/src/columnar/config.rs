//! The `[export]` config block: where columnar files go, in which formats,
//! and how many rows each holds.
//!
//! ```toml
//! [export]
//! dir = "tidewater-data/export"
//! format = "both"        # parquet | ipc | both
//! rows_per_file = 100000
//! experience = true       # the learner's experience records
//! metrics = true          # metric snapshots
//! metrics_interval_ms = 10000
//! ```

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Which file formats are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    /// Parquet (snappy-compressed), `.parquet`.
    #[default]
    Parquet,
    /// Arrow IPC file format (Feather v2), `.arrow`.
    Ipc,
    /// Both, side by side.
    Both,
}

impl ExportFormat {
    /// Whether Parquet files are written.
    pub fn parquet(self) -> bool {
        matches!(self, ExportFormat::Parquet | ExportFormat::Both)
    }

    /// Whether Arrow IPC files are written.
    pub fn ipc(self) -> bool {
        matches!(self, ExportFormat::Ipc | ExportFormat::Both)
    }
}

/// The export's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// Whether completions are exported; a present block is on unless this
    /// says `false`.
    #[serde(default = "default_enabled")]
    pub enabled: bool,
    /// The folder files are written to (created when missing). In cluster
    /// mode every process writes its own files, named with its index.
    pub dir: PathBuf,
    /// File formats.
    #[serde(default)]
    pub format: ExportFormat,
    /// Rows per finished file; the last file of a run holds the rest.
    #[serde(default = "default_rows_per_file")]
    pub rows_per_file: usize,
    /// Whether the learner's experience records are exported beside the
    /// completions (stream `experience`).
    #[serde(default = "default_enabled")]
    pub experience: bool,
    /// Whether metric snapshots are exported (stream `metrics`): every
    /// `metrics_interval_ms`, and once more at shutdown, each continuous
    /// query's latest result and each built-in metric series.
    #[serde(default = "default_enabled")]
    pub metrics: bool,
    /// Milliseconds between metric snapshots.
    #[serde(default = "default_metrics_interval_ms")]
    pub metrics_interval_ms: u64,
}

fn default_enabled() -> bool {
    true
}

fn default_rows_per_file() -> usize {
    100_000
}

fn default_metrics_interval_ms() -> u64 {
    10_000
}

/// The shortest interval between metric snapshots (each is an fsync).
const MIN_METRICS_INTERVAL_MS: u64 = 100;

impl ExportConfig {
    /// A config writing Parquet to `dir` with the default settings.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ExportConfig {
            enabled: true,
            dir: dir.into(),
            format: ExportFormat::default(),
            rows_per_file: default_rows_per_file(),
            experience: true,
            metrics: true,
            metrics_interval_ms: default_metrics_interval_ms(),
        }
    }

    /// Checks values the schema alone cannot; the error names the key
    /// (`export.<key>`) and says why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.dir.as_os_str().is_empty() {
            return Err(("export.dir".into(), "must name a folder".into()));
        }
        if self.rows_per_file == 0 {
            return Err(("export.rows_per_file".into(), "must be at least 1".into()));
        }
        if self.metrics_interval_ms < MIN_METRICS_INTERVAL_MS {
            return Err((
                "export.metrics_interval_ms".into(),
                format!("must be at least {MIN_METRICS_INTERVAL_MS}"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_bad_values_name_their_key() {
        let config: ExportConfig =
            toml::from_str("dir = \"out\"\nformat = \"both\"\nrows_per_file = 10\n")
                .expect("parses");
        assert!(config.format.parquet() && config.format.ipc());
        assert!(config.validate().is_ok());
        let config: ExportConfig = toml::from_str("dir = \"out\"\n").expect("parses");
        assert_eq!(config, ExportConfig::new("out"));
        assert!(!config.format.ipc());
        assert!(toml::from_str::<ExportConfig>("dir = \"out\"\nformat = \"csv\"\n").is_err());
        let mut bad = config.clone();
        bad.rows_per_file = 0;
        assert_eq!(
            bad.validate().map_err(|e| e.0),
            Err("export.rows_per_file".to_string())
        );
        let mut bad = config;
        bad.metrics_interval_ms = 10;
        assert_eq!(
            bad.validate().map_err(|e| e.0),
            Err("export.metrics_interval_ms".to_string())
        );
        let config: ExportConfig =
            toml::from_str("dir = \"out\"\nmetrics = false\nmetrics_interval_ms = 500\n")
                .expect("parses");
        assert!(!config.metrics && config.metrics_interval_ms == 500);
    }
}
