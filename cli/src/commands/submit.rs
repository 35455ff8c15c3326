//! `tidewater submit [FILE|-] [--json TASK] [--wait]`: send tasks to a
//! running pipeline, `POST /v1/tasks`. A file holds a JSON object, a JSON
//! array, or JSON lines; JSON lines go as one batch (an array). With
//! `--wait`, it then follows each accepted task (`GET /v1/tasks/{id}`) until
//! it ends and prints its final record, result included, as a JSON line.

use std::io::Read;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use reqwest::Method;

use super::api_client::ApiClient;

/// Arguments of `tidewater submit`.
#[derive(Args)]
pub struct SubmitArgs {
    /// Base URL of the HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
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

/// Submits the tasks and prints the API's answer; fails unless it is a
/// success.
pub fn execute(args: SubmitArgs) -> anyhow::Result<()> {
    let body = match (&args.json, &args.file) {
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
    let client = ApiClient::new(&args.url)?;
    let url = client.url("/v1/tasks");
    let (status, text) = client.send(Method::POST, &url, Some(batch_json_lines(body)))?;
    println!("{text}");
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    if args.wait {
        let answer: serde_json::Value = serde_json::from_str(&text)?;
        wait_for(&client, &accepted_ids(&answer), args.wait_timeout_ms)?;
    }
    Ok(())
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
/// `timeout_ms` passes first.
fn wait_for(client: &ApiClient, ids: &[String], timeout_ms: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
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
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "{} task(s) still not finished after {timeout_ms} ms",
                pending.len()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// JSON lines (more than one non-empty line starting with an object) become
/// one JSON array; anything else is sent as it is.
fn batch_json_lines(body: String) -> String {
    let trimmed = body.trim_start();
    let lines = || trimmed.lines().filter(|l| !l.trim().is_empty());
    if trimmed.starts_with('{') && lines().count() > 1 {
        format!("[{}]", lines().collect::<Vec<_>>().join(","))
    } else {
        body
    }
}
