//! `tidewater query [NAME]`: print a continuous query's latest result (or
//! every query's) from a running pipeline, `GET /v1/queries[/{name}]`.

use anyhow::bail;
use clap::Args;
use reqwest::Method;

use super::api_client::ApiClient;

/// Arguments of `tidewater query`.
#[derive(Args)]
pub struct QueryArgs {
    /// Base URL of the HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The query's name.
    name: Option<String>,
}

/// Fetches and prints the result; fails unless the API answers with success.
pub fn execute(args: QueryArgs) -> anyhow::Result<()> {
    let client = ApiClient::new(&args.url)?;
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
