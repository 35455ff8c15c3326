//! Standard Workload Format (SWF) logs of batch clusters, as published by
//! the Parallel Workloads Archive: `;` header lines (`MaxProcs:` gives the
//! machine's size), then one job per line with at least 18
//! whitespace-separated numeric fields.
//!
//! [`parse_swf`] turns the text into a [`Workload`]: the runnable jobs (a
//! positive run time and processor count; others are skipped, as the
//! archive's own tools do) sorted by submit time.

use std::path::Path;

use super::TraceError;

/// One job of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Job number.
    pub id: u64,
    /// Submit time, seconds.
    pub submit: f64,
    /// Recorded run time, seconds.
    pub run: f64,
    /// Processors.
    pub procs: u32,
    /// The user's requested time, seconds, as declared (some jobs ran
    /// longer); the run time when the log does not give one.
    pub requested: f64,
    /// User id.
    pub user: i64,
    /// Queue number.
    pub queue: i64,
}

/// A parsed log.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Processors in the machine.
    pub processors: u32,
    /// Jobs in submit order.
    pub jobs: Vec<Job>,
}

/// The fields a job line must have (the SWF definition).
const FIELDS: usize = 18;

/// Reads an SWF file (see [`parse_swf`]).
pub fn read_swf(path: &Path) -> Result<Workload, TraceError> {
    parse_swf(&super::read_file(path)?, &path.display().to_string())
}

/// Parses SWF text; `origin` names it in errors. Header lines start with
/// `;`; each job line has at least 18 whitespace-separated fields (more are
/// accepted and ignored). Jobs without a positive run time or processor
/// count are skipped. Text that is not UTF-8, a short line, or a field that
/// is not a finite number is an error naming its line.
pub fn parse_swf(bytes: &[u8], origin: &str) -> Result<Workload, TraceError> {
    let invalid = |line: usize, detail: String| TraceError::Invalid {
        origin: origin.to_string(),
        line: line as u64 + 1,
        detail,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        invalid(line, format!("not UTF-8: {e}"))
    })?;
    let mut max_procs: Option<u32> = None;
    let mut jobs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix(';') {
            if let Some(value) = header.trim().strip_prefix("MaxProcs:") {
                max_procs = value.trim().parse().ok();
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < FIELDS {
            return Err(invalid(
                i,
                format!("{} fields, expected {FIELDS}", fields.len()),
            ));
        }
        let number = |k: usize| -> Result<f64, TraceError> {
            match fields[k].parse::<f64>() {
                Ok(value) if value.is_finite() => Ok(value),
                Ok(_) => Err(invalid(
                    i,
                    format!("field {} {:?}: not a finite number", k + 1, fields[k]),
                )),
                Err(e) => Err(invalid(i, format!("field {} {:?}: {e}", k + 1, fields[k]))),
            }
        };
        let (id, submit, run) = (number(0)?, number(1)?, number(3)?);
        let allocated = number(4)?;
        let requested_procs = number(7)?;
        let requested_time = number(8)?;
        let procs = if allocated > 0.0 {
            allocated
        } else {
            requested_procs
        };
        if run <= 0.0 || procs < 1.0 {
            continue;
        }
        jobs.push(Job {
            id: id as u64,
            submit,
            run,
            procs: procs as u32,
            // As the user declared it, even where the job ran longer: the
            // estimators may not learn the run time from it.
            requested: if requested_time > 0.0 {
                requested_time
            } else {
                run
            },
            user: number(11)? as i64,
            queue: number(14)? as i64,
        });
    }
    if jobs.is_empty() {
        return Err(TraceError::Empty {
            origin: origin.to_string(),
            detail: "no job with a positive run time and processor count",
        });
    }
    jobs.sort_by(|a, b| a.submit.total_cmp(&b.submit).then(a.id.cmp(&b.id)));
    let largest = jobs.iter().map(|j| j.procs).max().unwrap_or(1);
    Ok(Workload {
        processors: max_procs.unwrap_or(largest).max(largest),
        jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const JOB: &str = "1 0 5 100 2 -1 -1 2 200 -1 1 7 1 -1 3 1 -1 -1";

    #[test]
    fn headers_extra_fields_and_skipped_jobs() {
        let text = format!(
            "; MaxProcs: 8\n{JOB} extra more\n2 10 0 0 2 -1 -1 2 200 -1 5 7 1 -1 3 1 -1 -1\n"
        );
        let w = parse_swf(text.as_bytes(), "t").expect("valid");
        assert_eq!((w.processors, w.jobs.len()), (8, 1));
        assert_eq!(w.jobs[0].requested, 200.0);
        assert_eq!((w.jobs[0].user, w.jobs[0].queue), (7, 3));
    }

    #[test]
    fn bad_lines_are_named() {
        let err = parse_swf(b"1 0 5 100 2\n", "t").expect_err("short line");
        assert!(err.to_string().contains("t line 1: 5 fields"), "{err}");
        let err = parse_swf(
            format!("{JOB}\n{}", JOB.replace("100", "inf")).as_bytes(),
            "t",
        )
        .expect_err("infinite run time");
        assert!(err.to_string().contains("line 2: field 4"), "{err}");
        let err = parse_swf(b"; ok\n\xff\xfe", "t").expect_err("binary");
        assert!(err.to_string().contains("line 2: not UTF-8"), "{err}");
        assert!(matches!(
            parse_swf(b"; only a header\n", "t"),
            Err(TraceError::Empty { .. })
        ));
    }
}
