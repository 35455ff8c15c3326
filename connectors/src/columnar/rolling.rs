//! One exported stream's files: batches are journaled (fsynced) as they
//! come, and every `rows_per_file` rows, or at finish, the journal becomes
//! finished Parquet and/or Arrow IPC files, written under a temporary name,
//! synced and renamed so that readers see whole files only.
//!
//! Names, in the export folder (the leading dot hides work in progress from
//! readers of the folder, pyarrow's and DuckDB's globbing included):
//!
//! - `.<stream>-<run>-<seq>.staging.arrows`: the journal of the file being
//!   filled, an Arrow IPC stream;
//! - `.<stream>-<run>-<seq>.parquet.tmp` (and `.arrow.tmp`): a finished
//!   file being written;
//! - `<stream>-<run>-<seq>.parquet` and `<stream>-<run>-<seq>.arrow`:
//!   finished files.
//!
//! A journal found when the stream opens (left by a crash) is finished
//! under its own name, so finishing it twice writes nothing twice.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::{FileWriter, StreamWriter};
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

use super::config::ExportFormat;
use super::error::ExportError;

const JOURNAL_SUFFIX: &str = ".staging.arrows";

fn io<'p>(
    context: &'static str,
    path: &'p Path,
) -> impl FnOnce(std::io::Error) -> ExportError + 'p {
    move |source| ExportError::Io {
        context,
        path: path.to_path_buf(),
        source,
    }
}

fn arrow(path: &Path) -> impl FnOnce(arrow_schema::ArrowError) -> ExportError + '_ {
    move |source| ExportError::Arrow {
        path: path.to_path_buf(),
        source,
    }
}

/// The journal being filled: its writer, its file's base name and rows.
struct Journal {
    writer: StreamWriter<File>,
    base: String,
    path: PathBuf,
    rows: usize,
}

/// One stream's rolling files.
pub struct RollingFile {
    dir: PathBuf,
    stream: String,
    run: String,
    schema: SchemaRef,
    format: ExportFormat,
    rows_per_file: usize,
    seq: u64,
    journal: Option<Journal>,
    /// Journals whose last write failed: what they hold up to the failure
    /// is finished with them, nothing is appended to them again.
    abandoned: Vec<(PathBuf, String)>,
    finished: Vec<PathBuf>,
}

impl RollingFile {
    /// Opens stream `stream` in `dir` (created when missing) for this
    /// `run` (a name unique to this process run), finishing any journal an
    /// earlier run left.
    pub fn open(
        dir: &Path,
        stream: &str,
        run: &str,
        schema: SchemaRef,
        format: ExportFormat,
        rows_per_file: usize,
    ) -> Result<Self, ExportError> {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let mut file = RollingFile {
            dir: dir.to_path_buf(),
            stream: stream.to_string(),
            run: run.to_string(),
            schema,
            format,
            rows_per_file: rows_per_file.max(1),
            seq: 0,
            journal: None,
            abandoned: Vec::new(),
            finished: Vec::new(),
        };
        file.recover()?;
        Ok(file)
    }

    /// Finished files written through this handle, oldest first.
    pub fn finished_files(&self) -> &[PathBuf] {
        &self.finished
    }

    /// Rows journaled but not yet in a finished file.
    pub fn pending_rows(&self) -> usize {
        self.journal.as_ref().map_or(0, |j| j.rows)
    }

    /// Journals `batch` (durably: it is fsynced before this returns),
    /// finishing a file each time one fills up. After an error the journal
    /// being filled is set aside (its rows up to the failure are kept) and
    /// a retry starts a new one, so a failed write never hides later rows.
    pub fn append(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        let mut offset = 0;
        while offset < batch.num_rows() {
            let take = match self.journal_part(batch, offset) {
                Ok(take) => take,
                Err(e) => {
                    if let Some(journal) = self.journal.take() {
                        self.abandoned.push((journal.path, journal.base));
                    }
                    return Err(e);
                }
            };
            offset += take;
            if self.pending_rows() >= self.rows_per_file {
                // The rows are journaled (landed) whatever happens here; a
                // file that cannot be finished now is finished at `finish`.
                if let Err(e) = self.roll() {
                    tracing::warn!(error = %e, stream = %self.stream, "export: finishing a full file failed; retried at finish");
                }
            }
        }
        Ok(())
    }

    /// Journals as much of `batch` from `offset` as the current file has
    /// room for; returns how many rows that was.
    fn journal_part(&mut self, batch: &RecordBatch, offset: usize) -> Result<usize, ExportError> {
        let rows_per_file = self.rows_per_file;
        let journal = self.journal()?;
        let take = (rows_per_file - journal.rows).min(batch.num_rows() - offset);
        let part = batch.slice(offset, take);
        journal.writer.write(&part).map_err(arrow(&journal.path))?;
        journal.writer.flush().map_err(arrow(&journal.path))?;
        journal
            .writer
            .get_ref()
            .sync_data()
            .map_err(io("syncing", &journal.path))?;
        journal.rows += take;
        Ok(take)
    }

    /// Finishes the file being filled, if it has rows.
    pub fn finish(&mut self) -> Result<(), ExportError> {
        if self.journal.is_some() {
            self.roll()?;
        }
        while let Some((path, base)) = self.abandoned.pop() {
            if let Err(e) = self.finish_journal(&path, &base) {
                self.abandoned.push((path, base));
                return Err(e);
            }
        }
        Ok(())
    }

    fn journal(&mut self) -> Result<&mut Journal, ExportError> {
        let journal = match self.journal.take() {
            Some(journal) => journal,
            None => self.new_journal()?,
        };
        Ok(self.journal.insert(journal))
    }

    fn new_journal(&mut self) -> Result<Journal, ExportError> {
        self.seq += 1;
        let base = format!("{}-{}-{:06}", self.stream, self.run, self.seq);
        let path = self.dir.join(format!(".{base}{JOURNAL_SUFFIX}"));
        let file = File::create(&path).map_err(io("creating", &path))?;
        let writer = StreamWriter::try_new(file, &self.schema).map_err(arrow(&path))?;
        Ok(Journal {
            writer,
            base,
            path,
            rows: 0,
        })
    }

    /// Closes the journal and turns it into finished files.
    fn roll(&mut self) -> Result<(), ExportError> {
        let Some(mut journal) = self.journal.take() else {
            return Ok(());
        };
        let closed = journal.writer.finish().map_err(arrow(&journal.path));
        drop(journal.writer);
        let finished = closed.and_then(|()| self.finish_journal(&journal.path, &journal.base));
        if finished.is_err() {
            self.abandoned.push((journal.path, journal.base));
        }
        finished
    }

    /// Finishes every journal of this stream left in the folder.
    fn recover(&mut self) -> Result<(), ExportError> {
        let prefix = format!(".{}-", self.stream);
        let entries = std::fs::read_dir(&self.dir).map_err(io("listing", &self.dir))?;
        let mut journals = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io("listing", &self.dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(base) = name
                .strip_prefix('.')
                .filter(|_| name.starts_with(&prefix))
                .and_then(|n| n.strip_suffix(JOURNAL_SUFFIX))
            {
                journals.push((entry.path(), base.to_string()));
            }
        }
        journals.sort();
        for (path, base) in journals {
            tracing::info!(journal = %path.display(), "export: finishing a journal left by an earlier run");
            self.finish_journal(&path, &base)?;
        }
        Ok(())
    }

    /// Writes the finished files of journal `path` (those not yet there)
    /// and removes it.
    fn finish_journal(&mut self, path: &Path, base: &str) -> Result<(), ExportError> {
        let batches = read_journal(path)?;
        if batches.iter().any(|b| b.num_rows() > 0) {
            if self.format.parquet() {
                let target = self.dir.join(format!("{base}.parquet"));
                if !target.exists() {
                    self.write_atomically(&target, |file, tmp| {
                        write_parquet(file, tmp, &self.schema, &batches)
                    })?;
                }
                self.finished.push(target);
            }
            if self.format.ipc() {
                let target = self.dir.join(format!("{base}.arrow"));
                if !target.exists() {
                    self.write_atomically(&target, |file, tmp| {
                        write_ipc(file, tmp, &self.schema, &batches)
                    })?;
                }
                self.finished.push(target);
            }
        }
        std::fs::remove_file(path).map_err(io("removing", path))?;
        sync_dir(&self.dir)
    }

    /// Writes `target` through a hidden temporary file: write, fsync,
    /// rename, fsync the folder.
    fn write_atomically(
        &self,
        target: &Path,
        write: impl FnOnce(File, &Path) -> Result<File, ExportError>,
    ) -> Result<(), ExportError> {
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(io("creating", &tmp))?;
        let mut file = write(file, &tmp)?;
        file.flush().map_err(io("writing", &tmp))?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        drop(file);
        std::fs::rename(&tmp, target).map_err(io("renaming into place", target))?;
        sync_dir(&self.dir)
    }
}

impl Drop for RollingFile {
    /// Finishes the file being filled, so that dropping the exporter at
    /// shutdown leaves finished files behind.
    fn drop(&mut self) {
        if let Err(e) = self.finish() {
            tracing::error!(error = %e, stream = %self.stream, "export: finishing the last file failed; its journal stays for the next start");
        }
    }
}

/// The batches of a journal, up to the first unreadable one (a batch cut
/// short by a crash; it was never acknowledged, so its sources redeliver it).
fn read_journal(path: &Path) -> Result<Vec<RecordBatch>, ExportError> {
    let file = File::open(path).map_err(io("opening", path))?;
    let reader = match StreamReader::try_new(file, None) {
        Ok(reader) => reader,
        Err(e) => {
            tracing::warn!(journal = %path.display(), error = %e, "export: journal has no readable schema; dropped");
            return Ok(Vec::new());
        }
    };
    let mut batches = Vec::new();
    for batch in reader {
        match batch {
            Ok(batch) => batches.push(batch),
            Err(e) => {
                tracing::warn!(journal = %path.display(), error = %e, "export: journal ends in a partial batch; kept what precedes it");
                break;
            }
        }
    }
    Ok(batches)
}

fn write_parquet(
    file: File,
    path: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<File, ExportError> {
    let parquet = |source| ExportError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .build();
    let mut writer = ArrowWriter::try_new(file, schema.clone(), Some(props)).map_err(parquet)?;
    for batch in batches {
        writer.write(batch).map_err(parquet)?;
    }
    writer.into_inner().map_err(parquet)
}

fn write_ipc(
    file: File,
    path: &Path,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<File, ExportError> {
    let mut writer = FileWriter::try_new(file, schema).map_err(arrow(path))?;
    for batch in batches {
        writer.write(batch).map_err(arrow(path))?;
    }
    writer.finish().map_err(arrow(path))?;
    writer.into_inner().map_err(arrow(path))
}

fn sync_dir(dir: &Path) -> Result<(), ExportError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing", dir))
}
