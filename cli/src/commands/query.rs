//! `tidewater query [NAME]`: print a continuous query's latest result (or
//! every query's) from a running pipeline, `GET /v1/queries[/{name}]`.

use anyhow::bail;
use clap::Args;
use reqwest::Method;

use super::api_client::{ApiArgs, ApiClient};

/// Arguments of `tidewater query`.
#[derive(Args)]
pub struct QueryArgs {
    /// Where the API is, and the credentials to call it with.
    #[command(flatten)]
    api: ApiArgs,
    /// The query's name.
    name: Option<String>,
}

/// Fetches and prints the result; fails unless the API answers with success.
pub fn execute(args: QueryArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.api)?;
    let url = match &args.name {
        Some(name) => client.url(&format!("/v1/queries/{name}")),
        None => client.url("/v1/queries"),
    };
    let (status, text) = client.send(Method::GET, &url, None)?;
    println!("{text}");
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(())
}
