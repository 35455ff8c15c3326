//! The `tidewater` command as a person uses it, through the real binary:
//! `submit FILE.jsonl` with bad lines (reported by line number, the good
//! ones accepted and waited for), `replay` started from another directory
//! (the traces found by searching upward, or the flag to pass named),
//! `bench` printing a table, and progress on stderr never mixing into
//! `--json` stdout.

use std::path::Path;
use std::process::{Child, Command, Output};
use std::time::Duration;

use crate::common::{binary, free_port, spawn_run, Http};

/// Kills the spawned pipeline when the test ends, pass or fail.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `tidewater ARGS` in `dir`, without the data-folder variable unless
/// `env` sets it.
fn tidewater(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(binary())
        .args(args)
        .current_dir(dir)
        .env_remove("TIDEWATER_DATA_DIR")
        .envs(env.iter().copied())
        .output()
        .expect("run tidewater")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every non-empty stdout line is JSON (nothing else mixed in).
fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("stdout line {l:?} is not JSON: {e}"))
        })
        .collect()
}

#[test]
fn submit_jsonl_reports_bad_lines_by_number_and_runs_the_good_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config = dir.path().join("cli.toml");
    std::fs::write(
        &config,
        format!(
            "workers = 1\n[http]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n[store]\nkind = \"memory\"\n"
        ),
    )
    .expect("write config");
    let _server = Server(spawn_run(dir.path(), &config, &[], "run.log"));
    let base = format!("http://127.0.0.1:{port}");
    Http::new().wait_ready(&format!("{base}/healthz"), Duration::from_secs(60));

    let tasks = dir.path().join("tasks.jsonl");
    std::fs::write(
        &tasks,
        [
            r#"{"id":"good-1","kind":"noop"}"#,
            r#"{"id":"broken","kind":"noop""#,
            "",
            r#"{"id":"good-2","kind":"noop"}"#,
            r#"[1,2]"#,
            r#"{"id":"unknown-kind","kind":"no-such-kind"}"#,
            r#"{"id":"good-3","kind":"noop"}"#,
        ]
        .join("\n"),
    )
    .expect("write tasks");
    let out = tidewater(
        dir.path(),
        &["submit", "--url", &base, "tasks.jsonl", "--wait"],
        &[],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success(),
        "bad lines must fail the command: {stderr}"
    );
    assert!(stderr.contains("tasks.jsonl:2: bad line"), "{stderr}");
    assert!(stderr.contains("tasks.jsonl:5: bad line"), "{stderr}");
    assert!(
        stderr.contains("tasks.jsonl:6: refused by the API"),
        "{stderr}"
    );
    assert!(!stderr.contains("tasks.jsonl:1:"), "{stderr}");
    assert!(
        stderr.contains("waiting:"),
        "progress of --wait on stderr: {stderr}"
    );

    // stdout: the batch answer, then one final record per good task.
    let lines = json_lines(&stdout);
    let answer = &lines[0];
    let mut accepted: Vec<&str> = answer["accepted"]
        .as_array()
        .expect("accepted")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    accepted.sort_unstable();
    assert_eq!(accepted, ["good-1", "good-2", "good-3"]);
    let finals: Vec<(&str, &str)> = lines[1..]
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap_or(""),
                r["state"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(finals.len(), 3, "{stdout}");
    assert!(
        finals.iter().all(|(_, state)| *state == "succeeded"),
        "{stdout}"
    );

    // A file of good lines only succeeds.
    std::fs::write(
        &tasks,
        "{\"id\":\"good-4\",\"kind\":\"noop\"}\n{\"id\":\"good-5\",\"kind\":\"noop\"}\n",
    )
    .expect("write tasks");
    let out = tidewater(dir.path(), &["submit", "--url", &base, "tasks.jsonl"], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A small openb trace (the first lines of the shipped one) under
/// `root/shared/data/openb`.
fn small_trace(root: &Path) {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data/openb");
    let openb = root.join("shared/data/openb");
    std::fs::create_dir_all(&openb).expect("trace folder");
    for (file, lines) in [
        ("openb_node_list_all_node.csv", 40),
        ("openb_pod_list_default.csv", 400),
    ] {
        let text = std::fs::read_to_string(shipped.join(file))
            .unwrap_or_else(|e| panic!("the shipped trace {file} beside the repository: {e}"));
        // The header, then rows; for nodes only those with GPUs (the first
        // rows of the shipped list have none, and a replay needs some).
        let mut rows = text.lines();
        let header = rows.next().expect("a header line");
        let gpu_column = header.split(',').position(|c| c == "gpu");
        let head: Vec<&str> = std::iter::once(header)
            .chain(rows.filter(|row| {
                match (file.contains("node"), gpu_column) {
                    (true, Some(column)) => row
                        .split(',')
                        .nth(column)
                        .and_then(|g| g.parse::<f64>().ok())
                        .is_some_and(|g| g > 0.0),
                    _ => true,
                }
            }))
            .take(lines)
            .collect();
        std::fs::write(openb.join(file), head.join("\n") + "\n").expect("write trace");
    }
}

#[test]
fn replay_finds_the_traces_from_a_folder_below_them_and_keeps_json_clean() {
    let root = tempfile::tempdir().expect("temp dir");
    small_trace(root.path());
    let deep = root.path().join("work/somewhere/deeper");
    std::fs::create_dir_all(&deep).expect("deep folder");

    let out = tidewater(&deep, &["replay", "--runs", "1", "--json"], &[]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let lines = json_lines(&stdout);
    assert_eq!(lines.len(), 1, "one JSON line on stdout: {stdout}");
    assert_eq!(lines[0]["nodes"], 39, "the small trace was read: {stdout}");
    assert!(
        stderr.contains("replay fgd"),
        "progress on stderr: {stderr}"
    );

    // The data folder given by the environment, from a folder with no
    // trace above it.
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let data = root.path().join("shared/data");
    let out = tidewater(
        elsewhere.path(),
        &["replay", "--runs", "1"],
        &[("TIDEWATER_DATA_DIR", data.to_str().expect("utf-8 path"))],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("fgd:"), "{}", text(&out.stdout));

    // A data folder without the trace: the error says which flag to pass.
    let out = tidewater(
        elsewhere.path(),
        &[
            "replay",
            "--data-dir",
            elsewhere.path().to_str().expect("utf-8 path"),
        ],
        &[],
    );
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--data-dir") && stderr.contains("--nodes"),
        "{stderr}"
    );
}

#[test]
fn bench_prints_a_table_and_json_stays_one_clean_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = tidewater(
        dir.path(),
        &["bench", "--tasks", "2000", "--workers", "1"],
        &[],
    );
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    let header = stdout
        .lines()
        .find(|l| l.starts_with("metric"))
        .unwrap_or_else(|| panic!("a table header: {stdout}"));
    let column = header.find("value").expect("value column");
    let row = stdout
        .lines()
        .find(|l| l.starts_with("tasks_per_sec"))
        .unwrap_or_else(|| panic!("a tasks_per_sec row: {stdout}"));
    assert!(row[column..].trim().parse::<f64>().is_ok(), "{row}");
    assert!(
        stderr.contains("bench 2000 tasks"),
        "progress on stderr: {stderr}"
    );

    let out = tidewater(
        dir.path(),
        &["bench", "--tasks", "2000", "--workers", "1", "--json"],
        &[],
    );
    let lines = json_lines(&text(&out.stdout));
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["tasks"], 2000);
    assert!(text(&out.stderr).contains("bench 2000 tasks"));
}
