//! The export of final completions (and the experience records the learner
//! derives from them) and of metric snapshots to rolling columnar files.

use std::collections::HashMap;
use std::path::PathBuf;

use tidewater_operators::learn::batch::{experience_schema, to_record_batch};
use tidewater_operators::learn::learner::experience_from_completion;
use tidewater_operators::model::Completion;

use super::completions::{completion_schema, completions_batch};
use super::config::ExportConfig;
use super::error::ExportError;
use super::metrics::{metric_snapshot_batch, metric_snapshot_schema, MetricSample};
use super::rolling::RollingFile;

/// Exports completions, and experience and metric snapshots when
/// configured, to the folder a config names. Not shared between threads by
/// itself: wrap it in a mutex.
pub struct Exporter {
    completions: RollingFile,
    experience: Option<RollingFile>,
    metrics: Option<RollingFile>,
    executor_classes: HashMap<String, String>,
}

impl Exporter {
    /// Opens the streams, each in its own subfolder of `config.dir`
    /// (`completions/`, `experience/`, `metrics/`), for run `run` (a name unique to
    /// this process run, part of every file name), finishing journals an
    /// earlier run left. `executor_classes` maps executor ids to the class
    /// the experience records name (`default` for executors not in it).
    pub fn open(
        config: &ExportConfig,
        run: &str,
        executor_classes: HashMap<String, String>,
    ) -> Result<Self, ExportError> {
        let open = |stream: &str, schema| {
            RollingFile::open(
                &config.dir.join(stream),
                stream,
                run,
                schema,
                config.format,
                config.rows_per_file,
            )
        };
        Ok(Exporter {
            completions: open("completions", completion_schema())?,
            experience: config
                .experience
                .then(|| open("experience", experience_schema()))
                .transpose()?,
            metrics: config
                .metrics
                .then(|| open("metrics", metric_snapshot_schema()))
                .transpose()?,
            executor_classes,
        })
    }

    /// Journals `finals` durably in every stream; once this returns they
    /// will be in finished files even if the process dies.
    pub fn export(&mut self, finals: &[Completion]) -> Result<(), ExportError> {
        if finals.is_empty() {
            return Ok(());
        }
        let batch = completions_batch(finals).map_err(|source| ExportError::Arrow {
            path: PathBuf::from("completions"),
            source,
        })?;
        self.completions.append(&batch)?;
        if let Some(experience) = &mut self.experience {
            let records: Vec<_> = finals
                .iter()
                .map(|c| {
                    let class = self
                        .executor_classes
                        .get(c.executor.as_str())
                        .map_or("default", String::as_str);
                    experience_from_completion(c, class)
                })
                .collect();
            experience.append(&to_record_batch(&records)?)?;
        }
        Ok(())
    }

    /// Whether metric snapshots are exported (stream `metrics`).
    pub fn exports_metrics(&self) -> bool {
        self.metrics.is_some()
    }

    /// Journals one metric snapshot, taken at `taken_at_us` (microseconds
    /// since the Unix epoch), durably in the `metrics` stream; nothing
    /// happens when that stream is off or the snapshot is empty.
    pub fn export_metrics(
        &mut self,
        taken_at_us: u64,
        samples: &[MetricSample],
    ) -> Result<(), ExportError> {
        let Some(metrics) = &mut self.metrics else {
            return Ok(());
        };
        if samples.is_empty() {
            return Ok(());
        }
        let batch =
            metric_snapshot_batch(taken_at_us, samples).map_err(|source| ExportError::Arrow {
                path: PathBuf::from("metrics"),
                source,
            })?;
        metrics.append(&batch)
    }

    /// Finishes the files being filled.
    pub fn finish(&mut self) -> Result<(), ExportError> {
        self.completions.finish()?;
        for stream in [&mut self.experience, &mut self.metrics]
            .into_iter()
            .flatten()
        {
            stream.finish()?;
        }
        Ok(())
    }

    /// Finished files written so far: completions, then experience, then
    /// metric snapshots.
    pub fn finished_files(&self) -> Vec<PathBuf> {
        let mut files = self.completions.finished_files().to_vec();
        for stream in [&self.experience, &self.metrics].into_iter().flatten() {
            files.extend_from_slice(stream.finished_files());
        }
        files
    }
}
