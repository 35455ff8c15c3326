//! `tidewater config ...`: configuration commands (`validate FILE`).

use std::path::PathBuf;

use clap::Subcommand;

use tidewater::Config;

/// A configuration command.
#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Parse and check a config file, and that the files it names
    /// (certificates, keys, the host file) can be read.
    Validate {
        /// The file.
        file: PathBuf,
    },
}

/// Runs the configuration command.
pub fn execute(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Validate { file } => {
            let config = Config::load(&file)?;
            config.check_files()?;
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
