//! A small blocking client for a running pipeline's HTTP API, shared by
//! `submit`, `cancel`, `query`, `lineage` and `token`: each request runs to
//! completion on a current-thread tokio runtime and comes back as its
//! status and body text. [`ApiArgs`] are the flags they share: where the
//! API is, the bearer token, and the authority to trust for HTTPS.

use std::path::PathBuf;

use clap::Args;
use reqwest::{Method, StatusCode};

/// How to reach a pipeline's API.
#[derive(Args, Clone, Debug)]
pub struct ApiArgs {
    /// Base URL of the HTTP API (`https://` when it serves TLS).
    #[arg(
        long,
        env = "TIDEWATER_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// API token (or JWT) sent as `Authorization: Bearer`.
    #[arg(long, env = "TIDEWATER_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// PEM file of the authority that signed the API's certificate (for a
    /// private or self-signed one).
    #[arg(long, env = "TIDEWATER_CA_CERT", global = true)]
    pub ca_cert: Option<PathBuf>,
}

/// A blocking HTTP client for one pipeline's API.
pub struct ApiClient {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl ApiClient {
    /// A client for the API that `args` name.
    pub fn new(args: &ApiArgs) -> anyhow::Result<ApiClient> {
        let client =
            tidewater::agent_http::api_client(args.token.as_deref(), args.ca_cert.as_deref())
                .map_err(anyhow::Error::msg)?;
        Ok(ApiClient {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            client,
            base: args.url.trim_end_matches('/').to_string(),
        })
    }

    /// The full URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends `method` to `url` with an optional JSON `body`; the answer's
    /// status and text.
    pub fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, String), reqwest::Error> {
        let mut request = self.client.request(method, url);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        self.runtime.block_on(async {
            let response = request.send().await?;
            let status = response.status();
            Ok((status, response.text().await?))
        })
    }

    /// Sends the request and prints the answer (pretty JSON, else as
    /// text); fails when it is not a success.
    pub fn send_and_print(
        &self,
        method: Method,
        url: &str,
        body: Option<String>,
    ) -> anyhow::Result<()> {
        let (status, text) = self.send(method, url, body)?;
        match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(value) => println!("{}", serde_json::to_string_pretty(&value)?),
            Err(_) => println!("{text}"),
        }
        if !status.is_success() {
            anyhow::bail!("{url} answered {status}");
        }
        Ok(())
    }
}
