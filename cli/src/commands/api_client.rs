//! A small blocking client for a running pipeline's HTTP API, shared by
//! `submit`, `cancel` and `query`: each request runs to completion on a
//! current-thread tokio runtime and comes back as its status and body text.

use reqwest::{Method, StatusCode};

/// A blocking HTTP client for one pipeline's API.
pub struct ApiClient {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
    base: String,
}

impl ApiClient {
    /// A client for the API at `base` (for example `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> anyhow::Result<ApiClient> {
        Ok(ApiClient {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            client: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
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
}
