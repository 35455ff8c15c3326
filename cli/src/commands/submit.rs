//! `tidewater submit [FILE|-] [--json TASK]`: send tasks to a running
//! pipeline, `POST /v1/tasks`. A file holds a JSON object, a JSON array, or
//! JSON lines; JSON lines go as one batch (an array).

use std::io::Read;
use std::path::PathBuf;

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
