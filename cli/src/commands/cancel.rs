//! `tidewater cancel ID...`: cancel tasks on a running pipeline, one
//! `DELETE /v1/tasks/{id}` each, printing every answer.

use anyhow::bail;
use clap::Args;
use reqwest::Method;

use super::api_client::{ApiArgs, ApiClient};

/// Arguments of `tidewater cancel`.
#[derive(Args)]
pub struct CancelArgs {
    /// Where the API is, and the credentials to call it with.
    #[command(flatten)]
    api: ApiArgs,
    /// Ids of the tasks to cancel.
    #[arg(required = true)]
    ids: Vec<String>,
}

/// Cancels every id; fails (after trying them all) if any was not accepted.
pub fn execute(args: CancelArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let mut failed = Vec::new();
    for id in &args.ids {
        let url = client.url(&format!("/v1/tasks/{id}"));
        let (status, text) = client.send(Method::DELETE, &url, None)?;
        println!("{text}");
        if !status.is_success() {
            failed.push(format!("{id}: {status}"));
        }
    }
    if !failed.is_empty() {
        bail!("not cancelled: {}", failed.join(", "));
    }
    Ok(())
}
