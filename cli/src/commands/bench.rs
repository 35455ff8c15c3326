//! `tidewater bench`: no-op tasks end to end through the pipeline in
//! process, or (with `--broker amqp|kafka`) through a real broker against a
//! raw client loop in the same run. The harnesses are the `tidewater-bench`
//! package's [`pipeline_bench`](tidewater_bench::pipeline_bench),
//! [`broker_bench`](tidewater_bench::broker_bench) and
//! [`kafka_bench`](tidewater_bench::kafka_bench).
//!
//! Progress shows on stderr while it runs; the report is an aligned table
//! on stdout, or one JSON line with `--json`.

use clap::Args;

use tidewater::config::StoreKind;
use tidewater_bench::broker_bench::{run_broker_bench, BrokerBenchOptions};
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
}

/// Runs the benchmark and prints its report.
pub fn execute(args: BenchArgs) -> anyhow::Result<()> {
    if let Some(broker) = args.broker.as_deref() {
        return broker_bench(broker, &args);
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

/// Prints `report` as one JSON line (`json`) or as a table under `title`.
fn print_report(title: &str, report: &impl serde::Serialize, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(report)?);
    } else {
        print!("{}", report_table(title, &serde_json::to_value(report)?));
    }
    Ok(())
}
