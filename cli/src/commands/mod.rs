//! The subcommands, one module each. [`Command`] is what clap parses;
//! [`Command::execute`] hands each variant's arguments to its module's
//! `execute`.

mod agent;
mod api_client;
mod bench;
mod bench_learner;
mod bench_queries;
mod cancel;
mod config;
mod demo;
mod lineage;
mod peer_loss;
mod progress;
mod query;
mod replay;
mod run;
mod submit;
mod table;
mod token;

use clap::Subcommand;

/// A `tidewater` subcommand and its arguments.
#[derive(Subcommand)]
pub enum Command {
    /// Run the pipeline with a config; serves until Ctrl-C (or until the
    /// input is drained with --exit-when-done).
    Run(run::RunArgs),
    /// Run the pipeline on a built-in workload, show progress and a summary.
    Demo(demo::DemoArgs),
    /// Submit tasks (JSON object, array, or JSON lines) to a running pipeline's HTTP API.
    Submit(submit::SubmitArgs),
    /// Cancel a task on a running pipeline (HTTP `DELETE /v1/tasks/{id}`).
    Cancel(cancel::CancelArgs),
    /// Print a continuous query's latest result from a running pipeline
    /// (HTTP `GET /v1/queries/{name}`); without a name, every query's.
    Query(query::QueryArgs),
    /// Ask the lineage graph (HTTP `GET /v1/lineage/...`): a task's lineage,
    /// or what an agent or executor ran and which of that failed.
    Lineage(lineage::LineageArgs),
    /// Benchmark no-op tasks end to end.
    Bench(bench::BenchArgs),
    /// Benchmark continuous metric queries: updates/s, freshness, memory.
    BenchQueries(bench_queries::BenchQueriesArgs),
    /// Replay a trace: an openb cluster through a placement policy, or (with
    /// --swf) a batch log through fcfs, user-estimate or learned scheduling.
    Replay(replay::ReplayArgs),
    /// Run a remote executor agent that joins a pipeline over RabbitMQ.
    Agent(agent::AgentArgs),
    /// Measure the learner's training throughput (samples per second) on
    /// synthetic experiences, on the CPU.
    BenchLearner(bench_learner::BenchLearnerArgs),
    /// API tokens: create, list, revoke (through the API, or with
    /// --config on the store directly).
    Token(token::TokenArgs),
    /// Configuration commands.
    Config {
        #[command(subcommand)]
        command: config::ConfigCommand,
    },
}

impl Command {
    /// Runs the subcommand.
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            Command::Run(args) => run::execute(args),
            Command::Demo(args) => demo::execute(args),
            Command::Lineage(args) => lineage::execute(args),
            Command::Submit(args) => submit::execute(args),
            Command::Cancel(args) => cancel::execute(args),
            Command::Query(args) => query::execute(args),
            Command::Bench(args) => bench::execute(args),
            Command::BenchQueries(args) => bench_queries::execute(args),
            Command::Replay(args) => replay::execute(args),
            Command::Agent(args) => agent::execute(args),
            Command::BenchLearner(args) => bench_learner::execute(args),
            Command::Token(args) => token::execute(args),
            Command::Config { command } => config::execute(command),
        }
    }
}
