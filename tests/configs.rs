//! Every shipped config file parses and validates.

use std::path::Path;

use tidewater::Config;

#[test]
fn every_file_in_configs_parses_and_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("configs/") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            !config.executor_specs().is_empty(),
            "{} declares no executors",
            path.display()
        );
        checked += 1;
    }
    assert!(
        checked >= 3,
        "expected the shipped configs, found {checked}"
    );
}

#[test]
fn the_local_config_runs_on_embedded_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/local.toml");
    let config = Config::load(&path).expect("local.toml");
    assert_eq!(config.store.kind, tidewater::config::StoreKind::Embedded);
    assert!(config.cluster.is_none());
    // The README's quick start submits to the HTTP API of this job.
    assert!(config.http.enabled, "the quick start needs the HTTP API");
    assert_eq!(config.http.listen, "127.0.0.1:8080");
}
