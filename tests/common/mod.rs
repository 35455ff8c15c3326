//! Helpers shared by the end-to-end tests: the binary, ports, HTTP calls.
#![allow(dead_code)]

pub mod netns;
pub mod otlp_receiver;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `tidewater` binary built for these tests.
pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_tidewater")
}

/// A TCP port free on loopback right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Blocking HTTP over a small tokio runtime.
pub struct Http {
    runtime: tokio::runtime::Runtime,
    client: reqwest::Client,
}

impl Http {
    /// A client.
    pub fn new() -> Self {
        Http {
            runtime: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("client"),
        }
    }

    /// POSTs `body` and returns the status and parsed JSON answer.
    pub fn post(&self, url: &str, body: &str) -> (u16, serde_json::Value) {
        self.post_with_headers(url, body, &[])
    }

    /// POSTs `body` with extra `headers` (name, value).
    pub fn post_with_headers(
        &self,
        url: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, serde_json::Value) {
        self.runtime.block_on(async {
            let mut request = self
                .client
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string());
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json().await.unwrap_or(serde_json::Value::Null),
            )
        })
    }

    /// DELETEs `url` and returns the status and parsed JSON answer.
    pub fn delete(&self, url: &str) -> (u16, serde_json::Value) {
        self.runtime.block_on(async {
            let response = self.client.delete(url).send().await.expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json().await.unwrap_or(serde_json::Value::Null),
            )
        })
    }

    /// GETs `url`; the status and parsed JSON answer, or `None` if unreachable.
    pub fn get(&self, url: &str) -> Option<(u16, serde_json::Value)> {
        self.runtime.block_on(async {
            let response = self.client.get(url).send().await.ok()?;
            let status = response.status().as_u16();
            Some((
                status,
                response.json().await.unwrap_or(serde_json::Value::Null),
            ))
        })
    }

    /// Waits until `url` answers, or panics after `timeout`.
    pub fn wait_ready(&self, url: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.get(url).is_none() {
            assert!(
                Instant::now() < deadline,
                "{url} did not come up within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Starts `tidewater run` with `config` and extra arguments; logs go to
/// `log` inside `dir`.
pub fn spawn_run(dir: &Path, config: &Path, extra: &[&str], log: &str) -> Child {
    spawn_run_with_env(dir, config, extra, log, &[])
}

/// Like [`spawn_run`], with extra environment variables.
pub fn spawn_run_with_env(
    dir: &Path,
    config: &Path,
    extra: &[&str],
    log: &str,
    env: &[(String, String)],
) -> Child {
    let log = std::fs::File::create(dir.join(log)).expect("log file");
    Command::new(binary())
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(extra)
        .current_dir(dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn tidewater")
}

/// Reads a JSON-lines file into values.
pub fn read_json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

/// Sends SIGTERM to `child` (a drain) and waits up to 60 s for it to exit
/// successfully.
pub fn terminate(child: &mut Child) {
    let sent = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(sent.success(), "SIGTERM not delivered");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "tidewater exited with {status}");
            return;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("tidewater did not exit within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
