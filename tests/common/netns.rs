//! Test hosts in Linux network namespaces: a virtual LAN made by the test,
//! so that the processes of a cluster talk over real (virtual) links, each
//! on its own address and port space, not over loopback.
//!
//! ```text
//!   namespace <prefix>-lan:   br0 (bridge) ── p0 ── p1 ── … ── pN-1
//!                                             │     │           │   veth pairs
//!   namespace <prefix>-h0:                  eth0 10.213.0.1/24  │
//!   namespace <prefix>-h1:                        eth0 10.213.0.2/24
//!   …                                                           eth0 10.213.0.N/24
//! ```
//!
//! Every network has a bridge of its own in a namespace of its own, so two
//! networks (tests running in parallel) never see each other even though
//! they use the same addresses. Nothing is added to the root namespace: the
//! test reaches a host by running a program inside its namespace
//! ([`TestNetwork::command`], with `ip netns exec`).
//!
//! Namespaces are machine-wide, so every [`TestNetwork`] takes names unique
//! to this test process and this network, and deletes them when dropped
//! (which also removes the veth pairs and the bridge inside them); the
//! namespaces of earlier test processes that died without cleaning up are
//! removed at the next start.
//!
//! Where namespaces cannot be made (not root, no `ip`, no kernel support),
//! or `TIDEWATER_TEST_NETNS=off` asks for it, the network falls back to
//! loopback — every host is 127.0.0.1 — and says
//! so on stderr and through [`TestNetwork::namespaced`], so that a test can
//! print it plainly.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

/// How every test namespace's name begins: `twtest<pid>-<n>-…`.
const NAME_PREFIX: &str = "twtest";

static NETWORKS: AtomicUsize = AtomicUsize::new(0);

/// `hosts` test hosts, in namespaces where possible.
pub struct TestNetwork {
    /// The namespace holding the bridge, when namespaced.
    lan: Option<String>,
    /// One namespace per host, when namespaced.
    hosts: Vec<String>,
    /// Each host's address.
    addresses: Vec<String>,
    /// Why the hosts are on loopback, when they are.
    fallback: Option<String>,
}

impl TestNetwork {
    /// A LAN of `hosts` hosts; loopback where namespaces are unavailable.
    pub fn new(hosts: usize) -> Self {
        remove_stale_namespaces();
        let prefix = format!(
            "{NAME_PREFIX}{}-{}",
            std::process::id(),
            NETWORKS.fetch_add(1, Ordering::Relaxed)
        );
        let made = match std::env::var("TIDEWATER_TEST_NETNS").as_deref() {
            Ok("off") => Err("TIDEWATER_TEST_NETNS=off".to_string()),
            _ => Self::namespaced_lan(&prefix, hosts),
        };
        match made {
            Ok(network) => network,
            Err(why) => {
                eprintln!(
                    "NETWORK NAMESPACES UNAVAILABLE ({why}): the cluster runs on loopback \
                     127.0.0.1, not on separate test hosts"
                );
                TestNetwork {
                    lan: None,
                    hosts: Vec::new(),
                    addresses: vec!["127.0.0.1".to_string(); hosts],
                    fallback: Some(why),
                }
            }
        }
    }

    fn namespaced_lan(prefix: &str, hosts: usize) -> Result<Self, String> {
        let lan = format!("{prefix}-lan");
        ip(&["netns", "add", &lan])?;
        // From here on, Drop removes whatever was made.
        let mut network = TestNetwork {
            lan: Some(lan.clone()),
            hosts: Vec::new(),
            addresses: Vec::new(),
            fallback: None,
        };
        ip(&["-n", &lan, "link", "set", "lo", "up"])?;
        ip(&["-n", &lan, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &lan, "link", "set", "br0", "up"])?;
        for i in 0..hosts {
            let host = format!("{prefix}-h{i}");
            ip(&["netns", "add", &host])?;
            network.hosts.push(host.clone());
            let port = format!("p{i}");
            ip(&[
                "-n", &lan, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &host,
            ])?;
            ip(&["-n", &lan, "link", "set", &port, "master", "br0", "up"])?;
            let address = format!("10.213.0.{}", i + 1);
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &host, "link", "set", "eth0", "up"])?;
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
            network.addresses.push(address);
        }
        Ok(network)
    }

    /// Whether the hosts are separate namespaces (false: loopback).
    pub fn namespaced(&self) -> bool {
        self.lan.is_some()
    }

    /// A line saying where the hosts are, for the test's output.
    pub fn describe(&self) -> String {
        match &self.fallback {
            None => format!(
                "{} test hosts in network namespaces on a virtual bridge ({})",
                self.hosts.len(),
                self.addresses.join(", ")
            ),
            Some(why) => format!(
                "LOOPBACK ONLY: {} processes on 127.0.0.1, network namespaces unavailable ({why})",
                self.addresses.len()
            ),
        }
    }

    /// Host `i`'s address.
    pub fn address(&self, i: usize) -> &str {
        &self.addresses[i]
    }

    /// A command that runs `program` on host `i`.
    pub fn command(&self, i: usize, program: &str) -> Command {
        match self.hosts.get(i) {
            Some(host) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", host, program]);
                command
            }
            None => Command::new(program),
        }
    }

    /// Bytes host `i` has sent on its link (`None` on loopback, where the
    /// processes' traffic cannot be told apart).
    pub fn sent_bytes(&self, i: usize) -> Option<u64> {
        let host = self.hosts.get(i)?;
        let output = ip(&["-n", host, "-j", "-s", "link", "show", "eth0"]).ok()?;
        let links: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        links[0]["stats64"]["tx"]["bytes"].as_u64()
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for namespace in self.hosts.iter().chain(self.lan.iter()) {
            if let Err(e) = ip(&["netns", "del", namespace]) {
                eprintln!("removing test namespace {namespace}: {e}");
            }
        }
    }
}

/// Deletes the test namespaces of test processes that are gone.
fn remove_stale_namespaces() {
    let Ok(output) = ip(&["netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(pid) = name
            .strip_prefix(NAME_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

fn ip(args: &[&str]) -> Result<Output, String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("running ip: {e}"))?;
    if output.status.success() {
        Ok(output)
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
