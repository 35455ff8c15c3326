//! `tidewater bench`: no-op tasks end to end through the pipeline in
//! process, or (with `--broker amqp|kafka`) through a real broker against a
//! raw client loop in the same run; with `--http`, submissions through the
//! HTTP API against a plain axum echo endpoint; with `--listing`, the time of
//! a `GET /v1/tasks` page at two store sizes. The harnesses are the
//! `tidewater-bench` package's
//! [`pipeline_bench`](tidewater_bench::pipeline_bench),
//! [`broker_bench`](tidewater_bench::broker_bench),
//! [`kafka_bench`](tidewater_bench::kafka_bench) and
//! [`http_bench`](tidewater_bench::http_bench).
//!
//! Progress shows on stderr while it runs; the report is an aligned table
//! on stdout, or one JSON line with `--json`.

use clap::Args;

use tidewater::config::StoreKind;
use tidewater_bench::broker_bench::{run_broker_bench, BrokerBenchOptions};
use tidewater_bench::http_bench::{
    run_http_bench, run_listing_bench, HttpBenchOptions, ListingBenchOptions,
};
use tidewater_bench::kafka_bench::run_kafka_bench;
use tidewater_bench::pipeline_bench::{run_bench, BenchOptions};

use super::progress::spin_while;
use super::table::report_table;

/// Arguments of `tidewater bench`.
#[derive(Args)]
pub struct BenchArgs {
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
    /// Measure submissions through the HTTP API instead, against a plain
    /// axum echo endpoint driven by the same client in the same run.
    #[arg(long, conflicts_with_all = ["broker", "listing"])]
    http: bool,
    /// Requests in flight, each on its own connection (with --http).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Tasks per request (with --http): 1 sends one task object, more an
    /// array.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Seconds each run drives its server (with --http).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// With --http: also run the pipeline with token auth on each round,
    /// and report its rate against auth off.
    #[arg(long, requires = "http")]
    auth: bool,
    /// Measure `GET /v1/tasks` page times at two store sizes instead.
    #[arg(long, conflicts_with = "broker")]
    listing: bool,
    /// Stored tasks of the small listing run (with --listing).
    #[arg(long, default_value_t = 10_000)]
    stored_small: u64,
    /// Stored tasks of the large listing run (with --listing).
    #[arg(long, default_value_t = 1_000_000)]
    stored_large: u64,
    /// Records per page (with --listing).
    #[arg(long, default_value_t = 100)]
    page: usize,
    /// Pages walked at each size (with --listing).
    #[arg(long, default_value_t = 2_000)]
    pages: usize,
}

/// Runs the benchmark and prints its report.
pub fn execute(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(broker) = args.broker.as_deref() {
        return broker_bench(broker, &args);
    }
    if args.http {
        return http_bench(&args);
    }
    if args.listing {
        return listing_bench(&args);
    }
    let options = BenchOptions {
        tasks: args.tasks,
        workers: args.workers,
        rate: args.rate,
        window: args.window,
        metrics: !args.no_metrics,
        queue: args.queue,
    };
    let label = format!("bench {} tasks", args.tasks);
    let report = spin_while(&label, || run_bench(&options)).map_err(anyhow::Error::msg)?;
    print_report(
        "tidewater bench: no-op tasks end to end",
        &report,
        args.json,
    )
}

/// `--broker amqp|kafka`: the broker benchmark against its address.
fn broker_bench(broker: &str, args: &BenchArgs) -> anyhow::Result<()> {
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
    let label = format!("bench --broker {broker}");
    let report = spin_while(&label, || {
        if kafka {
            run_kafka_bench(&options)
        } else {
            run_broker_bench(&options)
        }
    })?;
    let title = format!("tidewater bench --broker {broker}: pipeline against a raw client loop");
    print_report(&title, &report, args.json)
}

/// `--http`: submissions through the HTTP API against an echo endpoint.
fn http_bench(args: &BenchArgs) -> anyhow::Result<()> {
    let options = HttpBenchOptions {
        duration: std::time::Duration::from_secs(args.seconds.max(1)),
        connections: args.connections.max(1),
        batch: args.batch.max(1),
        workers: args.workers,
        rounds: args.rounds.max(1),
        with_auth: args.auth,
    };
    let label = format!("bench --http --batch {}", options.batch);
    let report = spin_while(&label, || run_http_bench(&options))?;
    let title = format!(
        "tidewater bench --http: POST /v1/tasks ({} per request) against an axum echo endpoint",
        options.batch
    );
    print_report(&title, &report, args.json)
}

/// `--listing`: `GET /v1/tasks` page times at two store sizes.
fn listing_bench(args: &BenchArgs) -> anyhow::Result<()> {
    let options = ListingBenchOptions {
        small: args.stored_small,
        large: args.stored_large,
        page: args.page.clamp(1, tidewater::api::listing::MAX_PAGE),
        pages: args.pages.max(1),
    };
    let label = format!(
        "bench --listing {} and {} stored",
        options.small, options.large
    );
    let report = spin_while(&label, || run_listing_bench(&options))?;
    let title = format!(
        "tidewater bench --listing: GET /v1/tasks pages of {} at {} and {} stored tasks",
        options.page, options.small, options.large
    );
    print_report(&title, &report, args.json)
}

/// Prints `report` as one JSON line (`json`) or as a table under `title`.
fn print_report(title: &str, report: &impl serde::Serialize, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", report_table(title, &serde_json::to_value(report)?));
    }
    Ok(())
}
