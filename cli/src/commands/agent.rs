//! `tidewater agent`: a remote executor that joins a pipeline over
//! RabbitMQ (`--broker`: heartbeats through the control exchange, work
//! through its queue) or over the pipeline's HTTP API (`--http`: joins,
//! heartbeats, claims its work and reports outcomes by HTTP), and runs the
//! tasks placed on it with the built-in handlers, until Ctrl-C; prints its
//! summary as one JSON line.

use std::sync::Arc;

use clap::Args;

use tidewater::agent::{parse_capacity, run_agent, AgentOptions, AmqpTlsConfig};

use tidewater::agent_http::{run_http_agent, HttpAgentOptions};
use tidewater::config::HandlersConfig;
use tidewater::HandlerRegistry;

/// Arguments of `tidewater agent`.
#[derive(Args)]
pub struct AgentArgs {
    /// AMQP URI of the broker the pipeline uses.
    #[arg(long, env = "TIDEWATER_AMQP_URL", required_unless_present = "http")]
    broker: Option<String>,
    /// Base URL of the pipeline's HTTP API: join and pull work over HTTP
    /// instead of the broker (it wins over `--broker` and
    /// `TIDEWATER_AMQP_URL`).
    #[arg(long)]
    http: Option<String>,
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
    /// Most assignments delivered (broker) or held (HTTP) at once.
    #[arg(long, default_value_t = 256)]
    prefetch: u16,
    /// Programs the `command` handler may run (repeatable).
    #[arg(long = "allow-command")]
    allow_command: Vec<String>,
    /// This agent's token: over the broker, the one listed in the
    /// pipeline's `rabbitmq.agent_tokens` under its id; over HTTP, an API
    /// token with role `agent` (`tidewater token create --role agent`).
    #[arg(long, env = "TIDEWATER_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A PEM file of the authority that signed the server's certificate:
    /// the pipeline's, with --http on an `https://` URL; the broker's, with
    /// --broker on an `amqps://` URL (trusted besides the system's roots).
    #[arg(long, env = "TIDEWATER_CA_CERT")]
    ca_cert: Option<std::path::PathBuf>,
}

/// Runs the agent until Ctrl-C.
pub fn execute(args: AgentArgs) -> anyhow::Result<()> {
    let spec = parse_capacity(&args.id, &args.capacity, &args.gpu_model)?;
    let handlers = HandlerRegistry::with_builtins(
        &HandlersConfig {
            command_allowlist: args.allow_command.clone(),
            ..HandlersConfig::default()
        },
        tidewater::Config::default().limits.max_result_bytes,
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let handlers = Arc::new(handlers);
    if let Some(ca_cert) = &args.ca_cert {
        std::fs::metadata(ca_cert)
            .map_err(|e| anyhow::anyhow!("--ca-cert {}: {e}", ca_cert.display()))?;
    }
    if args.http.is_some() {
        // Fail here, with the reason, on a bad token or CA file.
        tidewater::agent_http::api_client(args.token.as_deref(), args.ca_cert.as_deref())
            .map_err(anyhow::Error::msg)?;
    }
    let summary = match (args.http, args.broker) {
        (Some(url), _) => runtime.block_on(run_http_agent(
            HttpAgentOptions {
                url,
                spec,
                heartbeat_ms: args.heartbeat_ms,
                ttl_ms: args.ttl_ms,
                max_running: usize::from(args.prefetch.max(1)),
                token: args.token,
                ca_cert: args.ca_cert,
            },
            handlers,
            ctrl_c,
        )),
        (None, Some(url)) => runtime.block_on(run_agent(
            AgentOptions {
                url,
                spec,
                heartbeat_ms: args.heartbeat_ms,
                ttl_ms: args.ttl_ms,
                control_exchange: args.control_exchange,
                assignments_exchange: args.assignments_exchange,
                prefetch: args.prefetch,
                credential: args.token,
                tls: AmqpTlsConfig {
                    ca_file: args.ca_cert,
                    ..AmqpTlsConfig::default()
                },
            },
            handlers,
            ctrl_c,
        )),
        (None, None) => anyhow::bail!("give --broker or --http"),
    };
    println!("{}", serde_json::to_string(&summary)?);
    if let Some(reason) = summary.refused {
        anyhow::bail!("the pipeline refused this agent: {reason}");
    }
    Ok(())
}
