//! `tidewater replay`: a trace through the schedulers, via the
//! `tidewater-bench` package. By default the openb GPU cluster trace through
//! a placement policy to saturation ([`openb`](tidewater_bench::openb),
//! over parallel shards with [`sharded`](tidewater_bench::sharded)); with
//! `--swf`, a batch log through FCFS, user-estimate or learned ordering
//! ([`swf`](tidewater_bench::swf)).
//!
//! The openb trace ships in `shared/data/openb` beside the repository. It is
//! found wherever the command starts: `--nodes`/`--pods` when given, else
//! `--data-dir` (or `$TIDEWATER_DATA_DIR`), else the first `shared/data`
//! (or `data`) folder holding the trace in the working directory, the
//! executable's folder, or any folder above either; when none does, the
//! error names every place looked at and the flags to pass.

use std::path::{Path, PathBuf};

use anyhow::bail;
use clap::Args;

use super::progress::spin_while;

use tidewater_bench::{openb, sharded, swf};

/// Arguments of `tidewater replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// A Standard Workload Format log to simulate instead of the openb trace.
    #[arg(long)]
    swf: Option<PathBuf>,
    /// openb node list (CSV); default: `openb/openb_node_list_all_node.csv`
    /// in the data folder.
    #[arg(long)]
    nodes: Option<PathBuf>,
    /// openb pod list (CSV); default: `openb/openb_pod_list_default.csv` in
    /// the data folder.
    #[arg(long)]
    pods: Option<PathBuf>,
    /// The folder holding the shipped traces (`openb/...`); default: found
    /// by searching upward from the working directory and the executable.
    #[arg(long, env = "TIDEWATER_DATA_DIR")]
    data_dir: Option<PathBuf>,
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
    let report = spin_while(&format!("replay {}", args.policy), || {
        swf::replay_swf(path, &args.policy)
    })?;
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
    let (nodes_path, pods_path) = openb_paths(args)?;
    let mut nodes = openb::read_nodes(&nodes_path)?;
    if let Some(size) = args.cluster_size {
        nodes = openb::resize_cluster(&nodes, size);
    }
    let pods = openb::read_pods(&pods_path)?;
    let label = format!("replay {} ({} runs)", args.policy, args.runs);
    let report = spin_while(&label, || {
        if args.shards > 1 {
            sharded::replay_sharded(
                &nodes,
                &pods,
                &args.policy,
                args.seed,
                args.runs,
                args.shards,
            )
        } else {
            openb::replay(&nodes, &pods, &args.policy, args.seed, args.runs)
        }
    })?;
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

/// The openb trace inside a data folder.
const NODES_FILE: &str = "openb/openb_node_list_all_node.csv";
const PODS_FILE: &str = "openb/openb_pod_list_default.csv";

/// The node and pod lists to read: the flags when given, else the trace in
/// the data folder (given or found).
fn openb_paths(args: &ReplayArgs) -> anyhow::Result<(PathBuf, PathBuf)> {
    if let (Some(nodes), Some(pods)) = (&args.nodes, &args.pods) {
        return Ok((nodes.clone(), pods.clone()));
    }
    let data_dir = match &args.data_dir {
        Some(dir) => {
            if !dir.join(NODES_FILE).is_file() {
                bail!(
                    "the data folder {} has no {NODES_FILE}; pass --data-dir (or $TIDEWATER_DATA_DIR) naming the folder that holds openb/, or --nodes and --pods",
                    dir.display()
                );
            }
            dir.clone()
        }
        None => find_data_dir()?,
    };
    Ok((
        args.nodes
            .clone()
            .unwrap_or_else(|| data_dir.join(NODES_FILE)),
        args.pods
            .clone()
            .unwrap_or_else(|| data_dir.join(PODS_FILE)),
    ))
}

/// The first data folder holding the openb trace, searching the working
/// directory, the executable's folder and every folder above them for
/// `shared/data` and `data`; the error lists the places looked at.
fn find_data_dir() -> anyhow::Result<PathBuf> {
    let mut starts = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.canonicalize().ok())
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        starts.push(exe_dir);
    }
    let mut looked = Vec::new();
    for start in &starts {
        for folder in start.ancestors() {
            for candidate in [folder.join("shared/data"), folder.join("data")] {
                if candidate.join(NODES_FILE).is_file() {
                    return Ok(candidate);
                }
            }
            looked.push(folder.display().to_string());
        }
    }
    bail!(
        "the openb trace ({NODES_FILE}) is in no shared/data or data folder in or above: {}; pass --data-dir DIR (or set TIDEWATER_DATA_DIR=DIR) naming the folder that holds openb/, or --nodes FILE --pods FILE",
        looked.join(", ")
    )
}
