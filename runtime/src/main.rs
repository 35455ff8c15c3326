//! The `tidewater` command: run the pipeline, a demo, benchmarks, replays,
//! submit tasks, validate configs.

use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

use tidewater::agent::{parse_capacity, run_agent, AgentOptions};
use tidewater::bench::{run_bench, BenchOptions};
use tidewater::broker_bench::{run_broker_bench, BrokerBenchOptions};
use tidewater::config::HandlersConfig;
use tidewater::config::{ClusterConfig, Config, StoreKind};
use tidewater::kafka_bench::run_kafka_bench;
use tidewater::shutdown::{self, Signals};
use tidewater::sources::feed_json_lines;
use tidewater::{HandlerOutput, HandlerRegistry, Pipeline};

/// Tidewater: a streaming dataflow engine for multi-agent task systems.
#[derive(Parser)]
#[command(name = "tidewater", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pipeline with a config; serves until Ctrl-C (or until the
    /// input is drained with --exit-when-done).
    Run(RunArgs),
    /// Run the pipeline on a built-in workload, show progress and a summary.
    Demo(DemoArgs),
    /// Submit tasks (JSON object, array, or JSON lines) to a running pipeline's HTTP API.
    Submit(SubmitArgs),
    /// Cancel a task on a running pipeline (HTTP `DELETE /v1/tasks/{id}`).
    Cancel(CancelArgs),
    /// Print a continuous query's latest result from a running pipeline
    /// (HTTP `GET /v1/queries/{name}`); without a name, every query's.
    Query(QueryArgs),
    /// Benchmark no-op tasks end to end.
    Bench(BenchArgs),
    /// Benchmark continuous metric queries: updates/s, freshness, memory.
    BenchQueries(BenchQueriesArgs),
    /// Replay a trace: an openb cluster through a placement policy, or (with
    /// --swf) a batch log through fcfs, user-estimate or learned scheduling.
    Replay(ReplayArgs),
    /// Run a remote executor agent that joins a pipeline over RabbitMQ.
    Agent(AgentArgs),
    /// Measure the learner's training throughput (samples per second) on
    /// synthetic experiences, on the CPU.
    BenchLearner(BenchLearnerArgs),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Args)]
struct RunArgs {
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

#[derive(Args)]
struct AgentArgs {
    /// AMQP URI of the broker the pipeline uses.
    #[arg(long, env = "TIDEWATER_AMQP_URL")]
    broker: String,
    /// This executor's id (unique in the cluster).
    #[arg(long)]
    id: String,
    /// Capacity: cpu=MILLICORES,memory=MIB,gpu=COUNT (other NAME=AMOUNT pairs are custom resources).
    #[arg(long)]
    capacity: String,
    /// Model of the GPUs.
    #[arg(long, default_value = "")]
    gpu_model: String,
    /// Interval between heartbeats, ms.
    #[arg(long, default_value_t = 1000)]
    heartbeat_ms: u64,
    /// Declared lost after this long without a heartbeat, ms.
    #[arg(long, default_value_t = 5000)]
    ttl_ms: u64,
    /// The pipeline's control exchange (`rabbitmq.control_exchange`).
    #[arg(long, default_value = "tidewater.control")]
    control_exchange: String,
    /// The pipeline's assignments exchange (`rabbitmq.assignments_exchange`).
    #[arg(long, default_value = "tidewater.assignments")]
    assignments_exchange: String,
    /// Most assignments delivered at once.
    #[arg(long, default_value_t = 256)]
    prefetch: u16,
    /// Programs the `command` handler may run (repeatable).
    #[arg(long = "allow-command")]
    allow_command: Vec<String>,
}

#[derive(Args)]
struct DemoArgs {
    /// Tasks in the workload.
    #[arg(long, default_value_t = 2000)]
    tasks: u64,
    /// Timely workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

#[derive(Args)]
struct SubmitArgs {
    /// Base URL of the HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A file of tasks (`-` for stdin): a JSON object, a JSON array, or JSON lines.
    file: Option<PathBuf>,
    /// A task given inline as JSON.
    #[arg(long)]
    json: Option<String>,
}

#[derive(Args)]
struct QueryArgs {
    /// Base URL of the HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The query's name.
    name: Option<String>,
}

#[derive(Args)]
struct BenchQueriesArgs {
    /// Metric events in all.
    #[arg(long, default_value_t = 20_000_000)]
    events: u64,
    /// Timely workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Events per epoch, over all workers.
    #[arg(long, default_value_t = 100_000)]
    events_per_epoch: u64,
    /// Window of the windowed queries, in epochs (ms).
    #[arg(long, default_value_t = 1_000)]
    window_ms: u64,
    /// Offer events at this rate (events/s over all workers), an epoch at a
    /// time, instead of as fast as the queries absorb them; freshness is
    /// meaningful only at a rate the queries sustain.
    #[arg(long)]
    rate: Option<f64>,
    /// Event time per epoch, ms (windows are in these milliseconds).
    #[arg(long, default_value_t = 1)]
    epoch_ms: u64,
}

#[derive(Args)]
struct CancelArgs {
    /// Base URL of the HTTP API.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Ids of the tasks to cancel.
    #[arg(required = true)]
    ids: Vec<String>,
}

#[derive(Args)]
struct BenchArgs {
    /// Tasks to run.
    #[arg(long, default_value_t = 2_000_000)]
    tasks: u64,
    /// Timely workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Target rate in tasks per second (default: as fast as possible).
    #[arg(long)]
    rate: Option<u64>,
    /// Most tasks in flight per worker.
    #[arg(long, default_value_t = 65_536)]
    window: u64,
    /// Do not produce metric events.
    #[arg(long)]
    no_metrics: bool,
    /// Measure memory per queued task instead of throughput.
    #[arg(long)]
    queue: bool,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
    /// Measure end to end through a broker instead (`amqp` or `kafka`),
    /// against a raw client loop in the same run.
    #[arg(long, value_parser = ["amqp", "kafka"])]
    broker: Option<String>,
    /// The broker's address: an AMQP URI (default `$TIDEWATER_AMQP_URL`,
    /// else amqp://guest:guest@127.0.0.1:5672/%2f), or Kafka bootstrap
    /// servers (default `$TIDEWATER_KAFKA_BROKERS`, else 127.0.0.1:9092).
    #[arg(long)]
    broker_url: Option<String>,
    /// Prefetch for both sides (with --broker).
    #[arg(long, default_value_t = 1000)]
    prefetch: u16,
    /// Raw/pipeline pairs of runs (with --broker).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The pipeline's store with --broker: embedded (durable) or memory.
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "memory"])]
    store: String,
}

#[derive(Args)]
struct ReplayArgs {
    /// A Standard Workload Format log to simulate instead of the openb trace.
    #[arg(long)]
    swf: Option<PathBuf>,
    /// openb node list (CSV).
    #[arg(
        long,
        default_value = "../shared/data/openb/openb_node_list_all_node.csv"
    )]
    nodes: PathBuf,
    /// openb pod list (CSV).
    #[arg(
        long,
        default_value = "../shared/data/openb/openb_pod_list_default.csv"
    )]
    pods: PathBuf,
    /// openb: first_fit, best_fit, spread, dot_product, random_fit, fgd;
    /// SWF: fcfs, user-estimate, learned, user-estimate-sjbf, learned-sjbf.
    #[arg(long, default_value = "fgd")]
    policy: String,
    /// Random seed of the first run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Independent runs to average.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Resize the cluster to this many nodes by cycling through the node
    /// list (for measuring how placement cost grows with cluster size).
    #[arg(long)]
    cluster_size: Option<usize>,
    /// Split the cluster over this many shards placing in parallel, one
    /// thread each, exchanging capacity summaries every epoch as the live
    /// coordinator does.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchLearnerArgs {
    /// linear or mlp.
    #[arg(long, default_value = "linear")]
    model: String,
    /// MLP hidden units.
    #[arg(long, default_value_t = 32)]
    hidden: u32,
    /// Samples to train on.
    #[arg(long, default_value_t = 5_000_000)]
    samples: usize,
    /// Samples per mini-batch.
    #[arg(long, default_value_t = 256)]
    batch_size: usize,
    /// Training threads (replicas averaged at the end).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Hashed feature dimensions.
    #[arg(long, default_value_t = 1 << 16)]
    feature_dim: u32,
    /// adam or sgd.
    #[arg(long, default_value = "adam")]
    optimizer: String,
    /// cpu, cuda:N, or auto (the first CUDA device if any).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// On CUDA, pack and upload each batch per step (as the pipeline's
    /// learner does) instead of training on batches uploaded once.
    #[arg(long)]
    host_batches: bool,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Parse and check a config file.
    Validate {
        /// The file.
        file: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run(args) => run(args),
        Command::Demo(args) => demo(args),
        Command::Submit(args) => submit(args),
        Command::Cancel(args) => cancel(args),
        Command::Query(args) => query(args),
        Command::Bench(args) => bench(args),
        Command::BenchQueries(args) => {
            let report = tidewater::bench_queries::run_query_bench(
                &tidewater::bench_queries::QueryBenchOptions {
                    events: args.events,
                    workers: args.workers,
                    events_per_epoch: args.events_per_epoch,
                    window_ms: args.window_ms,
                    rate: args.rate,
                    epoch_ms: args.epoch_ms,
                },
            )
            .map_err(anyhow::Error::msg)?;
            println!("{}", serde_json::to_string(&report)?);
            Ok(())
        }
        Command::Agent(args) => agent(args),
        Command::BenchLearner(args) => {
            let report = tidewater_bench::learner_bench::bench_learner(
                &tidewater_bench::learner_bench::LearnerBenchOptions {
                    model: args.model,
                    hidden: args.hidden,
                    samples: args.samples,
                    batch_size: args.batch_size,
                    threads: args.threads,
                    feature_dim: args.feature_dim,
                    optimizer: args.optimizer,
                    device: args.device,
                    host_batches: args.host_batches,
                },
            )?;
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{} ({}, {} on {}, {} threads): {:.0} samples/s ({} samples in {:.2} s, {:.1} non-zeros each); loss {:.3} -> {:.3}; featurize {:.0}/s",
                    report.model, report.optimizer, report.feed, report.device, report.threads, report.samples_per_s, report.samples,
                    report.train_s, report.nnz_per_sample, report.loss_before, report.loss_after, report.featurize_per_s
                );
            }
            Ok(())
        }
        Command::Replay(ReplayArgs {
            swf: Some(swf),
            policy,
            json,
            ..
        }) => {
            let report = tidewater_bench::swf::replay_swf(&swf, &policy)?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{}: mean wait {:.0} s, mean bounded slowdown {:.2}, utilization {:.3} ({} jobs)",
                    report.policy, report.mean_wait_s, report.mean_bounded_slowdown, report.utilization, report.jobs
                );
            }
            Ok(())
        }
        Command::Replay(args) => {
            let mut nodes = tidewater_bench::openb::read_nodes(&args.nodes)?;
            if let Some(size) = args.cluster_size {
                nodes = tidewater_bench::openb::resize_cluster(&nodes, size);
            }
            let pods = tidewater_bench::openb::read_pods(&args.pods)?;
            let report = if args.shards > 1 {
                tidewater_bench::sharded::replay_sharded(
                    &nodes,
                    &pods,
                    &args.policy,
                    args.seed,
                    args.runs,
                    args.shards,
                )?
            } else {
                tidewater_bench::openb::replay(&nodes, &pods, &args.policy, args.seed, args.runs)?
            };
            if args.json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "{}: {:.1}% of GPU capacity unallocated at saturation, {:.0} placements/s ({} nodes, {} GPUs, {} runs)",
                    report.policy,
                    100.0 * report.unallocated_gpu_share_at_saturation,
                    report.placements_per_sec,
                    report.nodes,
                    report.gpus,
                    report.runs
                );
            }
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Validate { file },
        } => {
            let config = Config::load(&file)?;
            println!(
                "{}: valid ({} workers, {} executors, policy {}, store {:?})",
                file.display(),
                config.workers,
                config.executor_specs().len(),
                config.allocator.policy,
                config.store.kind
            );
            Ok(())
        }
    }
}

fn run(args: RunArgs) -> anyhow::Result<()> {
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
                    addresses,
                    hostfile: args.hostfile.clone(),
                });
            }
        }
    }
    if let Some(cluster) = &config.cluster {
        if config.http.enabled && cluster.process > 0 {
            // One HTTP listener per process: shift the port by the process index.
            let addr: std::net::SocketAddr = config.http.listen.parse()?;
            config.http.listen =
                std::net::SocketAddr::new(addr.ip(), addr.port() + cluster.process as u16)
                    .to_string();
        }
    }
    config.validate()?;
    let drain_timeout = Duration::from_millis(config.shutdown.drain_timeout_ms);
    let (part, parts) = match &config.cluster {
        Some(c) => (c.process, c.resolve_addresses()?.len()),
        None => (0, 1),
    };
    let pipeline = Pipeline::builder(config).start()?;
    if let Some(addr) = pipeline.http_addr() {
        tracing::info!("serving http://{addr}");
    }
    if let Some(input) = &args.input {
        let ingress = pipeline.ingress();
        let sent = if input.as_os_str() == "-" {
            feed_json_lines(std::io::stdin().lock(), "stdin", &ingress, (part, parts))?
        } else {
            let file = std::fs::File::open(input)
                .with_context(|| format!("opening {}", input.display()))?;
            feed_json_lines(file, &input.display().to_string(), &ingress, (part, parts))?
        };
        tracing::info!(records = sent, "input fed");
    }
    if args.exit_when_done {
        let summary = pipeline.shutdown()?;
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(());
    }
    let runtime = pipeline.runtime().context("pipeline has no runtime")?;
    let signals = Signals::listen(&runtime)?;
    signals.wait_for(&runtime, 1);
    tracing::info!(timeout_ms = drain_timeout.as_millis() as u64, "draining");
    let report = shutdown::drain(pipeline, drain_timeout, Some(&signals))?;
    println!("{}", serde_json::to_string(&report.stats)?);
    Ok(())
}

fn agent(args: AgentArgs) -> anyhow::Result<()> {
    let spec = parse_capacity(&args.id, &args.capacity, &args.gpu_model)?;
    let handlers = HandlerRegistry::with_builtins(
        &HandlersConfig {
            command_allowlist: args.allow_command.clone(),
            ..HandlersConfig::default()
        },
        tidewater_operators::validate::ValidationLimits::default().max_result_bytes,
    );
    let options = AgentOptions {
        url: args.broker,
        spec,
        heartbeat_ms: args.heartbeat_ms,
        ttl_ms: args.ttl_ms,
        control_exchange: args.control_exchange,
        assignments_exchange: args.assignments_exchange,
        prefetch: args.prefetch,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let summary = runtime.block_on(run_agent(options, Arc::new(handlers), async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }));
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let mut config = Config {
        workers: args.workers,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    config.handlers.command_allowlist = vec!["echo".into()];
    config.executors[0].count = 4;
    config.executors[0].cpu_milli = 4_000;
    let pipeline = Pipeline::builder(config)
        .inline_handler("checksum", |task| {
            let sum: u64 = task
                .payload
                .as_deref()
                .unwrap_or("")
                .bytes()
                .map(u64::from)
                .sum();
            Ok(HandlerOutput::value(sum.into()))
        })
        .start()?;
    let ingress = pipeline.ingress();
    let started = Instant::now();
    let mut expected_rejections = 0;
    for n in 0..args.tasks {
        let json = match n % 10 {
            0..=5 => {
                format!(r#"{{"id":"demo-{n}","kind":"noop","resources":{{"cpu_milli":100}}}}"#)
            }
            6 => format!(
                r#"{{"id":"demo-{n}","kind":"sleep","payload":{{"ms":{}}},"resources":{{"cpu_milli":500}}}}"#,
                n % 20
            ),
            7 => format!(
                r#"{{"id":"demo-{n}","kind":"command","payload":{{"program":"echo","args":["task {n}"]}}}}"#
            ),
            8 => format!(
                r#"{{"id":"demo-{n}","kind":"checksum","payload":{{"n":{n}}},"qos":"latency_sensitive"}}"#
            ),
            _ => {
                expected_rejections += 1;
                match n % 3 {
                    0 => format!(
                        r#"{{"id":"demo-{n}","kind":"noop","resources":{{"cpu_milli":-1}}}}"#
                    ),
                    1 => format!(r#"{{"id":"demo-{n}","kind":"noop","colour":"blue"}}"#),
                    _ => "{not json".to_string(),
                }
            }
        };
        ingress.submit_json("demo", json.into_bytes(), 0, 0)?;
    }
    let stats = pipeline.stats();
    loop {
        let s = stats.snapshot();
        eprintln!(
            "  progress: {} finished, {} rejected of {}",
            s.finished, s.rejected, args.tasks
        );
        if s.finished + s.rejected >= args.tasks {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            bail!("demo did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let summary = pipeline.shutdown()?;
    println!(
        "Tidewater demo: {} tasks in {:.2} s ({:.0}/s)",
        args.tasks,
        elapsed,
        args.tasks as f64 / elapsed
    );
    println!(
        "  succeeded {}  failed {}  timed out {}  rejected {}",
        summary.succeeded, summary.failed, summary.timed_out, summary.rejected
    );
    println!(
        "  latency p50 {} µs  p99 {} µs",
        summary.p50_us, summary.p99_us
    );
    if summary.rejected != expected_rejections || summary.finished + summary.rejected != args.tasks
    {
        bail!(
            "counts do not add up: expected {expected_rejections} rejections and {} outcomes",
            args.tasks
        );
    }
    Ok(())
}

fn query(args: QueryArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let base = args.url.trim_end_matches('/');
    let url = match &args.name {
        Some(name) => format!("{base}/v1/queries/{name}"),
        None => format!("{base}/v1/queries"),
    };
    let (status, text) = runtime.block_on(async {
        let response = reqwest::Client::new().get(&url).send().await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.text().await?))
    })?;
    println!("{text}");
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(())
}

fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    let mut failed = Vec::new();
    for id in &args.ids {
        let url = format!("{}/v1/tasks/{id}", args.url.trim_end_matches('/'));
        let (status, text) = runtime.block_on(async {
            let response = client.delete(&url).send().await?;
            let status = response.status();
            Ok::<_, reqwest::Error>((status, response.text().await?))
        })?;
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

fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let body = match (&args.json, &args.file) {
        (Some(json), _) => json.clone(),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
        (None, Some(path)) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None) => bail!("give a file, `-` for stdin, or --json"),
    };
    let trimmed = body.trim_start();
    // JSON lines become one batch.
    let body = if trimmed.starts_with('{')
        && trimmed.lines().filter(|l| !l.trim().is_empty()).count() > 1
    {
        format!(
            "[{}]",
            trimmed
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join(",")
        )
    } else {
        body
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let url = format!("{}/v1/tasks", args.url.trim_end_matches('/'));
    let (status, text) = runtime.block_on(async {
        let response = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = response.status();
        Ok::<_, reqwest::Error>((status, response.text().await?))
    })?;
    println!("{text}");
    if !status.is_success() {
        bail!("{url} answered {status}");
    }
    Ok(())
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(broker) = args.broker.as_deref() {
        let kafka = broker == "kafka";
        let (var, fallback) = if kafka {
            ("TIDEWATER_KAFKA_BROKERS", "127.0.0.1:9092")
        } else {
            (
                "TIDEWATER_AMQP_URL",
                "amqp://guest:guest@127.0.0.1:5672/%2f",
            )
        };
        let url = args
            .broker_url
            .clone()
            .or_else(|| std::env::var(var).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| fallback.to_string());
        let options = BrokerBenchOptions {
            url,
            tasks: args.tasks,
            workers: args.workers,
            prefetch: args.prefetch,
            rounds: args.rounds.max(1),
            store: if args.store == "memory" {
                StoreKind::Memory
            } else {
                StoreKind::Embedded
            },
        };
        let report = if kafka {
            run_kafka_bench(&options)?
        } else {
            run_broker_bench(&options)?
        };
        if args.json {
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!("{report:#?}");
        }
        return Ok(());
    }
    let report = run_bench(&BenchOptions {
        tasks: args.tasks,
        workers: args.workers,
        rate: args.rate,
        window: args.window,
        metrics: !args.no_metrics,
        queue: args.queue,
    })
    .map_err(anyhow::Error::msg)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!("{report:#?}");
    }
    Ok(())
}
