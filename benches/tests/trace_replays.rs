//! The replays on the real traces in `../shared/data` (beside the
//! repository, as in CI): the fragmentation-aware policy leaves no more GPU
//! capacity unallocated than best-fit, and EASY backfilling beats FCFS.

use std::path::PathBuf;

use tidewater_bench::{openb, sharded, swf};

fn data(relative: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/data")
        .join(relative);
    assert!(
        path.exists(),
        "{} is missing: the shared data must sit beside the repository",
        path.display()
    );
    path
}

#[test]
fn fgd_leaves_no_more_gpu_capacity_unallocated_than_best_fit() {
    let nodes = openb::read_nodes(&data("openb/openb_node_list_all_node.csv")).expect("nodes");
    let pods = openb::read_pods(&data("openb/openb_pod_list_default.csv")).expect("pods");
    assert_eq!((nodes.len(), pods.len()), (1523, 8152));
    let cluster = openb::resize_cluster(&nodes, 300);
    let best_fit = openb::replay(&cluster, &pods, "best_fit", 7, 2).expect("best_fit");
    let fgd = openb::replay(&cluster, &pods, "fgd", 7, 2).expect("fgd");
    assert!(
        fgd.unallocated_gpu_share_at_saturation <= best_fit.unallocated_gpu_share_at_saturation,
        "fgd {} vs best_fit {}",
        fgd.unallocated_gpu_share_at_saturation,
        best_fit.unallocated_gpu_share_at_saturation
    );
    assert!(
        fgd.curve.len() > 10
            && fgd
                .curve
                .windows(2)
                .all(|w| w[0].allocated <= w[1].allocated)
    );
}

/// The default pod list rewritten with GPU type constraints on a quarter of
/// the GPU pods and whole multi-GPU requests on a third of the rest, like
/// the paper's `gpuspec` and `multigpu` variants.
fn typed_multi_gpu_variant(dir: &std::path::Path) -> PathBuf {
    let text = std::fs::read_to_string(data("openb/openb_pod_list_default.csv")).expect("pods");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let columns: Vec<&str> = header.split(',').collect();
    let at = |name: &str| columns.iter().position(|c| *c == name).expect(name);
    let (num_gpu, gpu_milli, gpu_spec) = (at("num_gpu"), at("gpu_milli"), at("gpu_spec"));
    let mut out = vec![header.to_string()];
    for (i, line) in lines.enumerate() {
        let mut fields: Vec<String> = line.split(',').map(str::to_string).collect();
        if fields[num_gpu] != "0" {
            match i % 12 {
                0..=2 => fields[gpu_spec] = "V100M16|V100M32|G3".into(),
                3..=5 => fields[gpu_spec] = "T4".into(),
                6 | 7 => {
                    fields[num_gpu] = ["2", "4", "8"][i % 3].into();
                    fields[gpu_milli] = "1000".into();
                }
                _ => {}
            }
        }
        out.push(fields.join(","));
    }
    let path = dir.join("openb_pod_list_typed_multigpu.csv");
    std::fs::write(&path, out.join("\n")).expect("write variant");
    path
}

#[test]
fn pod_lists_with_gpu_types_and_multi_gpu_pods_replay_on_one_and_two_shards() {
    let dir = std::env::temp_dir().join(format!("tidewater-openb-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pods = openb::read_pods(&typed_multi_gpu_variant(&dir)).expect("variant pods");
    assert!(pods.iter().any(|p| p.gpu_models.len() == 3));
    assert!(pods
        .iter()
        .any(|p| p.gpu == tidewater_operators::model::GpuRequest::Whole(8)));
    let nodes = openb::read_nodes(&data("openb/openb_node_list_all_node.csv")).expect("nodes");
    let cluster = openb::resize_cluster(&nodes, 400);
    for policy in ["best_fit", "fgd"] {
        let one = openb::replay(&cluster, &pods, policy, 11, 2).expect("replay");
        let two = sharded::replay_sharded(&cluster, &pods, policy, 11, 2, 2).expect("sharded");
        for report in [&one, &two] {
            assert!(report.placed > 0.0 && report.placed <= report.submitted);
            let share = report.unallocated_gpu_share_at_saturation;
            assert!((0.0..1.0).contains(&share), "{policy}: {share}");
        }
        let gap = (one.unallocated_gpu_share_at_saturation
            - two.unallocated_gpu_share_at_saturation)
            .abs();
        assert!(
            gap < 0.02,
            "{policy}: 1 shard {} vs 2 shards {}",
            one.unallocated_gpu_share_at_saturation,
            two.unallocated_gpu_share_at_saturation
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn easy_backfilling_beats_fcfs_on_hpc2n() {
    let workload = swf::read_swf(&data("swf/hpc2n.swf")).expect("swf");
    assert_eq!(workload.processors, 240);
    let fcfs = swf::simulate(&workload, "fcfs").expect("fcfs");
    let easy = swf::simulate(&workload, "user-estimate").expect("easy");
    let learned = swf::simulate(&workload, "learned").expect("learned");
    assert!(easy.mean_bounded_slowdown < fcfs.mean_bounded_slowdown);
    assert!(learned.mean_bounded_slowdown < fcfs.mean_bounded_slowdown);
    assert_eq!(
        learned.trained_samples,
        Some(workload.jobs.len() as u64 - 1)
    );
    assert!(swf::simulate(&workload, "sjf").is_err());
}

#[test]
fn malformed_trace_rows_are_reported_with_their_line() {
    let dir = std::env::temp_dir().join(format!("openb-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let pods = dir.join("pods.csv");
    std::fs::write(&pods, "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\np0,1000,100,1,500,\np1,1000,100,2,500,\n")
        .expect("write");
    let err = openb::read_pods(&pods).expect_err("fractional multi-GPU");
    assert!(err.to_string().contains("line 3"), "{err}");
    std::fs::write(
        &pods,
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\np0,lots,100,1,500,A10|T4\n",
    )
    .expect("write");
    assert!(openb::read_pods(&pods)
        .expect_err("bad number")
        .to_string()
        .contains("line 2"));
    std::fs::write(
        &pods,
        "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\np0,1000,100,1,500,A10|T4\n",
    )
    .expect("write");
    let parsed = openb::read_pods(&pods).expect("typed pod");
    assert_eq!(parsed[0].gpu_models.len(), 2);
}
