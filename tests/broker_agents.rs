//! Remote executor agents over RabbitMQ (`TIDEWATER_AMQP_URL`): a
//! `tidewater agent` process joins the pipeline through the control
//! exchange and runs the tasks only it can hold; an agent killed with
//! SIGKILL is declared lost when its heartbeats stop, and its task is
//! re-queued and completed on another agent. With `rabbitmq.agent_tokens`,
//! an agent with its right token runs tasks, and one with a wrong or no
//! token is refused: it is told and exits, and never gets work. Over a
//! TLS-only broker (`TIDEWATER_AMQPS_URL`), pipeline and agent both connect
//! with `amqps://`, trusting the test CA.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker_common::{service, unique};
use crate::common::binary;
use tidewater::config::{Config, ExecutorConfig, StoreKind};
use tidewater::{Pipeline, RunningPipeline};
use tidewater_connectors::rabbitmq::RabbitMqConfig;
use tidewater_connectors::store::{MemoryStore, TaskRecord, TaskState, TaskStore};

struct Setup {
    pipeline: RunningPipeline,
    store: Arc<MemoryStore>,
    url: String,
    control: String,
    assignments: String,
    /// The CA agents trust, for an `amqps://` broker.
    ca: Option<String>,
    dir: tempfile::TempDir,
}

/// A pipeline whose only local executor is too small for the tests' tasks
/// (cpu 3000), with agents enabled on exchanges unique to the test.
fn setup(url: &str, name: &str) -> Setup {
    setup_with_tokens(url, name, std::collections::BTreeMap::new())
}

/// [`setup`], admitting only the agents in `tokens` (id → token).
fn setup_with_tokens(
    url: &str,
    name: &str,
    tokens: std::collections::BTreeMap<String, String>,
) -> Setup {
    setup_with(url, name, tokens, None)
}

/// [`setup_with_tokens`] on a broker whose certificate `ca` signed (the
/// pipeline and its agents trust it).
fn setup_with(
    url: &str,
    name: &str,
    tokens: std::collections::BTreeMap<String, String>,
    ca: Option<&str>,
) -> Setup {
    let prefix = unique(name);
    let control = format!("{prefix}.control");
    let assignments = format!("{prefix}.assignments");
    let mut config = Config {
        workers: 2,
        executors: vec![ExecutorConfig {
            id: "small".into(),
            cpu_milli: 1000,
            ..ExecutorConfig::default()
        }],
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    config.retry.initial_backoff_ms = 10;
    let mut rabbitmq = RabbitMqConfig::new(url);
    rabbitmq.agents = true;
    rabbitmq.agent_tokens = tokens;
    rabbitmq.tls.ca_file = ca.map(Into::into);
    rabbitmq.control_exchange = control.clone();
    rabbitmq.assignments_exchange = assignments.clone();
    rabbitmq.results_exchange = format!("{prefix}.results");
    rabbitmq.dead_letter_exchange = format!("{prefix}.dead");
    config.rabbitmq = Some(rabbitmq);
    let store = Arc::new(MemoryStore::new());
    let pipeline = Pipeline::builder(config)
        .store(store.clone())
        .start()
        .expect("start");
    Setup {
        pipeline,
        store,
        url: url.to_string(),
        control,
        assignments,
        ca: ca.map(String::from),
        dir: tempfile::tempdir().expect("tempdir"),
    }
}

impl Setup {
    fn agent(&self, id: &str) -> AgentProcess {
        self.agent_with_token(id, None)
    }

    fn agent_with_token(&self, id: &str, token: Option<&str>) -> AgentProcess {
        let log = std::fs::File::create(self.dir.path().join(format!("{id}.log"))).expect("log");
        let mut command = Command::new(binary());
        command
            .args(["agent", "--broker", &self.url, "--id", id])
            .args([
                "--capacity",
                "cpu=4000,memory=8192,gpu=1",
                "--gpu-model",
                "T4",
            ])
            .args(["--heartbeat-ms", "100", "--ttl-ms", "600"])
            .args(["--control-exchange", &self.control])
            .args(["--assignments-exchange", &self.assignments])
            .env_remove("TIDEWATER_AGENT_TOKEN")
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some(token) = token {
            command.args(["--token", token]);
        }
        if let Some(ca) = &self.ca {
            command.args(["--ca-cert", ca]);
        }
        command.spawn().map(AgentProcess).expect("spawn agent")
    }

    /// Waits until agent `id` has announced itself and the pipeline has had
    /// a moment to register it (tasks only an agent can hold are rejected
    /// as infeasible before any such agent has joined).
    fn wait_joined(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.log(id).contains("agent joined") {
            assert!(
                Instant::now() < deadline,
                "{id} did not join: {}",
                self.log(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(300));
    }

    /// Every agent's log, for failure messages.
    fn logs(&self) -> String {
        let mut all = String::new();
        for entry in std::fs::read_dir(self.dir.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            all.push_str(&format!("--- {}\n", entry.path().display()));
            all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
        }
        all
    }

    fn log(&self, id: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{id}.log"))).unwrap_or_default()
    }

    fn submit(&self, json: &str) {
        self.pipeline
            .ingress()
            .submit_json("test", json.as_bytes().to_vec(), 0, 0)
            .expect("submit");
    }

    fn wait_final(&self, id: &str, timeout: Duration) -> TaskRecord {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(record) = self.store.get(id).expect("get") {
                if record.state.is_final() {
                    return record;
                }
            }
            assert!(
                Instant::now() < deadline,
                "{id} did not finish: {:?}; rejections {:?}; agent logs:\n{}",
                self.store.get(id),
                self.store.rejections(10),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// An agent process, killed (SIGKILL) when dropped, also when a test fails.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn stop(agent: AgentProcess) {
    drop(agent);
}

#[test]
fn an_agent_joins_over_the_broker_and_runs_tasks() {
    let Some(url) = service("TIDEWATER_AMQP_URL") else {
        return;
    };
    let s = setup(&url, "agent-join");
    let agent = s.agent("agent-a");
    s.wait_joined("agent-a");
    // Tasks only the agent can hold.
    for i in 0..5 {
        s.submit(&format!(
            r#"{{"id":"remote-{i}","kind":"sleep","payload":{{"ms":50}},"resources":{{"cpu_milli":3000}}}}"#
        ));
    }
    s.submit(r#"{"id":"gpu-task","kind":"noop","resources":{"cpu_milli":100,"gpus":1}}"#);
    for id in (0..5)
        .map(|i| format!("remote-{i}"))
        .chain(["gpu-task".to_string()])
    {
        let record = s.wait_final(&id, Duration::from_secs(30));
        assert_eq!(
            record.state,
            TaskState::Succeeded,
            "{record:?}\n{}",
            s.log("agent-a")
        );
        assert_eq!(record.executor.as_deref(), Some("agent-a"), "{record:?}");
    }
    assert!(s.log("agent-a").contains("running"), "{}", s.log("agent-a"));
    stop(agent);
}

#[test]
fn an_agent_joins_and_runs_tasks_over_amqps() {
    let (Some(url), Some(ca)) = (
        service("TIDEWATER_AMQPS_URL"),
        service("TIDEWATER_AMQPS_CA"),
    ) else {
        return;
    };
    let s = setup_with(&url, "agent-tls", Default::default(), Some(&ca));
    let agent = s.agent("agent-tls");
    s.wait_joined("agent-tls");
    for i in 0..3 {
        s.submit(&format!(
            r#"{{"id":"tls-remote-{i}","kind":"noop","resources":{{"cpu_milli":3000}}}}"#
        ));
    }
    for i in 0..3 {
        let record = s.wait_final(&format!("tls-remote-{i}"), Duration::from_secs(30));
        assert_eq!(record.state, TaskState::Succeeded, "{record:?}");
        assert_eq!(record.executor.as_deref(), Some("agent-tls"), "{record:?}");
    }
    stop(agent);
}

#[test]
fn a_killed_agent_is_declared_lost_and_its_task_completes_elsewhere() {
    let Some(url) = service("TIDEWATER_AMQP_URL") else {
        return;
    };
    let s = setup(&url, "agent-lost");
    let mut agents = vec![
        ("agent-x", s.agent("agent-x")),
        ("agent-y", s.agent("agent-y")),
    ];
    s.wait_joined("agent-x");
    s.wait_joined("agent-y");
    s.submit(
        r#"{"id":"long","kind":"sleep","payload":{"ms":3000},"resources":{"cpu_milli":3000},"max_attempts":3}"#,
    );
    // Find the agent running it and kill it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let victim = loop {
        if let Some(i) = agents
            .iter()
            .position(|(id, _)| s.log(id).contains("task=long"))
        {
            break i;
        }
        assert!(Instant::now() < deadline, "nobody runs the task");
        std::thread::sleep(Duration::from_millis(20));
    };
    let (victim_id, child) = agents.remove(victim);
    stop(child);
    let record = s.wait_final("long", Duration::from_secs(30));
    let (survivor, child) = agents.remove(0);
    assert_eq!(record.state, TaskState::Succeeded, "{record:?}");
    assert_eq!(
        record.executor.as_deref(),
        Some(survivor),
        "ran elsewhere: {record:?}"
    );
    assert_eq!(record.attempts, 2, "the lost attempt counted: {record:?}");
    assert_ne!(victim_id, survivor);
    stop(child);
}

#[test]
fn agents_with_their_token_run_tasks_and_wrong_or_missing_tokens_are_refused() {
    let Some(url) = service("TIDEWATER_AMQP_URL") else {
        return;
    };
    let tokens = [
        ("trusted".to_string(), "tok-trusted-1".to_string()),
        ("impostor".to_string(), "tok-impostor-1".to_string()),
    ]
    .into();
    let s = setup_with_tokens(&url, "agent-auth", tokens);
    let wrong = s.agent_with_token("impostor", Some("not-the-token"));
    let missing = s.agent_with_token("anonymous", None);
    let trusted = s.agent_with_token("trusted", Some("tok-trusted-1"));
    s.wait_joined("trusted");
    // Refused agents are told, and exit with an error.
    for (mut agent, id) in [(wrong, "impostor"), (missing, "anonymous")] {
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = agent.0.try_wait().expect("wait") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{id} was not refused:\n{}",
                s.log(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(!status.success(), "{id} exited successfully");
        assert!(
            s.log(id).contains("the pipeline refused this agent"),
            "{}",
            s.log(id)
        );
    }
    // Work that needs an agent runs on the trusted one only.
    for i in 0..4 {
        s.submit(&format!(
            r#"{{"id":"auth-{i}","kind":"sleep","payload":{{"ms":20}},"resources":{{"cpu_milli":3000}}}}"#
        ));
    }
    for i in 0..4 {
        let record = s.wait_final(&format!("auth-{i}"), Duration::from_secs(30));
        assert_eq!(record.state, TaskState::Succeeded, "{record:?}");
        assert_eq!(record.executor.as_deref(), Some("trusted"), "{record:?}");
    }
    stop(trusted);
}
