//! Config parsing: any text through [`Config::from_toml_with_env`], the path
//! a config file and its `TIDEWATER__*` environment overrides take at start
//! and in `tidewater config validate`. The input is the TOML text, then
//! optionally a NUL byte and `NAME=VALUE` lines (each name gets the
//! `TIDEWATER__` prefix), so the override parser is driven too. It must
//! answer a config or a typed error, never panic; an accepted config
//! validates again and survives a round trip through TOML unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tidewater::config::{Config, ENV_PREFIX};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (toml_text, overrides) = text.split_once('\0').unwrap_or((text, ""));
    let env: Vec<(String, String)> = overrides
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (format!("{ENV_PREFIX}{name}"), value.to_string()))
        .collect();
    let Ok(config) = Config::from_toml_with_env(toml_text, env, "fuzz") else {
        return;
    };
    config.validate().expect("an accepted config validates again");
    let written = toml::to_string(&config).expect("an accepted config serializes");
    let reread = Config::from_toml_with_env(&written, [], "fuzz round trip")
        .expect("a serialized config parses again");
    assert_eq!(reread, config, "round trip through TOML");
});
