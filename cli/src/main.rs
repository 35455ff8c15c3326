//! The `tidewater` command: run the pipeline, a demo, benchmarks, replays,
//! submit, cancel and query tasks on a running pipeline, run a remote
//! executor agent, validate configs.
//!
//! This file parses the command line and sets up logging ([`logging`]); each subcommand
//! is a module of [`commands`], holding its arguments and what it does. The
//! engine itself is the `tidewater` library; the benchmarks and replays are
//! the `tidewater-bench` package.

mod commands;
mod logging;

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
    let cli = Cli::parse();
    // `run` installs it once its config says whether spans are exported.
    if !matches!(cli.command, Command::Run(_)) {
        logging::init(None);
    }
    cli.command.execute()
}
