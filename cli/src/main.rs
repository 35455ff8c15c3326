//! The `tidewater` command: run the pipeline, a demo, benchmarks, replays,
//! submit, cancel and query tasks on a running pipeline, run a remote
//! executor agent, validate configs.
//!
//! This file parses the command line and sets up logging; each subcommand
//! is a module of [`commands`], holding its arguments and what it does. The
//! engine itself is the `tidewater` library; the benchmarks and replays are
//! the `tidewater-bench` package.

mod commands;

use clap::Parser;

use commands::Command;

/// Tidewater: a streaming dataflow engine for multi-agent task systems.
#[derive(Parser)]
#[command(name = "tidewater", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    Cli::parse().command.execute()
}
