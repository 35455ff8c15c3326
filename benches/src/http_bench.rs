//! `tidewater bench --http`: tasks submitted per second through the HTTP
//! API (`POST /v1/tasks`), against a plain axum echo endpoint driven by the
//! same client in the same run; and `tidewater bench --listing`: the time
//! of one `GET /v1/tasks` page at two store sizes.
//!
//! Submission ([`run_http_bench`]): a multi-connection reqwest client keeps
//! `connections` requests in flight for a fixed time, each carrying one
//! task or a batch of them, and counts the tasks the server took:
//!
//! ```text
//!  echo:     client ─► axum (read the body, answer it back, 202)
//!  pipeline: client ─► axum ─► split/validate ─► admit (embedded store,
//!            one durable commit per request) ─► ingress ─► run (noop)
//!            ─► record the outcome
//! ```
//!
//! Both servers run on their own two-thread tokio runtime, as the
//! pipeline's API does. Rounds alternate echo and pipeline so that a noisy
//! machine affects both alike; the medians and their ratio are reported.
//!
//! Listing ([`run_listing_bench`]): a pipeline's embedded store is filled
//! directly through [`TaskStore::admit`] (not timed), then the client walks
//! `GET /v1/tasks?limit=…` page by page with the cursor, timing each page.
//! The ratio of the median page time at the large size to that at the
//! small size says whether a page costs the same however much is stored.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use serde::Serialize;

use tidewater_connectors::store::TaskStore;
use tidewater_operators::model::{ResourceRequest, Task};

use tidewater::auth::{AuthMode, Role, TokenBook};
use tidewater::config::{Config, StoreKind};
use tidewater::{Pipeline, RunningPipeline};

use crate::broker_bench::median;

/// HTTP submission benchmark settings.
#[derive(Clone, Debug)]
pub struct HttpBenchOptions {
    /// How long each run drives its server.
    pub duration: Duration,
    /// Requests in flight at once, each on its own connection.
    pub connections: usize,
    /// Tasks per request: 1 sends one task object, more an array.
    pub batch: usize,
    /// Timely workers of the pipeline.
    pub workers: usize,
    /// Echo/pipeline pairs of runs.
    pub rounds: usize,
    /// Also run the pipeline with `auth.mode = "token"` each round (every
    /// request carrying an operator's bearer token), to compare.
    pub with_auth: bool,
}

/// HTTP submission benchmark results.
#[derive(Clone, Debug, Serialize)]
pub struct HttpBenchReport {
    /// Requests in flight.
    pub connections: usize,
    /// Tasks per request.
    pub batch: usize,
    /// Seconds per run.
    pub seconds: f64,
    /// Pipeline workers.
    pub workers: usize,
    /// Echo endpoint, tasks per second, per round.
    pub echo_tasks_per_sec: Vec<f64>,
    /// Pipeline API, tasks accepted per second, per round.
    pub pipeline_tasks_per_sec: Vec<f64>,
    /// Median of the echo rounds.
    pub echo_median: f64,
    /// Median of the pipeline rounds.
    pub pipeline_median: f64,
    /// `pipeline_median / echo_median`.
    pub ratio: f64,
    /// Median request latency of the pipeline's median round, microseconds.
    pub pipeline_p50_us: u64,
    /// 99th percentile request latency of that round, microseconds.
    pub pipeline_p99_us: u64,
    /// With auth on: tasks accepted per second, per round (empty without
    /// `with_auth`).
    pub auth_tasks_per_sec: Vec<f64>,
    /// Median of the auth rounds.
    pub auth_median: f64,
    /// `auth_median / pipeline_median`: what authentication costs.
    pub auth_ratio: f64,
}

/// Listing benchmark settings.
#[derive(Clone, Debug)]
pub struct ListingBenchOptions {
    /// Stored tasks of the small run.
    pub small: u64,
    /// Stored tasks of the large run.
    pub large: u64,
    /// Records per page (`limit`).
    pub page: usize,
    /// Pages walked at each size (from the first, with the cursor); the
    /// small store's pages all, when it holds fewer.
    pub pages: usize,
}

/// Page times at one store size.
#[derive(Clone, Debug, Serialize)]
pub struct ListingSize {
    /// Stored tasks.
    pub stored: u64,
    /// Seconds filling the store (not part of the page times).
    pub fill_seconds: f64,
    /// Pages walked.
    pub pages: usize,
    /// Median page time, microseconds.
    pub page_p50_us: u64,
    /// 99th percentile page time, microseconds.
    pub page_p99_us: u64,
    /// Median page time of the last tenth of the pages walked,
    /// microseconds (deep in the walk, far from the first page).
    pub last_tenth_p50_us: u64,
    /// The same walk from the newest record backwards (`order=desc`):
    /// median page time, microseconds.
    pub desc_page_p50_us: u64,
}

/// Listing benchmark results.
#[derive(Clone, Debug, Serialize)]
pub struct ListingBenchReport {
    /// Records per page.
    pub page: usize,
    /// The small store.
    pub small: ListingSize,
    /// The large store.
    pub large: ListingSize,
    /// `large.page_p50_us / small.page_p50_us`: 1 is flat.
    pub ratio: f64,
}

/// Why an HTTP benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum HttpBenchError {
    /// The pipeline failed.
    #[error("pipeline: {0}")]
    Pipeline(#[from] tidewater::RuntimeError),
    /// The store failed while filling it.
    #[error("filling the store: {0}")]
    Store(#[from] tidewater_connectors::store::StoreError),
    /// A request failed.
    #[error("{what}: {source}")]
    Request {
        /// What was asked.
        what: String,
        /// The client's account.
        source: reqwest::Error,
    },
    /// A server answered with an unexpected status or body.
    #[error("{0}")]
    Answer(String),
    /// Setting up the run failed.
    #[error("{0}")]
    Setup(String),
}

/// A tokio runtime with `threads` workers.
fn runtime(threads: usize) -> Result<tokio::runtime::Runtime, HttpBenchError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(|e| HttpBenchError::Setup(format!("starting tokio: {e}")))
}

/// A pipeline with its HTTP API on a free loopback port and an embedded
/// store in a fresh temporary folder, which the caller removes.
fn start_pipeline(
    workers: usize,
    tag: &str,
    auth: bool,
) -> Result<(RunningPipeline, PathBuf, Option<String>), HttpBenchError> {
    let data_dir =
        std::env::temp_dir().join(format!("tidewater-http-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut config = Config {
        workers,
        ..Config::default()
    };
    config.http.enabled = true;
    config.http.listen = "127.0.0.1:0".into();
    config.store.kind = StoreKind::Embedded;
    config.store.path = data_dir.join("store.redb");
    if auth {
        config.auth.mode = Some(AuthMode::Token);
    }
    let pipeline = Pipeline::builder(config).start()?;
    let token = if auth {
        // An operator may submit for the benchmark's several tenants.
        let book = TokenBook::new(pipeline.store(), Duration::from_secs(2));
        let minted = book
            .mint("bench", Role::Operator, "http bench", None)
            .map_err(|e| HttpBenchError::Setup(format!("minting a token: {e}")))?;
        Some(minted.token)
    } else {
        None
    };
    Ok((pipeline, data_dir, token))
}

/// The echo endpoint: answers every `POST /v1/tasks` with its own body.
struct Echo {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl Echo {
    fn start() -> Result<Echo, HttpBenchError> {
        let runtime = runtime(2)?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| HttpBenchError::Setup(format!("binding the echo server: {e}")))?;
        let addr = listener
            .local_addr()
            .map_err(|e| HttpBenchError::Setup(format!("reading the echo address: {e}")))?;
        let app = Router::new().route(
            "/v1/tasks",
            post(|body: Bytes| async move { (StatusCode::ACCEPTED, body) }),
        );
        runtime.spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "echo server failed");
            }
        });
        Ok(Echo {
            addr,
            _runtime: runtime,
        })
    }
}

/// The body of one request: `batch` no-op tasks with fresh ids.
fn body(batch: usize, next: &AtomicU64, prefix: &str) -> Vec<u8> {
    let first = next.fetch_add(batch as u64, Ordering::Relaxed);
    let task = |i: u64| {
        format!(
            r#"{{"id":"{prefix}-{i}","kind":"noop","tenant":"t{}","resources":{{"cpu_milli":10}}}}"#,
            i % 4
        )
    };
    if batch == 1 {
        return task(first).into_bytes();
    }
    let items: Vec<String> = (first..first + batch as u64).map(task).collect();
    format!("[{}]", items.join(",")).into_bytes()
}

/// One driven run: tasks taken per second and the request latencies.
struct Driven {
    rate: f64,
    latencies: hdrhistogram::Histogram<u64>,
}

/// Keeps `connections` requests in flight against `addr` for `duration`
/// and counts the tasks the server took (`202` or `200`).
async fn drive(
    addr: SocketAddr,
    options: &HttpBenchOptions,
    prefix: &str,
    token: Option<&str>,
) -> Result<Driven, HttpBenchError> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(options.connections)
        .tcp_nodelay(true)
        .build()
        .map_err(|source| HttpBenchError::Request {
            what: "building the client".into(),
            source,
        })?;
    let url = format!("http://{addr}/v1/tasks");
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let until = started + options.duration;
    let mut workers = Vec::with_capacity(options.connections);
    for _ in 0..options.connections {
        let client = client.clone();
        let url = url.clone();
        let next = Arc::clone(&next);
        let prefix = prefix.to_string();
        let batch = options.batch;
        let token = token.map(str::to_string);
        workers.push(tokio::spawn(async move {
            let mut taken = 0u64;
            let mut latencies = hdrhistogram::Histogram::<u64>::new(3)
                .map_err(|e| HttpBenchError::Setup(format!("histogram: {e}")))?;
            while Instant::now() < until {
                let body = body(batch, &next, &prefix);
                let sent = Instant::now();
                let mut request = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body);
                if let Some(token) = &token {
                    request = request.bearer_auth(token);
                }
                let answer = request
                    .send()
                    .await
                    .map_err(|source| HttpBenchError::Request {
                        what: format!("POST {url}"),
                        source,
                    })?;
                let status = answer.status();
                let text = answer
                    .bytes()
                    .await
                    .map_err(|source| HttpBenchError::Request {
                        what: format!("reading the answer of POST {url}"),
                        source,
                    })?;
                let _ = latencies.record(sent.elapsed().as_micros() as u64);
                if !(status == reqwest::StatusCode::ACCEPTED || status == reqwest::StatusCode::OK) {
                    return Err(HttpBenchError::Answer(format!(
                        "POST {url} answered {status}: {}",
                        String::from_utf8_lossy(&text)
                    )));
                }
                taken += batch as u64;
            }
            Ok::<_, HttpBenchError>((taken, latencies))
        }));
    }
    let mut taken = 0;
    let mut latencies = hdrhistogram::Histogram::<u64>::new(3)
        .map_err(|e| HttpBenchError::Setup(format!("histogram: {e}")))?;
    for worker in workers {
        let (count, histogram) = worker
            .await
            .map_err(|e| HttpBenchError::Setup(format!("client task failed: {e}")))??;
        taken += count;
        let _ = latencies.add(histogram);
    }
    Ok(Driven {
        rate: taken as f64 / started.elapsed().as_secs_f64(),
        latencies,
    })
}

/// Runs the submission benchmark.
pub fn run_http_bench(options: &HttpBenchOptions) -> Result<HttpBenchReport, HttpBenchError> {
    let client = runtime(2)?;
    let echo = Echo::start()?;
    let mut echoed = Vec::new();
    let mut piped: Vec<Driven> = Vec::new();
    let mut authed: Vec<f64> = Vec::new();
    for round in 0..options.rounds {
        let driven = client.block_on(drive(echo.addr, options, &format!("echo{round}"), None))?;
        tracing::info!(round, rate = driven.rate, "echo endpoint");
        echoed.push(driven.rate);

        let driven = pipeline_run(&client, options, round, false)?;
        tracing::info!(round, rate = driven.rate, "pipeline API");
        piped.push(driven);
        if options.with_auth {
            let driven = pipeline_run(&client, options, round, true)?;
            tracing::info!(round, rate = driven.rate, "pipeline API, auth on");
            authed.push(driven.rate);
        }
    }
    let auth_median = if authed.is_empty() {
        0.0
    } else {
        median(&authed)
    };
    let rates: Vec<f64> = piped.iter().map(|d| d.rate).collect();
    let echo_median = median(&echoed);
    let pipeline_median = median(&rates);
    let middle = piped.iter().min_by(|a, b| {
        (a.rate - pipeline_median)
            .abs()
            .total_cmp(&(b.rate - pipeline_median).abs())
    });
    Ok(HttpBenchReport {
        connections: options.connections,
        batch: options.batch,
        seconds: options.duration.as_secs_f64(),
        workers: options.workers,
        echo_tasks_per_sec: echoed,
        pipeline_tasks_per_sec: rates,
        echo_median,
        pipeline_median,
        ratio: if echo_median > 0.0 {
            pipeline_median / echo_median
        } else {
            0.0
        },
        pipeline_p50_us: middle.map_or(0, |d| d.latencies.value_at_quantile(0.5)),
        pipeline_p99_us: middle.map_or(0, |d| d.latencies.value_at_quantile(0.99)),
        auth_tasks_per_sec: authed,
        auth_median,
        auth_ratio: if pipeline_median > 0.0 {
            auth_median / pipeline_median
        } else {
            0.0
        },
    })
}

/// One run against a fresh pipeline, with auth on or off.
fn pipeline_run(
    client: &tokio::runtime::Runtime,
    options: &HttpBenchOptions,
    round: usize,
    auth: bool,
) -> Result<Driven, HttpBenchError> {
    let tag = if auth { "auth" } else { "submit" };
    let (pipeline, data_dir, token) = start_pipeline(options.workers, tag, auth)?;
    let addr = pipeline
        .http_addr()
        .ok_or_else(|| HttpBenchError::Setup("the pipeline serves no HTTP API".into()))?;
    let driven = client.block_on(drive(
        addr,
        options,
        &format!("{tag}{round}"),
        token.as_deref(),
    ));
    let summary = pipeline.shutdown();
    let _ = std::fs::remove_dir_all(&data_dir);
    let driven = driven?;
    summary?;
    Ok(driven)
}

/// Runs the listing benchmark: the small store, then the large one.
pub fn run_listing_bench(
    options: &ListingBenchOptions,
) -> Result<ListingBenchReport, HttpBenchError> {
    let client = runtime(1)?;
    let small = listing_at(&client, options, options.small)?;
    let large = listing_at(&client, options, options.large)?;
    let ratio = if small.page_p50_us > 0 {
        large.page_p50_us as f64 / small.page_p50_us as f64
    } else {
        0.0
    };
    Ok(ListingBenchReport {
        page: options.page,
        small,
        large,
        ratio,
    })
}

/// Fills a fresh pipeline's store with `stored` tasks and walks its pages.
fn listing_at(
    client: &tokio::runtime::Runtime,
    options: &ListingBenchOptions,
    stored: u64,
) -> Result<ListingSize, HttpBenchError> {
    let (pipeline, data_dir, _) = start_pipeline(1, &format!("list{stored}"), false)?;
    let walked = (|| {
        let filled = Instant::now();
        fill(pipeline.store().as_ref(), stored)?;
        let fill_seconds = filled.elapsed().as_secs_f64();
        let addr = pipeline
            .http_addr()
            .ok_or_else(|| HttpBenchError::Setup("the pipeline serves no HTTP API".into()))?;
        let pages = options
            .pages
            .min((stored as usize).div_ceil(options.page).max(1));
        let asc = client.block_on(walk(addr, options.page, pages, "asc"))?;
        let desc = client.block_on(walk(addr, options.page, pages, "desc"))?;
        let tail = &asc[asc.len() - (asc.len() / 10).max(1)..];
        Ok::<_, HttpBenchError>(ListingSize {
            stored,
            fill_seconds,
            pages: asc.len(),
            page_p50_us: quantile(&asc, 0.5),
            page_p99_us: quantile(&asc, 0.99),
            last_tenth_p50_us: quantile(tail, 0.5),
            desc_page_p50_us: quantile(&desc, 0.5),
        })
    })();
    let summary = pipeline.shutdown();
    let _ = std::fs::remove_dir_all(&data_dir);
    let walked = walked?;
    summary?;
    Ok(walked)
}

/// Admits `count` no-op tasks straight into `store`, 10,000 per
/// transaction, with distinct acceptance times.
fn fill(store: &dyn TaskStore, count: u64) -> Result<(), HttpBenchError> {
    const CHUNK: u64 = 10_000;
    let base = tidewater_operators::model::now_micros();
    let mut first = 0;
    while first < count {
        let last = (first + CHUNK).min(count);
        let tasks: Vec<Task> = (first..last)
            .map(|i| {
                let mut task = Task::new(
                    format!("listed-{i:08}"),
                    "noop",
                    ResourceRequest::cpu(10, 0),
                );
                task.tenant = format!("t{}", i % 4).as_str().into();
                task.submitted_at_us = base + i;
                task
            })
            .collect();
        store.admit(&tasks)?;
        first = last;
    }
    Ok(())
}

/// The listing's answer, as far as the walk reads it.
#[derive(serde::Deserialize)]
struct Page {
    tasks: Vec<serde_json::Value>,
    next_cursor: Option<String>,
}

/// Walks `pages` pages of `limit` records in `order`, returning each
/// page's time in microseconds.
async fn walk(
    addr: SocketAddr,
    limit: usize,
    pages: usize,
    order: &str,
) -> Result<Vec<u64>, HttpBenchError> {
    let client = reqwest::Client::new();
    let mut cursor: Option<String> = None;
    let mut times = Vec::with_capacity(pages);
    for _ in 0..pages {
        let mut url = format!("http://{addr}/v1/tasks?limit={limit}&order={order}");
        if let Some(cursor) = &cursor {
            url.push_str("&cursor=");
            url.push_str(cursor);
        }
        let asked = Instant::now();
        let answer = client
            .get(&url)
            .send()
            .await
            .map_err(|source| HttpBenchError::Request {
                what: format!("GET {url}"),
                source,
            })?;
        let status = answer.status();
        let bytes = answer
            .bytes()
            .await
            .map_err(|source| HttpBenchError::Request {
                what: format!("reading GET {url}"),
                source,
            })?;
        times.push(asked.elapsed().as_micros() as u64);
        if status != reqwest::StatusCode::OK {
            return Err(HttpBenchError::Answer(format!(
                "GET {url} answered {status}: {}",
                String::from_utf8_lossy(&bytes)
            )));
        }
        let page: Page = serde_json::from_slice(&bytes)
            .map_err(|e| HttpBenchError::Answer(format!("GET {url}: {e}")))?;
        if page.tasks.len() != limit && page.next_cursor.is_some() {
            return Err(HttpBenchError::Answer(format!(
                "GET {url} gave {} records, not {limit}, before the last page",
                page.tasks.len()
            )));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(times)
}

/// The `q` quantile of `values` (0 for none).
fn quantile(values: &[u64], q: f64) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    if sorted.is_empty() {
        return 0;
    }
    let at = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[at]
}
