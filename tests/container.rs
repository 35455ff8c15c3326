//! The container image (`Dockerfile`): built from this checkout, it is
//! small (no toolchain, only the binary and its configs), runs as a
//! non-root user, reports healthy from `/healthz`, runs tasks, and drains
//! on `docker stop` (SIGTERM) so that a task running then finishes, and the
//! volume keeps it for the next start.
//!
//! Needs a Docker engine: `.ci/run` starts a private one
//! (`deploy/docker/daemon up`, which sets `DOCKER_HOST` and
//! `TIDEWATER_DOCKER`) and makes the base images from Debian's archive
//! (`deploy/docker/base-images`), as no registry is reachable here. Where
//! the engine cannot start on the machine, `.ci/run` says why in
//! `TIDEWATER_DOCKER_UNAVAILABLE` and this test reports that reason instead
//! of building.
//!
//! The image is built with `BINARY_FROM` naming an image that holds the
//! binary this test suite was built with (debug symbols stripped), so the
//! Dockerfile's compile stage is skipped; everything else is the
//! Dockerfile as users build it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{binary, free_port, Http};

/// The base image `deploy/docker/base-images` makes.
const RUNTIME_IMAGE: &str = "tidewater-base/debian:bookworm";
/// The runtime image's user, as the Dockerfile sets it.
const IMAGE_USER: &str = "10001:10001";
/// An upper bound on the runtime image: a Debian minbase (about 100 MB)
/// and the binary, nothing of the toolchain.
const MAX_IMAGE_BYTES: u64 = 400 << 20;

/// The docker CLI to use, or `None` (with the reason said) where no
/// engine runs.
fn docker() -> Option<String> {
    if let Ok(cli) = std::env::var("TIDEWATER_DOCKER") {
        assert!(
            std::env::var_os("DOCKER_HOST").is_some(),
            "TIDEWATER_DOCKER is set without DOCKER_HOST (eval \"$(deploy/docker/daemon up)\")"
        );
        return Some(cli);
    }
    match std::env::var("TIDEWATER_DOCKER_UNAVAILABLE") {
        Ok(reason) => eprintln!("container test not run: no Docker engine here: {reason}"),
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "under CI, .ci/run sets TIDEWATER_DOCKER (or TIDEWATER_DOCKER_UNAVAILABLE with the reason)"
            );
            eprintln!(
                "skipping: eval \"$(deploy/docker/daemon up)\" and run deploy/docker/base-images first"
            );
        }
    }
    None
}

/// Runs `docker ARGS`, returning its output whatever the exit status.
fn run(cli: &str, args: &[&str]) -> Output {
    Command::new(cli)
        .args(args)
        .env("DOCKER_BUILDKIT", "1")
        .output()
        .unwrap_or_else(|e| panic!("{cli} {args:?}: {e}"))
}

/// Runs `docker ARGS`, which must succeed; returns its trimmed stdout.
fn must(cli: &str, args: &[&str]) -> String {
    let out = run(cli, args);
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Removes the test's container and images however the test ends.
struct Cleanup {
    cli: String,
    container: String,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        run(&self.cli, &["rm", "-f", "-v", &self.container]);
        for image in &self.images {
            run(&self.cli, &["rmi", "-f", image]);
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli package sits in the repository")
        .to_path_buf()
}

/// Builds an image holding this suite's binary at `/out/tidewater`.
fn binary_image(cli: &str, tag: &str) {
    let context = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(context.path().join("out")).expect("mkdir");
    let stripped = context.path().join("out/tidewater");
    let status = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(binary())
        .arg(&stripped)
        .status()
        .expect("objcopy (binutils)");
    assert!(status.success(), "objcopy --strip-debug");
    std::fs::write(
        context.path().join("Dockerfile"),
        "FROM scratch\nCOPY out/tidewater /out/tidewater\n",
    )
    .expect("write Dockerfile");
    let dir = context.path().to_str().expect("utf-8 path");
    must(cli, &["build", "--network", "host", "-t", tag, dir]);
}

fn inspect(cli: &str, format: &str, object: &str) -> String {
    must(cli, &["inspect", "-f", format, object])
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {timeout:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn task_state(http: &Http, base: &str, id: &str) -> Option<serde_json::Value> {
    http.get(&format!("{base}/v1/tasks/{id}"))
        .filter(|(status, _)| *status == 200)
        .map(|(_, record)| record)
}

#[test]
fn the_image_is_small_non_root_healthy_and_drains_on_docker_stop() {
    let Some(cli) = docker() else { return };
    let suffix = format!("{}-{}", std::process::id(), free_port());
    let binary_tag = format!("tidewater-test/binary:{suffix}");
    let image = format!("tidewater-test/image:{suffix}");
    let container = format!("tidewater-test-{suffix}");
    let _cleanup = Cleanup {
        cli: cli.clone(),
        container: container.clone(),
        images: vec![image.clone(), binary_tag.clone()],
    };

    binary_image(&cli, &binary_tag);
    let root = repo_root();
    must(
        &cli,
        &[
            "build",
            "--network",
            "host",
            "--build-arg",
            &format!("BINARY_FROM={binary_tag}"),
            "--build-arg",
            &format!("RUNTIME_IMAGE={RUNTIME_IMAGE}"),
            // Not built (BINARY_FROM replaces its stage); named so that
            // nothing is looked up in a registry.
            "--build-arg",
            &format!("BUILD_IMAGE={RUNTIME_IMAGE}"),
            "-t",
            &image,
            root.to_str().expect("utf-8 path"),
        ],
    );

    // Small and non-root: the binary and configs on the base, no toolchain.
    assert_eq!(inspect(&cli, "{{.Config.User}}", &image), IMAGE_USER);
    let size: u64 = inspect(&cli, "{{.Size}}", &image)
        .parse()
        .expect("image size");
    assert!(size < MAX_IMAGE_BYTES, "image of {size} bytes");
    let toolchain = run(
        &cli,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "sh",
            &image,
            "-c",
            "command -v cargo rustc cc gcc; id -u; ls /etc/tidewater",
        ],
    );
    let listing = String::from_utf8_lossy(&toolchain.stdout).to_string();
    assert!(
        listing.starts_with("10001\n") && listing.contains("container.toml"),
        "no compiler, user 10001, the configs: {listing}"
    );
    eprintln!("image {image}: {size} bytes");

    // Started as users start it, on the host's network for the test.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("TIDEWATER__HTTP__LISTEN=\"127.0.0.1:{port}\"");
    let health_port = format!("TIDEWATER_HEALTH_PORT={port}");
    must(
        &cli,
        &[
            "run",
            "-d",
            "--name",
            &container,
            "--network",
            "host",
            "-e",
            &listen,
            "-e",
            &health_port,
            &image,
        ],
    );
    let http = Http::new();
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(60));
    assert_eq!(
        inspect(&cli, "{{.State.Running}}", &container),
        "true",
        "{}",
        must(&cli, &["logs", &container])
    );

    let (status, answer) = http.post(
        &format!("{base}/v1/tasks"),
        r#"{"id":"hello","kind":"command","payload":{"program":"echo","args":["from","the","image"]},"resources":{"cpu_milli":100}}"#,
    );
    assert_eq!(status, 202, "{answer}");
    wait_until("the command task", Duration::from_secs(30), || {
        task_state(&http, &base, "hello").is_some_and(|r| r["state"] == "succeeded")
    });
    let record = task_state(&http, &base, "hello").expect("record");
    assert_eq!(record["result"]["stdout"], "from the image\n", "{record}");

    // The image's HEALTHCHECK (bash /dev/tcp to /healthz) reports healthy.
    wait_until("HEALTHCHECK healthy", Duration::from_secs(60), || {
        inspect(&cli, "{{.State.Health.Status}}", &container) == "healthy"
    });

    // docker stop (SIGTERM) while a 3 s task runs: the drain lets it
    // finish, then the process exits 0, well inside the 30 s grace.
    let (status, answer) = http.post(
        &format!("{base}/v1/tasks"),
        r#"{"id":"long","kind":"sleep","payload":{"ms":3000},"resources":{"cpu_milli":100}}"#,
    );
    assert_eq!(status, 202, "{answer}");
    wait_until("the long task running", Duration::from_secs(20), || {
        task_state(&http, &base, "long").is_some_and(|r| r["state"] == "running")
    });
    let stopping = Instant::now();
    must(&cli, &["stop", "-t", "30", &container]);
    let stopped_after = stopping.elapsed();
    let logs = {
        let out = run(&cli, &["logs", &container]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    assert_eq!(
        inspect(&cli, "{{.State.ExitCode}}", &container),
        "0",
        "a clean exit on SIGTERM: {logs}"
    );
    assert!(
        stopped_after < Duration::from_secs(25),
        "stopped after {stopped_after:?}, not killed at the grace period: {logs}"
    );

    // The volume kept what the drain finished.
    must(&cli, &["start", &container]);
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(60));
    let long = task_state(&http, &base, "long").expect("the long task after the restart");
    assert_eq!(long["state"], "succeeded", "drained to completion: {long}");
    let hello = task_state(&http, &base, "hello").expect("the first task after the restart");
    assert_eq!(hello["state"], "succeeded", "{hello}");
}
