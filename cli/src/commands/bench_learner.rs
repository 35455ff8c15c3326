//! `tidewater bench-learner`: the learner's training throughput on
//! synthetic experiences, through the `tidewater-bench` package's
//! [`learner_bench`](tidewater_bench::learner_bench).

use clap::Args;

use tidewater_bench::learner_bench::{bench_learner, LearnerBenchOptions};

/// Arguments of `tidewater bench-learner`.
#[derive(Args)]
pub struct BenchLearnerArgs {
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

/// Trains on synthetic samples and prints the throughput.
pub fn execute(args: BenchLearnerArgs) -> anyhow::Result<()> {
    let report = bench_learner(&LearnerBenchOptions {
        model: args.model,
        hidden: args.hidden,
        samples: args.samples,
        batch_size: args.batch_size,
        threads: args.threads,
        feature_dim: args.feature_dim,
        optimizer: args.optimizer,
        device: args.device,
        host_batches: args.host_batches,
    })?;
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
