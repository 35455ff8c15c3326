//! The other processes of a cluster, as HTTP peers of this one's API.
//!
//! Each process keeps the records of the tasks it took in, and the live
//! state of the attempts its executors run. So that any process answers for
//! every task, a lookup that this process cannot settle (an unknown id, or
//! a record not yet final with no live entry here) asks the other
//! processes, and a listing merges every process's page. Peer requests
//! carry [`LOCAL_ONLY`] so that a peer answers from its own parts and never
//! asks on, and the caller's `Authorization`, so that every process checks
//! the same credential and scopes its part of the answer the same way.
//!
//! ```text
//!  GET /v1/tasks/{id} ──► store + live here ──settled──► answer
//!                              │ not settled
//!                              └─► every peer (x-tidewater-local) ─► most advanced record
//!  GET /v1/tasks ──► page here + every peer's page and live attempts ─► merged page, each
//!                    record with its live state wherever its attempt runs
//! ```

use std::time::Duration;

use axum::http::HeaderValue;
use serde::Deserialize;

use tidewater_connectors::store::{TaskRecord, TaskState};

/// Header a peer request carries: answer from this process only.
pub const LOCAL_ONLY: &str = "x-tidewater-local";

/// How long a peer may take to answer.
const PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// The other processes' API addresses, and a client to ask them.
#[derive(Clone)]
pub struct Peers {
    others: Vec<String>,
    client: reqwest::Client,
    /// `http` or, with `http.tls`, `https`.
    scheme: &'static str,
}

/// A listing page as peers answer it.
#[derive(Debug, Deserialize)]
pub struct PeerPage {
    /// The records.
    pub tasks: Vec<TaskRecord>,
    /// Whether the peer has more after this page.
    pub next_cursor: Option<String>,
    /// The tasks the peer's executors run (or retry) now, wherever their
    /// records live: a record on the merged page that is not final takes
    /// its live state from here.
    #[serde(default)]
    pub live: Vec<TaskRecord>,
}

impl Peers {
    /// The peers among `all` (every process's address, by index), leaving
    /// out this process's own; over HTTPS when `tls` is set, trusting its
    /// `ca_file` (or its certificate, when self-signed).
    pub fn new(
        all: &[String],
        own_index: usize,
        tls: Option<&crate::config::TlsConfig>,
    ) -> Result<Self, crate::error::RuntimeError> {
        let others = all
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != own_index)
            .map(|(_, a)| a.clone())
            .collect();
        let mut builder = reqwest::Client::builder().timeout(PEER_TIMEOUT);
        if let Some(tls) = tls {
            let authority = tls.ca_file.as_ref().unwrap_or(&tls.cert_file);
            let pem = std::fs::read(authority).map_err(|e| crate::error::RuntimeError::Tls {
                path: authority.clone(),
                detail: e.to_string(),
            })?;
            for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                crate::error::RuntimeError::Tls {
                    path: authority.clone(),
                    detail: e.to_string(),
                }
            })? {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder.build().unwrap_or_else(|_| reqwest::Client::new());
        Ok(Peers {
            others,
            client,
            scheme: if tls.is_some() { "https" } else { "http" },
        })
    }

    /// Whether there is anyone to ask.
    pub fn is_empty(&self) -> bool {
        self.others.is_empty()
    }

    /// Every peer's record of task `id` (peers that do not know it, or do
    /// not answer, are left out), asked with the caller's `authorization`.
    pub async fn task(&self, id: &str, authorization: Option<&HeaderValue>) -> Vec<TaskRecord> {
        let asks = self.others.iter().map(|peer| {
            let url = format!("{}://{peer}/v1/tasks/{}", self.scheme, encode(id));
            let request = self.request(url, authorization);
            async move {
                let response = request.send().await.ok()?;
                if !response.status().is_success() {
                    return None;
                }
                response.json::<TaskRecord>().await.ok()
            }
        });
        join_all(asks).await.into_iter().flatten().collect()
    }

    /// Every peer's page for the listing query string `query`, asked with
    /// the caller's `authorization`; a peer that does not answer is an
    /// error, since the merged page would miss its tasks.
    pub async fn pages(
        &self,
        query: &str,
        authorization: Option<&HeaderValue>,
    ) -> Result<Vec<PeerPage>, String> {
        let asks = self.others.iter().map(|peer| {
            let url = format!("{}://{peer}/v1/tasks?{query}", self.scheme);
            let request = self.request(url, authorization);
            let peer = peer.clone();
            async move {
                let response = request
                    .send()
                    .await
                    .map_err(|e| format!("peer {peer}: {e}"))?;
                if !response.status().is_success() {
                    return Err(format!("peer {peer} answered {}", response.status()));
                }
                response
                    .json::<PeerPage>()
                    .await
                    .map_err(|e| format!("peer {peer}: {e}"))
            }
        });
        join_all(asks).await.into_iter().collect()
    }
}

impl Peers {
    /// A peer request: answer locally, as the caller (each process checks
    /// the caller's credential and scopes the answer to its tenant).
    fn request(&self, url: String, authorization: Option<&HeaderValue>) -> reqwest::RequestBuilder {
        let request = self.client.get(url).header(LOCAL_ONLY, "1");
        match authorization {
            Some(value) => request.header(reqwest::header::AUTHORIZATION, value.clone()),
            None => request,
        }
    }
}

/// Runs every future and collects their outputs in order.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    let mut out = Vec::with_capacity(handles.len());
    // Peers are few; asking them one after another keeps this simple while
    // each request is bounded by the client's timeout.
    for handle in handles {
        out.push(handle.await);
    }
    out
}

/// Percent-encodes a path segment.
fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// How far along a record is: final beats live beats queued, so that the
/// process that knows most answers.
pub fn progress(record: &TaskRecord) -> u8 {
    match record.state {
        TaskState::Queued => 0,
        TaskState::Retrying => 1,
        TaskState::Running => 2,
        _ => 3,
    }
}

/// The most advanced of `records`.
pub fn most_advanced(records: impl IntoIterator<Item = TaskRecord>) -> Option<TaskRecord> {
    records.into_iter().max_by_key(progress)
}
