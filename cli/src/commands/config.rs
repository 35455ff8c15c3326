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
        /// Skip checking that the files the config names exist here: for a
        /// config meant for another machine (a Kubernetes ConfigMap whose
        /// keys come from a Secret mounted in the pod).
        #[arg(long)]
        no_file_checks: bool,
    },
}

/// Runs the configuration command.
pub fn execute(command: ConfigCommand) -> anyhow::Result<()> {
    match command {
        ConfigCommand::Validate {
            file,
            no_file_checks,
        } => {
            let config = Config::load(&file)?;
            if !no_file_checks {
                config.check_files()?;
            }
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
