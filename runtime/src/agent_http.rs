//! `tidewater agent --http URL`: a remote executor that joins a pipeline
//! over its HTTP API and pulls its work.
//!
//! ```text
//!  POST /v1/executors (join), then every heartbeat_ms POST /v1/executors/{id}/heartbeat
//!  loop: POST /v1/executors/{id}/claim (long-poll) ──run/abort──► LocalBackend (same handlers)
//!        finished ──► POST /v1/executors/{id}/tasks/{task}/outcome
//!  Ctrl-C: DELETE /v1/executors/{id} (leave), finish what runs, report it, exit
//! ```
//!
//! The agent runs attempts with the same handlers and timeout/abort rules
//! as local executors and the broker agent ([`crate::agent`]). A claim
//! that answers 404 means the pipeline does not know this executor (it
//! restarted, or declared it lost): the agent joins again. Outcomes whose
//! report fails on the network are kept and sent again; an outcome the
//! pipeline refuses (the run was given up, the task retried elsewhere) is
//! dropped.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tidewater_connectors::rabbitmq::agent_protocol::{AgentWork, RemoteCompletion};
use tidewater_operators::dataflow::ExecutionBackend;
use tidewater_operators::model::{Completion, ExecutorSpec, Lease};

use crate::agent::AgentSummary;
use crate::backend::LocalBackend;
use crate::handlers::HandlerRegistry;

/// How often finished attempts are collected.
const POLL: Duration = Duration::from_millis(5);
/// How long one claim waits for work, ms.
const CLAIM_WAIT_MS: u64 = 1000;

/// Settings of an agent that joins over HTTP.
#[derive(Clone, Debug)]
pub struct HttpAgentOptions {
    /// Base URL of the pipeline's HTTP API (`http://host:port`).
    pub url: String,
    /// Identity and capacity.
    pub spec: ExecutorSpec,
    /// Interval between heartbeats, ms.
    pub heartbeat_ms: u64,
    /// Declared lost after this long without a heartbeat, ms.
    pub ttl_ms: u64,
    /// Most runs held at once.
    pub max_running: usize,
    /// The API token (role `agent` or `operator`) sent as
    /// `Authorization: Bearer`, where the pipeline requires one.
    pub token: Option<String>,
    /// A PEM file of the authority to trust for an `https://` URL with a
    /// private certificate.
    pub ca_cert: Option<std::path::PathBuf>,
}

/// An HTTP client that sends `token` as its bearer credential and trusts
/// `ca_cert` besides the usual roots (the agent's and the CLI's).
pub fn api_client(
    token: Option<&str>,
    ca_cert: Option<&std::path::Path>,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder();
    if let Some(token) = token {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "the token holds characters a header cannot carry".to_string())?;
        value.set_sensitive(true);
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().map_err(|e| e.to_string())
}

/// Why a request to the pipeline failed.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    /// The request did not reach the pipeline or got no answer.
    #[error("{what}: {source}")]
    Network {
        what: &'static str,
        #[source]
        source: reqwest::Error,
    },
    /// The pipeline answered with an error status.
    #[error("{what}: HTTP {status}: {body}")]
    Status {
        what: &'static str,
        status: reqwest::StatusCode,
        body: String,
    },
}

/// One claimed run: where its completion goes.
struct Running {
    task: String,
    worker: u32,
}

struct HttpAgent {
    options: HttpAgentOptions,
    client: reqwest::Client,
    base: String,
    backend: LocalBackend,
    running: HashMap<(u32, Lease), Running>,
    outbox: Vec<(String, RemoteCompletion)>,
    summary: AgentSummary,
}

/// Runs the agent until `shutdown` resolves and its work is reported.
pub async fn run_http_agent(
    options: HttpAgentOptions,
    handlers: Arc<HandlerRegistry>,
    shutdown: impl Future<Output = ()>,
) -> AgentSummary {
    let client = match api_client(options.token.as_deref(), options.ca_cert.as_deref()) {
        Ok(client) => client,
        Err(reason) => {
            tracing::error!(%reason, "the agent's HTTP client");
            return AgentSummary::default();
        }
    };
    let mut agent = HttpAgent {
        backend: LocalBackend::new(
            handlers,
            tokio::runtime::Handle::current(),
            tidewater_operators::validate::ValidationLimits::default().max_result_bytes,
        ),
        client,
        base: options.url.trim_end_matches('/').to_string(),
        options,
        running: HashMap::new(),
        outbox: Vec::new(),
        summary: AgentSummary::default(),
    };
    agent.run(shutdown).await;
    agent.summary
}

impl HttpAgent {
    fn url(&self, path: &str) -> String {
        format!("{}/v1/executors/{}{path}", self.base, self.options.spec.id)
    }

    async fn post(
        &self,
        what: &'static str,
        url: String,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<serde_json::Value, RequestError> {
        let mut request = self.client.post(url).timeout(timeout);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| RequestError::Network { what, source })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| RequestError::Network { what, source })?;
        if !status.is_success() {
            return Err(RequestError::Status {
                what,
                status,
                body: text,
            });
        }
        Ok(serde_json::from_str(&text).unwrap_or(serde_json::Value::Null))
    }

    async fn join(&self) -> Result<(), RequestError> {
        let spec = &self.options.spec;
        let body = serde_json::json!({
            "id": spec.id.as_str(),
            "cpu_milli": spec.cpu_milli,
            "memory_mib": spec.memory_mib,
            "gpus": spec.gpus.len(),
            "gpu_model": spec.gpus.first().map(|g| g.model.to_string()).unwrap_or_default(),
            "custom": spec.custom.iter().map(|(k, v)| (k.to_string(), *v)).collect::<HashMap<_, _>>(),
            "labels": spec.labels,
            "heartbeat_ttl_ms": self.options.ttl_ms,
        });
        self.post(
            "join",
            format!("{}/v1/executors", self.base),
            Some(body),
            Duration::from_secs(5),
        )
        .await?;
        tracing::info!(agent = %spec.id, url = %self.base, "agent joined over HTTP");
        Ok(())
    }

    /// Joins until the pipeline answers, or `shutdown` resolves (`false`).
    async fn join_until_up(
        &mut self,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> bool {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.join().await {
                Ok(()) => return true,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "join failed; retrying")
                }
            }
            tokio::select! {
                () = &mut *shutdown => return false,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn run(&mut self, shutdown: impl Future<Output = ()>) {
        let mut shutdown = std::pin::pin!(shutdown);
        self.summary.connections += 1;
        if !self.join_until_up(&mut shutdown).await {
            return;
        }
        let mut heartbeat =
            tokio::time::interval(Duration::from_millis(self.options.heartbeat_ms.max(1)));
        let mut poll = tokio::time::interval(POLL);
        let claim_url = self.url("/claim");
        let client = self.client.clone();
        let claim = move |max: usize| {
            let request = client
                .post(format!("{claim_url}?wait_ms={CLAIM_WAIT_MS}&max={max}"))
                .timeout(Duration::from_millis(CLAIM_WAIT_MS + 5000))
                .send();
            async move {
                let response = request.await?;
                let status = response.status();
                let text = response.text().await?;
                Ok::<_, reqwest::Error>((status, text))
            }
        };
        type Claim = Result<(reqwest::StatusCode, String), reqwest::Error>;
        let mut claiming: std::pin::Pin<Box<dyn Future<Output = Claim> + Send>> =
            Box::pin(std::future::pending());
        let mut claim_open = false;
        let mut leaving = false;
        loop {
            if !leaving && !claim_open && self.running.len() < self.options.max_running {
                let max = self.options.max_running - self.running.len();
                claiming = Box::pin(claim(max));
                claim_open = true;
            }
            tokio::select! {
                () = &mut shutdown, if !leaving => {
                    leaving = true;
                    let leave = self.client.delete(self.url("")).timeout(Duration::from_secs(5)).send().await;
                    if let Err(e) = leave {
                        tracing::warn!(error = %e, "could not announce leaving");
                    }
                    tracing::info!(agent = %self.options.spec.id, "leaving after the running attempts");
                }
                _ = heartbeat.tick(), if !leaving => {
                    if let Err(e) = self.post("heartbeat", self.url("/heartbeat"), None, Duration::from_secs(5)).await {
                        tracing::warn!(error = %e, "heartbeat failed");
                    }
                }
                _ = poll.tick() => {
                    self.collect();
                    self.flush().await;
                    if leaving && self.backend.in_flight() == 0 && self.outbox.is_empty() {
                        return;
                    }
                }
                claimed = &mut claiming, if claim_open => {
                    claim_open = false;
                    match claimed {
                        Ok((status, text)) if status.is_success() => self.take(&text),
                        Ok((reqwest::StatusCode::NOT_FOUND, _)) => {
                            // The pipeline does not know this executor (it
                            // restarted): join again.
                            self.summary.connections += 1;
                            if !self.join_until_up(&mut shutdown).await {
                                leaving = true;
                            }
                        }
                        Ok((status, text)) => {
                            tracing::warn!(%status, body = %text, "claim refused");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "claim failed");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                }
            }
        }
    }

    /// Starts the claimed runs, applies the claimed aborts.
    fn take(&mut self, body: &str) {
        #[derive(serde::Deserialize)]
        struct Claimed {
            work: Vec<serde_json::Value>,
        }
        let claimed: Claimed = match serde_json::from_str(body) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "dropping an unreadable claim answer");
                return;
            }
        };
        for item in claimed.work {
            match serde_json::from_value::<AgentWork>(item) {
                Ok(AgentWork::Run {
                    assignment, worker, ..
                }) => {
                    let key = (assignment.shard, assignment.lease);
                    if self.running.contains_key(&key) {
                        continue;
                    }
                    tracing::info!(agent = %self.options.spec.id, task = %assignment.task.id, attempt = assignment.task.attempt, "running");
                    self.running.insert(
                        key,
                        Running {
                            task: assignment.task.id.to_string(),
                            worker,
                        },
                    );
                    let mut done = Vec::new();
                    self.backend.start(assignment, &mut done);
                    self.absorb(done);
                }
                Ok(AgentWork::Abort { lease, reason, .. }) => self.backend.abort(lease, reason),
                // Refusals are a broker-join answer; HTTP joins are refused
                // with an HTTP status instead, so one here is only logged.
                Ok(AgentWork::Refused { reason, .. }) => {
                    tracing::warn!(%reason, "the pipeline refused this agent")
                }
                Err(e) => tracing::warn!(error = %e, "dropping invalid work"),
            }
        }
    }

    fn collect(&mut self) {
        let mut done = Vec::new();
        self.backend.poll(&mut done);
        self.absorb(done);
    }

    fn absorb(&mut self, done: Vec<Completion>) {
        for c in done {
            let Some(running) = self.running.remove(&(c.shard, c.lease)) else {
                continue;
            };
            let completion = RemoteCompletion::of(c, running.worker);
            self.outbox.push((running.task, completion));
        }
    }

    /// Reports finished attempts; those that fail on the network stay.
    async fn flush(&mut self) {
        if self.outbox.is_empty() {
            return;
        }
        let outbox = std::mem::take(&mut self.outbox);
        for (task, completion) in outbox {
            let body = serde_json::to_value(&completion).unwrap_or_default();
            let url = self.url(&format!("/tasks/{}/outcome", urlencode(&task)));
            match self
                .post("outcome", url, Some(body), Duration::from_secs(10))
                .await
            {
                Ok(_) => self.summary.completed += 1,
                Err(e @ RequestError::Status { .. }) => {
                    tracing::warn!(task = %task, error = %e, "outcome refused; dropping it")
                }
                Err(e @ RequestError::Network { .. }) => {
                    tracing::warn!(task = %task, error = %e, "outcome not delivered; will retry");
                    self.outbox.push((task, completion));
                }
            }
        }
    }
}

/// Percent-encodes a task id for a URL path segment.
fn urlencode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::urlencode;

    #[test]
    fn task_ids_are_encoded_for_the_path() {
        assert_eq!(urlencode("a-b_1.2~"), "a-b_1.2~");
        assert_eq!(urlencode("x/y z"), "x%2Fy%20z");
    }
}
