//! `tidewater run`: the pipeline with a config file, serving until SIGINT
//! or SIGTERM, which drain it (see `tidewater::shutdown`), or, with
//! `--exit-when-done`, until the `--input` file is fed and every task has
//! finished; prints the run's summary as one JSON line.
//!
//! `--process`/`--processes`/`--hostfile` put the process in a timely
//! cluster; each process then serves HTTP on the configured port plus its
//! index, and exits with code 75 when it loses a peer process
//! ([`super::peer_loss`]).
//!
//! With `--input`, progress (tasks ended of those fed) shows on stderr until
//! the fed tasks have all ended or the run stops; stdout keeps only the
//! summary line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use tidewater::config::{ClusterConfig, Config};
use tidewater::shutdown::{self, Signals};
use tidewater::sources::feed_json_lines;
use tidewater::stats::PipelineStats;
use tidewater::telemetry::Telemetry;
use tidewater::Pipeline;

use super::progress::Progress;

/// Arguments of `tidewater run`.
#[derive(Args)]
pub struct RunArgs {
    /// Config file (TOML).
    #[arg(long, short, default_value = "configs/local.toml")]
    config: PathBuf,
    /// Timely workers per process (overrides the config).
    #[arg(long)]
    workers: Option<usize>,
    /// Processes in a timely cluster.
    #[arg(long)]
    processes: Option<usize>,
    /// This process's index in the cluster.
    #[arg(long)]
    process: Option<usize>,
    /// File with one host:port per process.
    #[arg(long)]
    hostfile: Option<PathBuf>,
    /// JSON-lines file of tasks to feed (`-` for stdin).
    #[arg(long)]
    input: Option<PathBuf>,
    /// Exit once the input is fed and every task has finished.
    #[arg(long)]
    exit_when_done: bool,
}

/// Runs the pipeline until it is told to stop, then prints its summary.
pub fn execute(args: RunArgs) -> anyhow::Result<()> {
    let config = load_config(&args)?;
    let drain_timeout = Duration::from_millis(config.shutdown.drain_timeout_ms);
    let (part, parts) = match &config.cluster {
        Some(c) => (c.process, c.resolve_addresses()?.len()),
        None => (0, 1),
    };
    if config.cluster.is_some() {
        super::peer_loss::exit_when_a_peer_is_lost();
    }
    let telemetry = config
        .telemetry
        .as_ref()
        .map(Telemetry::start)
        .transpose()?;
    crate::logging::init(telemetry.as_ref());
    let mut builder = Pipeline::builder(config);
    if let Some(telemetry) = telemetry {
        builder = builder.telemetry(telemetry);
    }
    let pipeline = builder.start()?;
    if let Some(addr) = pipeline.http_addr() {
        tracing::info!("serving http://{addr}");
    }
    let fed = if let Some(input) = &args.input {
        let ingress = pipeline.ingress();
        let sent = if input.as_os_str() == "-" {
            feed_json_lines(std::io::stdin().lock(), "stdin", &ingress, (part, parts))?
        } else {
            let file = std::fs::File::open(input)
                .with_context(|| format!("opening {}", input.display()))?;
            feed_json_lines(file, &input.display().to_string(), &ingress, (part, parts))?
        };
        tracing::info!(records = sent, "input fed");
        Some(sent)
    } else {
        None
    };
    let watcher = fed.map(|sent| InputProgress::watch(pipeline.stats(), sent));
    if args.exit_when_done {
        let summary = pipeline.shutdown()?;
        drop(watcher);
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(());
    }
    let runtime = pipeline.runtime().context("pipeline has no runtime")?;
    let signals = Signals::listen(&runtime)?;
    signals.wait_for(&runtime, 1);
    tracing::info!(timeout_ms = drain_timeout.as_millis() as u64, "draining");
    let report = shutdown::drain(pipeline, drain_timeout, Some(&signals))?;
    drop(watcher);
    println!("{}", serde_json::to_string(&report.stats)?);
    Ok(())
}

/// A thread drawing the progress of the fed input (tasks ended of those
/// fed) until they have all ended or it is dropped.
struct InputProgress {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InputProgress {
    /// Starts watching `stats` for `sent` fed tasks to end.
    fn watch(stats: std::sync::Arc<PipelineStats>, sent: u64) -> InputProgress {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let progress = Progress::new("input", Some(sent));
            loop {
                let s = stats.snapshot();
                let ended = s.finished + s.rejected;
                progress.update(
                    ended.min(sent),
                    &format!("{} finished, {} rejected", s.finished, s.rejected),
                );
                if ended >= sent {
                    break;
                }
                if !matches!(
                    stopped.recv_timeout(Duration::from_millis(100)),
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout)
                ) {
                    break;
                }
            }
            progress.finish();
        });
        InputProgress {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for InputProgress {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The config file with the command line's overrides applied, validated.
fn load_config(args: &RunArgs) -> anyhow::Result<Config> {
    let mut config = Config::load(&args.config)?;
    if let Some(workers) = args.workers {
        config.workers = workers;
    }
    if let Some(process) = args.process {
        match config.cluster.as_mut() {
            Some(cluster) => {
                cluster.process = process;
                if let Some(hostfile) = &args.hostfile {
                    cluster.hostfile = Some(hostfile.clone());
                    cluster.addresses.clear();
                }
            }
            None => {
                let processes = args.processes.unwrap_or(1);
                let addresses = match &args.hostfile {
                    Some(_) => Vec::new(),
                    None => (0..processes)
                        .map(|i| format!("127.0.0.1:{}", 2101 + i))
                        .collect(),
                };
                config.cluster = Some(ClusterConfig {
                    process,
                    process_from_hostname: false,
                    addresses,
                    hostfile: args.hostfile.clone(),
                });
            }
        }
    }
    if let Some(cluster) = &config.cluster {
        if config.http.enabled {
            // One HTTP listener per process: the port shifted by the process
            // index, on each process's cluster host; every process knows them
            // all, to answer for tasks wherever they were taken in.
            // (Unless each process has a host of its own, as Kubernetes
            // pods do: then all serve on the one port.)
            let addr: std::net::SocketAddr = config.http.listen.parse()?;
            let per_process = config.http.port_per_process;
            let shift = |i: usize| if per_process { i as u16 } else { 0 };
            if config.http.peers.is_empty() {
                config.http.peers = cluster
                    .resolve_addresses()?
                    .iter()
                    .enumerate()
                    .map(|(i, timely)| {
                        let host = timely.rsplit_once(':').map_or(timely.as_str(), |(h, _)| h);
                        format!("{host}:{}", addr.port() + shift(i))
                    })
                    .collect();
            }
            if shift(cluster.process) > 0 {
                config.http.listen =
                    std::net::SocketAddr::new(addr.ip(), addr.port() + shift(cluster.process))
                        .to_string();
            }
        }
    }
    config.validate()?;
    Ok(config)
}
