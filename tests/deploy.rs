//! Deployment files: the Kubernetes manifests (deploy/k8s/) validate against
//! the Kubernetes OpenAPI schemas (with `kubernetes-validate`, offline, from
//! the venv `tests/services/up` makes; `TIDEWATER_KUBERNETES_VALIDATE`), and
//! agree with each other on the cluster size and the drain budget; the
//! container entrypoint (deploy/entrypoint) writes the cluster's hostfile
//! from the pod's ordinal before it starts `tidewater run`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::binary;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the repository root")
        .to_path_buf()
}

fn manifest() -> PathBuf {
    repository().join("deploy/k8s/tidewater.yaml")
}

/// The validator, from the environment; under CI its absence fails.
fn validator() -> Option<String> {
    match std::env::var("TIDEWATER_KUBERNETES_VALIDATE") {
        Ok(path) if !path.is_empty() => Some(path),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "TIDEWATER_KUBERNETES_VALIDATE is not set: run `eval \"$(tests/services/up)\"`"
            );
            eprintln!("SKIPPED: TIDEWATER_KUBERNETES_VALIDATE is not set (outside CI)");
            None
        }
    }
}

fn validate(validator: &str, file: &Path) -> (bool, String) {
    let output = Command::new(validator)
        .arg("--strict")
        .arg(file)
        .output()
        .expect("run kubernetes-validate");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn manifests_validate_against_the_kubernetes_schemas() {
    let Some(validator) = validator() else { return };
    let (ok, report) = validate(&validator, &manifest());
    assert!(ok, "{report}");
    for kind in ["configmap", "service", "statefulset"] {
        assert!(report.contains(&format!("passed for resource {kind}/")), "{report}");
    }
    // The validator rejects what Kubernetes would: a wrongly typed field.
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.yaml");
    let text = std::fs::read_to_string(manifest()).expect("manifest");
    std::fs::write(&broken, text.replace("replicas: 3", "replicas: three")).expect("write");
    let (ok, report) = validate(&validator, &broken);
    assert!(!ok, "a string replica count passed: {report}");
}

/// The number after `key` (`key: 30`, `key = 30`, `value: "3"` after it).
fn number_after(text: &str, key: &str) -> u64 {
    let rest = &text[text.find(key).unwrap_or_else(|| panic!("{key} missing")) + key.len()..];
    let digits: String = rest
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap_or_else(|_| panic!("no number after {key}"))
}

#[test]
fn the_statefulset_agrees_on_cluster_size_and_drain_budget() {
    let text = std::fs::read_to_string(manifest()).expect("manifest");
    assert_eq!(
        number_after(&text, "replicas:"),
        number_after(&text, "name: TIDEWATER_CLUSTER_SIZE"),
        "TIDEWATER_CLUSTER_SIZE must equal the replica count"
    );
    let grace_ms = number_after(&text, "terminationGracePeriodSeconds:") * 1000;
    let drain_ms = number_after(&text, "drain_timeout_ms");
    assert!(
        drain_ms < grace_ms,
        "the drain ({drain_ms} ms) must end inside the grace period ({grace_ms} ms)"
    );
    // The image's own config has the same budget.
    let container = std::fs::read_to_string(repository().join("deploy/container.toml"))
        .expect("container config");
    assert_eq!(number_after(&container, "drain_timeout_ms"), drain_ms);
    assert!(text.contains("clusterIP: None") && text.contains("publishNotReadyAddresses: true"));
    assert!(text.contains("podManagementPolicy: Parallel"));
}

#[test]
fn the_entrypoint_writes_the_hostfile_from_the_pod_ordinal() {
    let dir = tempfile::tempdir().expect("tempdir");
    // `tidewater` on the PATH is the binary under test.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    std::os::unix::fs::symlink(binary(), bin.join("tidewater")).expect("symlink");
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let hostfile = dir.path().join("hosts");
    // A config that does not exist: the process stops right after the
    // entrypoint has handed over to it, with the hostfile written.
    let output = Command::new(repository().join("deploy/entrypoint"))
        .env("PATH", path)
        .env("HOSTNAME", "tidewater-2")
        .env("TIDEWATER_CLUSTER_SIZE", "3")
        .env("TIDEWATER_HOSTFILE", &hostfile)
        .env("TIDEWATER_CONFIG", dir.path().join("missing.toml"))
        .output()
        .expect("run the entrypoint");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("missing.toml"), "{stderr}");
    let hosts = std::fs::read_to_string(&hostfile).expect("hostfile written");
    assert_eq!(
        hosts,
        "tidewater-0.tidewater-cluster:2101\n\
         tidewater-1.tidewater-cluster:2101\n\
         tidewater-2.tidewater-cluster:2101\n"
    );
}
