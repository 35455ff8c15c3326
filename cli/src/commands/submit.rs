//! `tidewater submit [FILE|-] [--json TASK] [--wait]`: send tasks to a
//! running pipeline, `POST /v1/tasks`.
//!
//! A file (or stdin) holds one JSON object, one JSON array, or JSON lines.
//! JSON lines are read line by line: a line that is not a JSON object is
//! reported by its line number with the reason, and the good lines go as
//! one batch (an array); items the API refuses are reported by their line
//! number too. The command fails (exit code 1) when any line was bad or
//! refused, after submitting the good ones. With `--wait`, it then follows
//! each accepted task (`GET /v1/tasks/{id}`) until it ends, with progress
//! on stderr, and prints its final record, result included, as a JSON line.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use reqwest::Method;

use super::api_client::{ApiArgs, ApiClient};
use super::progress::Progress;

/// Arguments of `tidewater submit`.
#[derive(Args)]
pub struct SubmitArgs {
    /// Where the API is, and the credentials to call it with.
    #[command(flatten)]
    api: ApiArgs,
    /// A file of tasks (`-` for stdin): a JSON object, a JSON array, or JSON lines.
    file: Option<PathBuf>,
    /// A task given inline as JSON.
    #[arg(long)]
    json: Option<String>,
    /// Wait for the accepted tasks to end and print their final records.
    #[arg(long)]
    wait: bool,
    /// Longest wait with `--wait`, in milliseconds.
    #[arg(long, default_value_t = 600_000)]
    wait_timeout_ms: u64,
}

/// What is sent: the request body, and for JSON lines the line number of
/// each item of the batch (so that refusals can name their line).
struct Submission {
    body: String,
    line_of_item: Option<Vec<usize>>,
    /// Lines that were not JSON objects: `(line number, reason)`.
    bad_lines: Vec<(usize, String)>,
}

/// Submits the tasks and prints the API's answer; fails unless it is a
/// success and every line was good.
pub fn execute(args: SubmitArgs) -> anyhow::Result<()> {
    let text = match (&args.json, &args.file) {
        (Some(json), _) => json.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
        (None, Some(path)) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => bail!("give a file, `-` for stdin, or --json"),
    };
    let source = args
        .file
        .as_ref()
        .map_or("--json".to_string(), |p| p.display().to_string());
    let submission = prepare(text);
    for (line, reason) in &submission.bad_lines {
        eprintln!("{source}:{line}: bad line, not submitted: {reason}");
    }
    if submission.line_of_item.as_ref().is_some_and(Vec::is_empty) {
        bail!(
            "no good lines to submit in {source} ({} bad)",
            submission.bad_lines.len()
        );
    }
    let client = ApiClient::new(&args.api)?;
    let url = client.url("/v1/tasks");
    let (status, text) = client.send(Method::POST, &url, Some(submission.body))?;
    println!("{text}");
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let refused = report_refused(&answer, &source, submission.line_of_item.as_deref());
    if args.wait {
        wait_for(&client, &accepted_ids(&answer), args.wait_timeout_ms)?;
    }
    let bad = submission.bad_lines.len() + refused;
    if bad > 0 {
        bail!("{bad} task(s) in {source} were bad or refused; the others were submitted");
    }
    Ok(())
}

/// Reads the input: a whole JSON value goes as it is; anything else is
/// taken as JSON lines, each checked to be a JSON object.
fn prepare(text: String) -> Submission {
    let trimmed = text.trim_start();
    let whole_value = (trimmed.starts_with('{') || trimmed.starts_with('['))
        && serde_json::from_str::<serde_json::Value>(&text).is_ok();
    let non_empty = text.lines().filter(|l| !l.trim().is_empty()).count();
    if whole_value || (non_empty <= 1 && !trimmed.starts_with('{')) {
        return Submission {
            body: text,
            line_of_item: None,
            bad_lines: Vec::new(),
        };
    }
    let mut good = Vec::new();
    let mut line_of_item = Vec::new();
    let mut bad_lines = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(serde_json::Value::Object(_)) => {
                good.push(line);
                line_of_item.push(line_number);
            }
            Ok(other) => bad_lines.push((
                line_number,
                format!(
                    "expected a JSON object (a task), found {}",
                    json_kind(&other)
                ),
            )),
            Err(e) => bad_lines.push((line_number, format!("not JSON: {e}"))),
        }
    }
    Submission {
        body: format!("[{}]", good.join(",")),
        line_of_item: Some(line_of_item),
        bad_lines,
    }
}

/// The JSON type of `value`, for messages.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Prints each item the API refused (by line number for JSON lines, by
/// batch index otherwise) on stderr; how many there were.
fn report_refused(answer: &serde_json::Value, source: &str, lines: Option<&[usize]>) -> usize {
    let Some(refused) = answer.get("rejected").and_then(|r| r.as_array()) else {
        return 0;
    };
    for item in refused {
        let index = item["index"].as_u64().unwrap_or_default() as usize;
        let code = item["code"].as_str().unwrap_or("rejected");
        let reason = item["reason"].as_str().unwrap_or_default();
        match lines.and_then(|lines| lines.get(index)) {
            Some(line) => eprintln!("{source}:{line}: refused by the API ({code}): {reason}"),
            None => eprintln!("{source}: item {index} refused by the API ({code}): {reason}"),
        }
    }
    refused.len()
}

/// The ids an answer says were accepted (one task or a batch).
fn accepted_ids(answer: &serde_json::Value) -> Vec<String> {
    let ids = match answer.get("accepted") {
        Some(accepted) => accepted.as_array().cloned().unwrap_or_default(),
        None => answer.get("id").cloned().into_iter().collect(),
    };
    ids.iter()
        .filter_map(|id| id.as_str().map(str::to_string))
        .collect()
}

/// Polls each task until its record is final, printing it then; fails if
/// `timeout_ms` passes first. Progress (tasks finished of all) goes to
/// stderr.
fn wait_for(client: &ApiClient, ids: &[String], timeout_ms: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let progress = Progress::new("waiting", Some(ids.len() as u64));
    let mut pending: Vec<&String> = ids.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for id in pending {
            let url = client.url(&format!("/v1/tasks/{id}"));
            let (status, text) = client.send(Method::GET, &url, None)?;
            let record: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let state = record["state"].as_str().unwrap_or_default();
            if status.is_success() && !["queued", "running", "retrying"].contains(&state) {
                println!("{}", serde_json::to_string(&record)?);
            } else {
                still.push(id);
            }
        }
        pending = still;
        let done = ids.len() - pending.len();
        progress.update(done as u64, &format!("{} still running", pending.len()));
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            progress.finish();
            bail!(
                "{} task(s) still not finished after {timeout_ms} ms",
                pending.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    progress.finish();
    Ok(())
}
