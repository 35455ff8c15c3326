//! A process's cluster index taken from its host name.
//!
//! A Kubernetes StatefulSet names its pods `<set>-<ordinal>` (`tidewater-0`,
//! `tidewater-1`, ...) and gives each pod that name as its host name, so a
//! pod can find its index into `cluster.addresses` without a per-pod config.
//! With `cluster.process_from_hostname = true`, [`crate::config::Config`]
//! reads the host name (the `HOSTNAME` variable of the environment it was
//! given, else the kernel's host name) and sets `cluster.process` to the
//! number after its last `-`.

use crate::error::ConfigError;

/// The config key this module fills in, for error messages.
const KEY: &str = "cluster.process_from_hostname";

/// Where Linux keeps the kernel's host name (the UTS namespace's node name).
const KERNEL_HOSTNAME: &str = "/proc/sys/kernel/hostname";

/// The ordinal of a StatefulSet pod's host name: the decimal number after
/// its last `-` (`tidewater-12` → 12). A name that is a fully qualified
/// domain name is cut at its first `.` before that.
pub fn ordinal(hostname: &str) -> Result<usize, ConfigError> {
    let short = hostname.trim().split('.').next().unwrap_or_default();
    let invalid = |detail: String| ConfigError::Invalid {
        key: KEY.to_string(),
        detail,
    };
    let (_, digits) = short.rsplit_once('-').ok_or_else(|| {
        invalid(format!(
            "host name {hostname:?} does not end in `-<ordinal>` (a StatefulSet pod's name)"
        ))
    })?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(format!(
            "host name {hostname:?}: {digits:?} after the last `-` is not a number"
        )));
    }
    digits
        .parse()
        .map_err(|e| invalid(format!("host name {hostname:?}: {e}")))
}

/// This host's name: `from_env` (the `HOSTNAME` variable) when set and not
/// empty, else the kernel's host name.
pub fn hostname(from_env: Option<&str>) -> Result<String, ConfigError> {
    if let Some(name) = from_env.map(str::trim).filter(|n| !n.is_empty()) {
        return Ok(name.to_string());
    }
    std::fs::read_to_string(KERNEL_HOSTNAME)
        .map(|name| name.trim().to_string())
        .map_err(|source| ConfigError::Read {
            path: KERNEL_HOSTNAME.into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statefulset_pod_names_give_their_ordinal() {
        assert_eq!(ordinal("tidewater-0").expect("0"), 0);
        assert_eq!(ordinal("tidewater-12").expect("12"), 12);
        assert_eq!(ordinal("my-task-engine-3").expect("3"), 3);
        assert_eq!(
            ordinal("tidewater-7.tidewater.default.svc.cluster.local").expect("fqdn"),
            7
        );
        assert_eq!(ordinal(" tidewater-2\n").expect("trimmed"), 2);
    }

    #[test]
    fn names_without_an_ordinal_are_errors_naming_the_key() {
        for name in [
            "tidewater",
            "tidewater-",
            "tidewater-x1",
            "tidewater-+1",
            "",
        ] {
            let err = ordinal(name).expect_err(name);
            assert!(
                matches!(&err, ConfigError::Invalid { key, .. } if key == KEY),
                "{name}: {err}"
            );
        }
        let err = ordinal("tidewater-99999999999999999999999").expect_err("overflow");
        assert!(err.to_string().contains(KEY), "{err}");
    }

    #[test]
    fn the_environment_name_wins_over_the_kernel_name() {
        assert_eq!(hostname(Some("tidewater-4")).expect("env"), "tidewater-4");
        let kernel = hostname(None).expect("kernel host name");
        assert!(!kernel.is_empty());
        assert_eq!(hostname(Some("  ")).expect("blank env"), kernel);
    }
}
