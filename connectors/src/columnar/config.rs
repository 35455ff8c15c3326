//! The `[export]` config block: where columnar files go, in which formats,
//! and how many rows each holds.
//!
//! ```toml
//! [export]
//! dir = "tidewater-data/export"
//! format = "both"        # parquet | ipc | both
//! rows_per_file = 100000
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
}

fn default_enabled() -> bool {
    true
}

fn default_rows_per_file() -> usize {
    100_000
}

impl ExportConfig {
    /// A config writing Parquet to `dir` with the default settings.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ExportConfig {
            enabled: true,
            dir: dir.into(),
            format: ExportFormat::default(),
            rows_per_file: default_rows_per_file(),
            experience: true,
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
        let mut bad = config;
        bad.rows_per_file = 0;
        assert_eq!(
            bad.validate().map_err(|e| e.0),
            Err("export.rows_per_file".to_string())
        );
    }
}
