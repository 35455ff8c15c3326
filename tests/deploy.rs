//! The Kubernetes manifests under `deploy/k8s/`: they validate against the
//! Kubernetes 1.37 schemas (kubernetes-validate, from PyPI: `.ci/run`
//! installs it and sets `TIDEWATER_KUBERNETES_VALIDATE`), and the config in
//! the ConfigMap is one the binary accepts, naming one cluster address per
//! StatefulSet replica.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::binary;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the cli package sits in the repository")
        .to_path_buf()
}

fn manifests() -> Vec<PathBuf> {
    let dir = repo_root().join("deploy/k8s");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/k8s")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn the_manifests_validate_against_the_kubernetes_schemas() {
    let validator = match std::env::var("TIDEWATER_KUBERNETES_VALIDATE") {
        Ok(path) => path,
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "TIDEWATER_KUBERNETES_VALIDATE is not set (.ci/run installs kubernetes-validate)"
            );
            eprintln!(
                "skipping: set TIDEWATER_KUBERNETES_VALIDATE to a kubernetes-validate executable"
            );
            return;
        }
    };
    let files = manifests();
    assert!(files.len() >= 3, "{files:?}");
    let out = Command::new(&validator)
        .args(["--strict", "--kubernetes-version", "1.37"])
        .args(&files)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    for kind in [
        "statefulset/tidewater",
        "service/tidewater",
        "configmap/tidewater-config",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}")),
            "{kind}: {text}"
        );
    }
}

#[test]
fn the_configmap_holds_a_valid_config_with_an_address_per_replica() {
    let root = repo_root();
    let configmap =
        std::fs::read_to_string(root.join("deploy/k8s/configmap.yaml")).expect("configmap");
    // The config is the indented block under `tidewater.toml: |`.
    let mut lines = configmap
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("tidewater.toml: |"));
    lines.next();
    let body: Vec<&str> = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect();
    let text = body.join("\n");
    let config: toml::Value = toml::from_str(&text).expect("the ConfigMap's TOML");
    let addresses = config["cluster"]["addresses"]
        .as_array()
        .expect("cluster.addresses")
        .len();

    let statefulset =
        std::fs::read_to_string(root.join("deploy/k8s/statefulset.yaml")).expect("statefulset");
    let replicas: usize = statefulset
        .lines()
        .find_map(|l| l.trim().strip_prefix("replicas:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("replicas");
    assert_eq!(addresses, replicas, "one cluster address per replica");

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("tidewater.toml");
    std::fs::write(&path, &text).expect("write");
    // The JWT key is the pod's Secret, not a file here: validation says so
    // by its key, and `--no-file-checks` validates the rest.
    let out = Command::new(binary())
        .args(["config", "validate"])
        .arg(&path)
        .env("HOSTNAME", "tidewater-2")
        .output()
        .expect("config validate");
    assert!(!out.status.success(), "the key file is not on this machine");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("`auth.jwt.key_file`: cannot read /etc/tidewater/jwt/public.pem"),
        "{stderr}"
    );
    let out = Command::new(binary())
        .args(["config", "validate", "--no-file-checks"])
        .arg(&path)
        .env("HOSTNAME", "tidewater-2")
        .output()
        .expect("config validate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
