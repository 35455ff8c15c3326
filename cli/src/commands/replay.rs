//! `tidewater replay`: a trace through the schedulers, via the
//! `tidewater-bench` package. By default the openb GPU cluster trace through
//! a placement policy to saturation ([`openb`](tidewater_bench::openb),
//! over parallel shards with [`sharded`](tidewater_bench::sharded)); with
//! `--swf`, a batch log through FCFS, user-estimate or learned ordering
//! ([`swf`](tidewater_bench::swf)).

use std::path::{Path, PathBuf};

use clap::Args;

use tidewater_bench::{openb, sharded, swf};

/// Arguments of `tidewater replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// A Standard Workload Format log to simulate instead of the openb trace.
    #[arg(long)]
    swf: Option<PathBuf>,
    /// openb node list (CSV).
    #[arg(
        long,
        default_value = "../shared/data/openb/openb_node_list_all_node.csv"
    )]
    nodes: PathBuf,
    /// openb pod list (CSV).
    #[arg(
        long,
        default_value = "../shared/data/openb/openb_pod_list_default.csv"
    )]
    pods: PathBuf,
    /// openb: first_fit, best_fit, spread, dot_product, random_fit, fgd;
    /// SWF: fcfs, user-estimate, learned, user-estimate-sjbf, learned-sjbf.
    #[arg(long, default_value = "fgd")]
    policy: String,
    /// Random seed of the first run.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Independent runs to average.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Resize the cluster to this many nodes by cycling through the node
    /// list (for measuring how placement cost grows with cluster size).
    #[arg(long)]
    cluster_size: Option<usize>,
    /// Split the cluster over this many shards placing in parallel, one
    /// thread each, exchanging capacity summaries every epoch as the live
    /// coordinator does.
    #[arg(long, default_value_t = 1)]
    shards: usize,
    /// Print one JSON line.
    #[arg(long)]
    json: bool,
}

/// Replays the trace and prints the report.
pub fn execute(args: ReplayArgs) -> anyhow::Result<()> {
    match &args.swf {
        Some(swf) => replay_swf(swf, &args),
        None => replay_openb(&args),
    }
}

/// `--swf FILE`: the batch log under one ordering policy.
fn replay_swf(path: &Path, args: &ReplayArgs) -> anyhow::Result<()> {
    let report = swf::replay_swf(path, &args.policy)?;
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: mean wait {:.0} s, mean bounded slowdown {:.2}, utilization {:.3} ({} jobs)",
            report.policy,
            report.mean_wait_s,
            report.mean_bounded_slowdown,
            report.utilization,
            report.jobs
        );
    }
    Ok(())
}

/// The openb cluster trace under one placement policy.
fn replay_openb(args: &ReplayArgs) -> anyhow::Result<()> {
    let mut nodes = openb::read_nodes(&args.nodes)?;
    if let Some(size) = args.cluster_size {
        nodes = openb::resize_cluster(&nodes, size);
    }
    let pods = openb::read_pods(&args.pods)?;
    let report = if args.shards > 1 {
        sharded::replay_sharded(
            &nodes,
            &pods,
            &args.policy,
            args.seed,
            args.runs,
            args.shards,
        )?
    } else {
        openb::replay(&nodes, &pods, &args.policy, args.seed, args.runs)?
    };
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "{}: {:.1}% of GPU capacity unallocated at saturation, {:.0} placements/s ({} nodes, {} GPUs, {} runs)",
            report.policy,
            100.0 * report.unallocated_gpu_share_at_saturation,
            report.placements_per_sec,
            report.nodes,
            report.gpus,
            report.runs
        );
    }
    Ok(())
}
