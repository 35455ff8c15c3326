//! Test hosts in Linux network namespaces: a virtual LAN made by the test,
//! so that the processes of a cluster talk over real (virtual) links, each
//! on its own address and port space, not over loopback.
//!
//! ```text
//!   namespace <run>-lan:   br0 (bridge) ── p0 ── p1 ── … ── pN-1
//!                                          │     │           │   veth pairs
//!   namespace <run>-h0:                  eth0 10.213.0.1/24  │
//!   namespace <run>-h1:                        eth0 10.213.0.2/24
//!   …                                                        eth0 10.213.0.N/24
//! ```
//!
//! Namespaces are machine-wide, so every [`TestNetwork`] takes names unique
//! to this process and this network, and deletes them when dropped (which
//! also removes the veth pairs and the bridge inside them). Nothing is
//! added to the root namespace.
//!
//! Where namespaces cannot be made (not root, no `ip`), the network falls
//! back to loopback — every host is 127.0.0.1 — and says so on stderr and
//! through [`TestNetwork::namespaced`], so that a test can print it plainly.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

static NETWORKS: AtomicUsize = AtomicUsize::new(0);

/// `hosts` test hosts, in namespaces where possible.
pub struct TestNetwork {
    /// The namespace holding the bridge, when namespaced.
    lan: Option<String>,
    /// One namespace per host, when namespaced.
    hosts: Vec<String>,
    /// Each host's address.
    addresses: Vec<String>,
}

impl TestNetwork {
    /// A LAN of `hosts` hosts; loopback where namespaces are unavailable.
    pub fn new(hosts: usize) -> Self {
        let prefix = format!(
            "tw{}-{}",
            std::process::id(),
            NETWORKS.fetch_add(1, Ordering::Relaxed)
        );
        match Self::namespaced_lan(&prefix, hosts) {
            Ok(network) => network,
            Err(why) => {
                eprintln!(
                    "NETWORK NAMESPACES UNAVAILABLE ({why}): the cluster runs on loopback 127.0.0.1 instead of separate test hosts"
                );
                TestNetwork {
                    lan: None,
                    hosts: Vec::new(),
                    addresses: vec!["127.0.0.1".to_string(); hosts],
                }
            }
        }
    }

    fn namespaced_lan(prefix: &str, hosts: usize) -> Result<Self, String> {
        let lan = format!("{prefix}-lan");
        ip(&["netns", "add", &lan])?;
        // From here on, Drop cleans up whatever was made.
        let mut network = TestNetwork {
            lan: Some(lan.clone()),
            hosts: Vec::new(),
            addresses: Vec::new(),
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
            ip(&["-n", &host, "addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
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

    /// Bytes host `i` has sent on its link (`None` on loopback).
    pub fn sent_bytes(&self, i: usize) -> Option<u64> {
        let host = self.hosts.get(i)?;
        let output = Command::new("ip")
            .args(["-n", host, "-j", "-s", "link", "show", "eth0"])
            .output()
            .ok()?;
        let links: serde_json::Value = serde_json::from_slice(&output.stdout).ok()?;
        links[0]["stats64"]["tx"]["bytes"].as_u64()
    }

    /// GET `url` from host `i` (with curl inside the host's namespace):
    /// the status and the body as JSON, `None` when unreachable.
    pub fn get_json(&self, i: usize, url: &str) -> Option<(u16, serde_json::Value)> {
        let output = self
            .command(i, "curl")
            .args(["-s", "-m", "5", "-w", "\n%{http_code}", url])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout);
        let (body, status) = text.rsplit_once('\n')?;
        let status: u16 = status.trim().parse().ok()?;
        (status != 0).then(|| {
            (
                status,
                serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
            )
        })
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
