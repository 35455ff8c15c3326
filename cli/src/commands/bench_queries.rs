//! `tidewater bench-queries`: continuous metric queries' updates per
//! second, freshness and memory, through the `tidewater-bench` package's
//! [`query_bench`](tidewater_bench::query_bench); prints one JSON line.

use clap::Args;

use tidewater_bench::query_bench::{run_query_bench, QueryBenchOptions};

/// Arguments of `tidewater bench-queries`.
#[derive(Args)]
pub struct BenchQueriesArgs {
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

/// Runs the query benchmark and prints its report.
pub fn execute(args: BenchQueriesArgs) -> anyhow::Result<()> {
    let report = run_query_bench(&QueryBenchOptions {
        events: args.events,
        workers: args.workers,
        events_per_epoch: args.events_per_epoch,
        window_ms: args.window_ms,
        rate: args.rate,
        epoch_ms: args.epoch_ms,
    })
    .map_err(anyhow::Error::msg)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
