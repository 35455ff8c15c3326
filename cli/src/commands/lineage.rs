//! `tidewater lineage`: ask a running pipeline's lineage graph (through its
//! HTTP API, `/v1/lineage/...`) what a task depends on and where it ran, or
//! what an agent or executor ran in a time range and which of that failed.
//!
//! ```text
//! tidewater lineage task job-7
//! tidewater lineage agent planner --since 1733500000000 --until 1733600000000
//! tidewater lineage executor gpu-0 --limit 100
//! ```

use clap::{Args, Subcommand};

use super::api_client::{ApiArgs, ApiClient};

/// Arguments of `tidewater lineage`.
#[derive(Args)]
pub struct LineageArgs {
    /// Where the API is, and the credentials to call it with.
    #[command(flatten)]
    api: ApiArgs,
    /// What to ask.
    #[command(subcommand)]
    question: Question,
}

#[derive(Subcommand)]
enum Question {
    /// A task's submitter, dependencies, dependents and executions.
    Task {
        /// The task id.
        id: String,
    },
    /// What an agent's tasks ran, and how many failed.
    Agent {
        /// The agent's name.
        name: String,
        #[command(flatten)]
        range: Range,
    },
    /// What an executor ran, and how many failed.
    Executor {
        /// The executor's id.
        id: String,
        #[command(flatten)]
        range: Range,
    },
}

#[derive(Args)]
struct Range {
    /// Earliest finish time, milliseconds since the Unix epoch (inclusive).
    #[arg(long)]
    since: Option<i64>,
    /// Latest finish time, milliseconds since the Unix epoch (exclusive).
    #[arg(long)]
    until: Option<i64>,
    /// Most executions listed.
    #[arg(long)]
    limit: Option<usize>,
}

impl Range {
    fn query(&self) -> String {
        let parts: Vec<String> = [
            self.since.map(|v| format!("since={v}")),
            self.until.map(|v| format!("until={v}")),
            self.limit.map(|v| format!("limit={v}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            String::new()
        } else {
            format!("?{}", parts.join("&"))
        }
    }
}

/// Percent-encodes a path segment (ids may hold any character).
fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs `tidewater lineage`: prints the API's JSON answer, and fails when
/// the answer is not a success.
pub fn execute(args: LineageArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let base = args.api.url.trim_end_matches('/');
    let url = match &args.question {
        Question::Task { id } => format!("{base}/v1/lineage/tasks/{}", segment(id)),
        Question::Agent { name, range } => {
            format!(
                "{base}/v1/lineage/agents/{}{}",
                segment(name),
                range.query()
            )
        }
        Question::Executor { id, range } => {
            format!(
                "{base}/v1/lineage/executors/{}{}",
                segment(id),
                range.query()
            )
        }
    };
    client.send_and_print(reqwest::Method::GET, &url, None)
}
