//! Configuration: the TOML file, environment overrides and validation.
//!
//! A config file is read as TOML, then every environment variable named
//! `TIDEWATER__SECTION__KEY` overrides `section.key` (values parse as TOML
//! scalars where they can, strings otherwise), then the result is
//! deserialized with unknown fields rejected and checked by
//! [`Config::validate`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use tidewater_connectors::columnar::ExportConfig;
use tidewater_connectors::kafka::KafkaConfig;
use tidewater_connectors::lineage::LineageConfig;
use tidewater_connectors::mongo_source::MongoSourceConfig;
use tidewater_connectors::rabbitmq::RabbitMqConfig;
use tidewater_dataflows::monitor::{validate_queries, QuerySpec};
use tidewater_operators::allocate::{AllocatorConfig, POLICY_NAMES};
use tidewater_operators::dataflow::RetryPolicy;
use tidewater_operators::learn::settings::{LearnerSettings, SettingsError};
use tidewater_operators::model::{ExecutorSpec, GpuDevice, Name};
use tidewater_operators::validate::ValidationLimits;

use crate::error::ConfigError;
use crate::monitoring::{validate_alerts, AlertRule};

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "TIDEWATER__";

/// The most local executors a config may declare (`[[executors]] count`s
/// together): far beyond one process's use, small enough to hold.
pub const MAX_LOCAL_EXECUTORS: usize = 100_000;

/// The most GPU devices, custom resources and labels the local executors
/// may hold together once each `[[executors]]` entry is expanded `count`
/// times: a million devices is far beyond one process, and small enough to
/// hold (a handful of `count`s times large `gpus` once exhausted memory).
pub const MAX_LOCAL_EXECUTOR_ITEMS: usize = 1_000_000;

/// The whole configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Timely workers (threads) per process.
    pub workers: usize,
    /// Multi-process cluster settings; absent for a single process.
    pub cluster: Option<ClusterConfig>,
    /// The HTTP API.
    pub http: HttpConfig,
    /// Who may call the HTTP API.
    pub auth: crate::auth::AuthConfig,
    /// Draining on a signal.
    pub shutdown: ShutdownConfig,
    /// Where task records and results are kept.
    pub store: StoreConfig,
    /// Bounds on submissions.
    pub limits: ValidationLimits,
    /// Placement.
    pub allocator: AllocatorConfig,
    /// Backoff between attempts.
    pub retry: RetryPolicy,
    /// Built-in handler settings.
    pub handlers: HandlersConfig,
    /// Local executors.
    pub executors: Vec<ExecutorConfig>,
    /// Optional sinks besides the store.
    pub sinks: SinksConfig,
    /// Whether pipeline events produce metric records.
    pub metrics: bool,
    /// Continuous metric queries (`[[queries]]`).
    pub queries: Vec<QuerySpec>,
    /// Alert rules over the queries (`[[alerts]]`).
    pub alerts: Vec<AlertRule>,
    /// The RabbitMQ connector: tasks from queues, results and dead letters
    /// to exchanges. Absent: no RabbitMQ.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rabbitmq: Option<RabbitMqConfig>,
    /// The Kafka connector: tasks from a consumer group's topics, results
    /// and dead letters to topics. Absent: no Kafka.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaConfig>,
    /// The MongoDB change-stream source: documents inserted into a
    /// collection become tasks. Absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mongodb_source: Option<MongoSourceConfig>,
    /// The online learner of run times and failures (`[learner]`).
    pub learner: LearnerSettings,
    /// The lineage graph in Neo4j (`[lineage]`): every final completion is
    /// written there before its source is acknowledged. Absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lineage: Option<LineageConfig>,
    /// Columnar export to Parquet / Arrow IPC files (`[export]`): every
    /// final completion is journaled there before its source is
    /// acknowledged. Absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportConfig>,
    /// OpenTelemetry export of task spans and the process's tracing spans
    /// over OTLP/HTTP (`[telemetry]`). Absent: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<crate::telemetry::TelemetryConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            workers: 2,
            cluster: None,
            http: HttpConfig::default(),
            auth: crate::auth::AuthConfig::default(),
            store: StoreConfig::default(),
            limits: ValidationLimits::default(),
            allocator: AllocatorConfig::default(),
            retry: RetryPolicy::default(),
            handlers: HandlersConfig::default(),
            shutdown: ShutdownConfig::default(),
            executors: vec![ExecutorConfig::default()],
            sinks: SinksConfig::default(),
            metrics: true,
            queries: Vec::new(),
            alerts: Vec::new(),
            rabbitmq: None,
            kafka: None,
            mongodb_source: None,
            learner: LearnerSettings::default(),
            lineage: None,
            export: None,
            telemetry: None,
        }
    }
}

/// Timely's own cluster mode: one process per address.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This process's index into `addresses` (default 0).
    #[serde(default)]
    pub process: usize,
    /// Take `process` from the host name instead: the number after its
    /// last `-`, as in a Kubernetes StatefulSet's pod names (`tidewater-3`
    /// is process 3). The host name is the `HOSTNAME` environment variable,
    /// else the kernel's; see [`crate::pod_ordinal`].
    #[serde(default)]
    pub process_from_hostname: bool,
    /// `host:port` of every process, in order; or use `hostfile`.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// A file with one `host:port` per line, used when `addresses` is empty.
    #[serde(default)]
    pub hostfile: Option<PathBuf>,
}

/// The HTTP API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Whether to serve it.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: String,
    /// Largest accepted request body, in bytes.
    pub max_body_bytes: usize,
    /// Every process's API address in a multi-process cluster, by process
    /// index (this one included), so that any process answers for every
    /// task. Empty: `tidewater run` fills it in from the cluster's hosts
    /// and the port convention (`listen`'s port plus the process index).
    pub peers: Vec<String>,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<TlsConfig>,
    /// In a multi-process cluster, whether process `i` serves on `listen`'s
    /// port plus `i` (the default: several processes share one host). Set
    /// it to false where every process has a host of its own, such as the
    /// pods of a Kubernetes StatefulSet: then all serve on `listen`'s port.
    pub port_per_process: bool,
}

/// The HTTP API's certificate (`http.tls`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the certificate chain, the server's certificate first.
    pub cert_file: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM file of the authority that signed the cluster's certificates,
    /// which processes trust when they ask each other (`http.peers`);
    /// unset: `cert_file` itself (a self-signed certificate).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: true,
            listen: "127.0.0.1:8080".to_string(),
            max_body_bytes: 16 << 20,
            peers: Vec::new(),
            tls: None,
            port_per_process: true,
        }
    }
}

/// How the process stops.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// On SIGINT or SIGTERM, how long in-flight tasks may take to finish
    /// (with the API still up for status and cancels) before what still
    /// runs is stopped and left queued for the next start, in milliseconds.
    pub drain_timeout_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_timeout_ms: 30_000,
        }
    }
}

/// Which store keeps task records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `embedded` (redb file, the default), `mongodb` (a MongoDB database)
    /// or `memory` (nothing survives a restart). Also read as `backend`.
    #[serde(alias = "backend")]
    pub kind: StoreKind,
    /// The embedded database file. In cluster mode each process appends `.p<index>`.
    pub path: PathBuf,
    /// The MongoDB connection string, for `kind = "mongodb"`
    /// (`mongodb://host:port/` or `mongodb+srv://...`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mongodb_url: Option<String>,
    /// The MongoDB database holding the store's collections. Processes of
    /// one cluster share it.
    pub database: String,
    /// Encryption at rest of payloads, results and dead letters in the
    /// embedded and MongoDB stores: `active` key id and `keys.<id>` =
    /// `{ file = "..." }` or `{ env = "VAR" }` (64 hex digits each).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<tidewater_connectors::store::EncryptionConfig>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Embedded,
            path: PathBuf::from("tidewater-data/tidewater.redb"),
            mongodb_url: None,
            database: "tidewater".into(),
            encryption: None,
        }
    }
}

impl StoreConfig {
    /// Checks the MongoDB settings when that store is chosen.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, detail: &str| {
            Err(ConfigError::Invalid {
                key: format!("store.{key}"),
                detail: detail.into(),
            })
        };
        if self.kind != StoreKind::Mongodb {
            return Ok(());
        }
        match self.mongodb_url.as_deref() {
            None => return invalid("mongodb_url", "required for the mongodb store"),
            Some(url) if !(url.starts_with("mongodb://") || url.starts_with("mongodb+srv://")) => {
                return invalid(
                    "mongodb_url",
                    "must start with mongodb:// or mongodb+srv://",
                )
            }
            Some(_) => {}
        }
        if self.database.is_empty() {
            return invalid("database", "must not be empty");
        }
        Ok(())
    }
}

/// Store kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// A redb database file.
    Embedded,
    /// In memory only.
    Memory,
    /// A MongoDB database (`mongodb_url`, `database`).
    Mongodb,
}

/// Built-in handler settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HandlersConfig {
    /// Programs the `command` handler may run (exact names or absolute
    /// paths). Empty disables the handler: running arbitrary programs from
    /// submitted tasks must be opted into.
    pub command_allowlist: Vec<String>,
    /// Largest `sleep` accepted, in milliseconds.
    pub max_sleep_ms: u64,
}

impl Default for HandlersConfig {
    fn default() -> Self {
        HandlersConfig {
            command_allowlist: Vec::new(),
            max_sleep_ms: 3_600_000,
        }
    }
}

/// A local executor (or `count` identical ones).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExecutorConfig {
    /// Identifier; with `count > 1`, `-<n>` is appended.
    pub id: String,
    /// How many identical executors this entry declares.
    pub count: usize,
    /// CPU capacity in thousandths of a core.
    pub cpu_milli: u64,
    /// Memory capacity in MiB.
    pub memory_mib: u64,
    /// Number of GPUs.
    pub gpus: usize,
    /// Model of those GPUs.
    pub gpu_model: String,
    /// Custom resource capacities.
    pub custom: BTreeMap<String, u64>,
    /// Labels (`class` is used as the executor class).
    pub labels: BTreeMap<String, String>,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        ExecutorConfig {
            id: "local".to_string(),
            count: 1,
            cpu_milli: 8_000,
            memory_mib: 16_384,
            gpus: 0,
            gpu_model: String::new(),
            custom: BTreeMap::new(),
            labels: BTreeMap::new(),
        }
    }
}

impl ExecutorConfig {
    /// The executor specs this entry declares.
    pub fn specs(&self) -> Vec<ExecutorSpec> {
        (0..self.count)
            .map(|n| ExecutorSpec {
                id: if self.count == 1 {
                    Name::from(self.id.as_str())
                } else {
                    Name::from(format!("{}-{n}", self.id))
                },
                cpu_milli: self.cpu_milli,
                memory_mib: self.memory_mib,
                gpus: (0..self.gpus)
                    .map(|_| GpuDevice {
                        model: Name::from(self.gpu_model.as_str()),
                    })
                    .collect(),
                custom: self
                    .custom
                    .iter()
                    .map(|(k, v)| (Name::from(k.as_str()), *v))
                    .collect(),
                labels: self.labels.clone(),
            })
            .collect()
    }
}

/// Optional sinks.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinksConfig {
    /// Append each final result as a JSON line to this file.
    pub results_file: Option<PathBuf>,
    /// Append each rejection as a JSON line to this file.
    pub dead_letter_file: Option<PathBuf>,
}

impl Config {
    /// The files this configuration has the pipeline read when it starts
    /// or connects (certificates, keys, the host file), each with the key
    /// that names it. Relative paths are as given: the process resolves
    /// them against its working directory.
    pub fn files_read_at_start(&self) -> Vec<(&'static str, &Path)> {
        let mut files: Vec<(&'static str, &Path)> = Vec::new();
        if let Some(tls) = &self.http.tls {
            files.push(("http.tls.cert_file", &tls.cert_file));
            files.push(("http.tls.key_file", &tls.key_file));
            if let Some(ca) = &tls.ca_file {
                files.push(("http.tls.ca_file", ca));
            }
        }
        if let Some(jwt) = &self.auth.jwt {
            files.push(("auth.jwt.key_file", &jwt.key_file));
        }
        if let Some(hostfile) = self.cluster.as_ref().and_then(|c| c.hostfile.as_deref()) {
            files.push(("cluster.hostfile", hostfile));
        }
        if let Some(rabbitmq) = &self.rabbitmq {
            let tls = &rabbitmq.tls;
            for (key, file) in [
                ("rabbitmq.tls.ca_file", &tls.ca_file),
                ("rabbitmq.tls.cert_file", &tls.cert_file),
                ("rabbitmq.tls.key_file", &tls.key_file),
            ] {
                if let Some(file) = file {
                    files.push((key, file));
                }
            }
        }
        files
    }

    /// Checks that every file in [`files_read_at_start`](Self::files_read_at_start)
    /// can be read (a directory cannot), so that `tidewater config validate`
    /// reports a missing certificate before a start or a broker connection
    /// would.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        for (key, path) in self.files_read_at_start() {
            std::fs::read(path).map_err(|source| ConfigError::UnreadableFile {
                key,
                path: path.to_path_buf(),
                source,
            })?;
        }
        Ok(())
    }

    /// Reads `path`, applies environment overrides and validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_with_env(&text, std::env::vars(), &path.display().to_string())
    }

    /// Parses TOML text, applying overrides from `env` (pairs of name and value).
    pub fn from_toml_with_env(
        text: &str,
        env: impl IntoIterator<Item = (String, String)>,
        origin: &str,
    ) -> Result<Config, ConfigError> {
        let mut value: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
            origin: origin.to_string(),
            detail: e.to_string(),
        })?;
        let mut env_hostname = None;
        for (name, raw) in env {
            if name == "HOSTNAME" {
                env_hostname = Some(raw.clone());
            }
            if let Some(key) = name.strip_prefix(ENV_PREFIX) {
                apply_override(&mut value, key, &raw).map_err(|detail| ConfigError::Override {
                    variable: name.clone(),
                    detail,
                })?;
            }
        }
        let mut config: Config =
            toml::Value::Table(value)
                .try_into()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    origin: origin.to_string(),
                    detail: e.to_string(),
                })?;
        if let Some(cluster) = config.cluster.as_mut() {
            if cluster.process_from_hostname {
                let name = crate::pod_ordinal::hostname(env_hostname.as_deref())?;
                cluster.process = crate::pod_ordinal::ordinal(&name)?;
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks values that the schema alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, detail: String| {
            Err(ConfigError::Invalid {
                key: key.to_string(),
                detail,
            })
        };
        if self.workers == 0 {
            return invalid("workers", "must be at least 1".into());
        }
        // A corrupt `count` must not expand into billions of executors.
        if self
            .executors
            .iter()
            .map(|e| e.count)
            .fold(0usize, usize::saturating_add)
            > MAX_LOCAL_EXECUTORS
        {
            return invalid(
                "executors",
                format!("at most {MAX_LOCAL_EXECUTORS} local executors in all (the counts add up to more)"),
            );
        }
        if self
            .executors
            .iter()
            .map(|e| {
                let items = e
                    .gpus
                    .saturating_add(e.custom.len())
                    .saturating_add(e.labels.len());
                e.count.saturating_mul(items)
            })
            .fold(0usize, usize::saturating_add)
            > MAX_LOCAL_EXECUTOR_ITEMS
        {
            return invalid(
                "executors",
                format!("at most {MAX_LOCAL_EXECUTOR_ITEMS} GPUs, custom resources and labels in all (each entry's `count` times its `gpus`, `custom` and `labels` add up to more)"),
            );
        }
        if let Err(e) = validate_queries(&self.queries) {
            return invalid("queries", e.to_string());
        }
        if let Err(e) = validate_alerts(&self.alerts, &self.queries) {
            return invalid("alerts", e.to_string());
        }
        if !self.queries.is_empty() && !self.metrics {
            return invalid(
                "metrics",
                "queries need the metric stream: set `metrics = true`".into(),
            );
        }
        if !POLICY_NAMES.contains(&self.allocator.policy.as_str()) {
            return invalid(
                "allocator.policy",
                format!("{:?} is not one of {POLICY_NAMES:?}", self.allocator.policy),
            );
        }
        if self.http.enabled && self.http.listen.parse::<SocketAddr>().is_err() {
            return invalid(
                "http.listen",
                format!("{:?} is not a socket address", self.http.listen),
            );
        }
        if self.http.enabled {
            use crate::auth::{config::is_loopback, AuthMode};
            match self.auth.effective_mode(&self.http.listen) {
                AuthMode::None if !is_loopback(&self.http.listen) => {
                    return invalid(
                        "auth.mode",
                        format!(
                            "\"none\" lets anyone who reaches {} submit, cancel and read every tenant's tasks; it is allowed only on a loopback address: use \"token\" or \"jwt\"",
                            self.http.listen
                        ),
                    )
                }
                AuthMode::Jwt if self.auth.jwt.is_none() => {
                    return invalid(
                        "auth.jwt",
                        "auth.mode = \"jwt\" needs an [auth.jwt] section (algorithm, key_file)"
                            .into(),
                    )
                }
                _ => {}
            }
        }
        let mut seen = std::collections::BTreeSet::new();
        for spec in self.executor_specs() {
            if spec.cpu_milli == 0 {
                return invalid(
                    "executors.cpu_milli",
                    format!("executor {} has no CPU", spec.id),
                );
            }
            if !seen.insert(spec.id.clone()) {
                return invalid("executors.id", format!("duplicate executor id {}", spec.id));
            }
        }
        if let Some(cluster) = &self.cluster {
            let addresses = cluster.resolve_addresses()?;
            if cluster.process >= addresses.len() {
                return invalid(
                    "cluster.process",
                    format!(
                        "{} is not below the {} addresses",
                        cluster.process,
                        addresses.len()
                    ),
                );
            }
        }
        if let Some(rabbitmq) = &self.rabbitmq {
            if let Err((key, detail)) = rabbitmq.validate() {
                return invalid(&key, detail);
            }
        }
        if let Some(kafka) = &self.kafka {
            if let Err((key, detail)) = kafka.validate() {
                return invalid(&key, detail);
            }
        }
        if let Some(Err((key, detail))) = self.lineage.as_ref().map(LineageConfig::validate) {
            return invalid(&key, detail);
        }
        if let Some(Err((key, detail))) = self.export.as_ref().map(ExportConfig::validate) {
            return invalid(&key, detail);
        }
        self.store.validate()?;
        if let Some(telemetry) = &self.telemetry {
            telemetry.validate()?;
        }
        if let Some(source) = &self.mongodb_source {
            if let Err((key, detail)) = source.validate() {
                return invalid(&format!("mongodb_source.{key}"), detail);
            }
        }
        if self.retry.multiplier < 1.0 {
            return invalid("retry.multiplier", "must be at least 1".into());
        }
        match self.learner.validate() {
            Ok(()) => {}
            Err(SettingsError::Range { key, value, detail }) => {
                return invalid(&format!("learner.{key}"), format!("{value}: {detail}"));
            }
            Err(e @ SettingsError::Device(_)) => return invalid("learner.device", e.to_string()),
        }
        Ok(())
    }

    /// Every executor the config declares.
    pub fn executor_specs(&self) -> Vec<ExecutorSpec> {
        self.executors
            .iter()
            .flat_map(ExecutorConfig::specs)
            .collect()
    }
}

impl ClusterConfig {
    /// The process addresses, from `addresses` or the host file.
    pub fn resolve_addresses(&self) -> Result<Vec<String>, ConfigError> {
        if !self.addresses.is_empty() {
            return Ok(self.addresses.clone());
        }
        let Some(path) = &self.hostfile else {
            return Err(ConfigError::Invalid {
                key: "cluster".into(),
                detail: "set `addresses` or `hostfile`".into(),
            });
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect())
    }
}

fn apply_override(table: &mut toml::Table, key: &str, raw: &str) -> Result<(), String> {
    let parts: Vec<String> = key.split("__").map(str::to_ascii_lowercase).collect();
    let (last, parents) = parts.split_last().ok_or("empty key")?;
    let mut current = table;
    for part in parents {
        let entry = current
            .entry(part.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a table"))?;
    }
    let parsed = toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()));
    current.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_executor_count_is_refused_not_expanded() {
        // Found by the config_parse fuzz target: the count used to be
        // expanded into executors before any check, exhausting memory.
        let err = Config::from_toml_with_env(
            "[[executors]]\nid = \"bench\"\ncount = 49511627776\n",
            [],
            "test",
        )
        .expect_err("too many executors");
        assert!(err.to_string().contains("local executors"), "{err}");
    }

    #[test]
    fn many_executors_with_many_gpus_are_refused_not_expanded() {
        // Found by the config_parse fuzz target: 3,080 executors of 62,920
        // GPUs each were expanded into 194M devices before any check.
        let err = Config::from_toml_with_env(
            "[[executors]]\nid = \"pu\"\ncount = 3080\ngpus = 62920\n",
            [],
            "test",
        )
        .expect_err("too many GPUs");
        assert!(
            err.to_string()
                .contains("GPUs, custom resources and labels"),
            "{err}"
        );
        let fine = "[[executors]]\nid = \"gpu\"\ncount = 1000\ngpus = 8\n";
        assert!(Config::from_toml_with_env(fine, [], "test").is_ok());
    }

    #[test]
    fn files_the_config_names_are_checked_with_their_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not checked for PEM here").expect("write");
        let missing = dir.path().join("client.pem");
        let text = format!(
            "[rabbitmq]\nurl = \"amqps://127.0.0.1:5671\"\n\
             [rabbitmq.tls]\nca_file = {ca:?}\ncert_file = {missing:?}\nkey_file = {ca:?}\n"
        );
        let config = Config::from_toml_with_env(&text, [], "test").expect("schema-valid");
        let keys: Vec<&str> = config
            .files_read_at_start()
            .iter()
            .map(|(k, _)| *k)
            .collect();
        assert_eq!(
            keys,
            [
                "rabbitmq.tls.ca_file",
                "rabbitmq.tls.cert_file",
                "rabbitmq.tls.key_file"
            ]
        );
        let err = config.check_files().expect_err("cert_file is missing");
        assert!(
            matches!(&err, ConfigError::UnreadableFile { key: "rabbitmq.tls.cert_file", path, .. } if path == &missing),
            "{err}"
        );
        std::fs::write(&missing, "pem").expect("write");
        config.check_files().expect("every file readable");
        // A directory is not a certificate.
        let text = format!(
            "[http.tls]\ncert_file = {:?}\nkey_file = {ca:?}\n",
            dir.path()
        );
        let config = Config::from_toml_with_env(&text, [], "test").expect("schema-valid");
        let err = config.check_files().expect_err("a directory");
        assert!(err.to_string().contains("http.tls.cert_file"), "{err}");
        assert!(Config::default().check_files().is_ok());
    }

    #[test]
    fn env_overrides_apply_and_parse_scalars() {
        let env = [
            ("TIDEWATER__WORKERS".to_string(), "4".to_string()),
            (
                "TIDEWATER__HTTP__LISTEN".to_string(),
                "127.0.0.1:9999".to_string(),
            ),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let config = Config::from_toml_with_env("workers = 1", env, "test").expect("valid");
        assert_eq!(config.workers, 4);
        assert_eq!(config.http.listen, "127.0.0.1:9999");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_reported() {
        let err = Config::from_toml_with_env("wrokers = 1", [], "test").expect_err("unknown");
        assert!(err.to_string().contains("wrokers"), "{err}");
        let err = Config::from_toml_with_env("[allocator]\npolicy = \"magic\"", [], "test")
            .expect_err("policy");
        assert!(err.to_string().contains("allocator.policy"), "{err}");
        let err = Config::from_toml_with_env("workers = 0", [], "test").expect_err("zero");
        assert!(err.to_string().contains("workers"), "{err}");
    }

    #[test]
    fn learner_section_parses_and_validates() {
        let config = Config::from_toml_with_env(
            "[learner]\nenabled = true\ndevice = \"cuda:1\"\nmodel = \"mlp\"\nhidden = 16\nbatch_size = 128\nlearning_rate = 0.002",
            [],
            "test",
        )
        .expect("valid");
        assert!(config.learner.enabled);
        assert_eq!(
            config.learner.device,
            tidewater_operators::learn::settings::DeviceChoice::Cuda(1)
        );
        assert_eq!(config.learner.batch_size, 128);
        let default =
            Config::from_toml_with_env("[learner]\nenabled = true", [], "test").expect("defaults");
        assert_eq!(
            default.learner.device,
            tidewater_operators::learn::settings::DeviceChoice::Auto
        );
        let err = Config::from_toml_with_env("[learner]\ndevice = \"tpu\"", [], "test")
            .expect_err("device");
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
        assert!(err.to_string().contains("cuda:N"), "{err}");
        let err = Config::from_toml_with_env("[learner]\nbatch_size = 0", [], "test")
            .expect_err("batch size");
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "learner.batch_size"),
            "{err}"
        );
        let err = Config::from_toml_with_env("[learner]\nmodel = \"forest\"", [], "test")
            .expect_err("model");
        assert!(err.to_string().contains("forest"), "{err}");
        let err = Config::from_toml_with_env("[learner]\nlearning_rate = -1.0", [], "test")
            .expect_err("rate");
        assert!(err.to_string().contains("learner.learning_rate"), "{err}");
    }

    #[test]
    fn store_encryption_keys_are_read_from_the_config() {
        use tidewater_connectors::store::KeySource;
        let config = Config::from_toml_with_env(
            "[store.encryption]\nactive = \"k2\"\nkeys.k1 = { file = \"/etc/k1.key\" }\nkeys.k2 = { env = \"STORE_KEY\" }",
            [],
            "test",
        )
        .expect("valid");
        let encryption = config.store.encryption.expect("encryption");
        assert_eq!(encryption.active, "k2");
        assert_eq!(
            encryption.keys.get("k1"),
            Some(&KeySource::File("/etc/k1.key".into()))
        );
        assert_eq!(
            encryption.keys.get("k2"),
            Some(&KeySource::Env("STORE_KEY".into()))
        );
        let err = Config::from_toml_with_env(
            "[store.encryption]\nactive = \"k\"\nkeys.k = { url = \"x\" }",
            [],
            "test",
        )
        .expect_err("unknown source");
        assert!(err.to_string().contains("url"), "{err}");
    }

    #[test]
    fn the_mongodb_store_and_source_are_configured_and_checked() {
        let config = Config::from_toml_with_env(
            "[store]\nbackend = \"mongodb\"\nmongodb_url = \"mongodb://127.0.0.1:27017/\"\ndatabase = \"td\"\n\n[mongodb_source]\nurl = \"mongodb://127.0.0.1:27017/\"\ndatabase = \"td\"\ncollection = \"submissions\"",
            [],
            "test",
        )
        .expect("valid");
        assert_eq!(config.store.kind, StoreKind::Mongodb);
        assert_eq!(config.store.database, "td");
        let source = config.mongodb_source.expect("source");
        assert_eq!(source.collection, "submissions");
        assert_eq!(source.tokens_collection, "tidewater_resume_tokens");
        let err = Config::from_toml_with_env("[store]\nkind = \"mongodb\"", [], "test")
            .expect_err("url required");
        assert!(err.to_string().contains("store.mongodb_url"), "{err}");
        let err = Config::from_toml_with_env(
            "[store]\nkind = \"mongodb\"\nmongodb_url = \"http://x\"",
            [],
            "test",
        )
        .expect_err("scheme");
        assert!(err.to_string().contains("mongodb://"), "{err}");
        let err = Config::from_toml_with_env(
            "[mongodb_source]\nurl = \"mongodb://h/\"\ndatabase = \"d\"\ncollection = \"\"",
            [],
            "test",
        )
        .expect_err("collection");
        assert!(
            err.to_string().contains("mongodb_source.collection"),
            "{err}"
        );
    }

    #[test]
    fn a_statefulset_pod_takes_its_process_from_its_hostname() {
        let text = "[cluster]\nprocess_from_hostname = true\naddresses = [\"tidewater-0.tw:2101\", \"tidewater-1.tw:2101\", \"tidewater-2.tw:2101\"]\n[http]\nport_per_process = false";
        let config =
            Config::from_toml_with_env(text, env_of("tidewater-2"), "test").expect("pod 2");
        let cluster = config.cluster.expect("cluster");
        assert_eq!(cluster.process, 2);
        assert!(!config.http.port_per_process);
        // The host name wins over an explicit index, from the file or the
        // environment alike.
        let env = [
            ("TIDEWATER__CLUSTER__PROCESS".to_string(), "0".to_string()),
            ("HOSTNAME".to_string(), "tidewater-1".to_string()),
        ];
        let config = Config::from_toml_with_env(text, env, "test").expect("pod 1");
        assert_eq!(config.cluster.expect("cluster").process, 1);
        // An ordinal past the addresses, or no ordinal at all, is refused.
        let err = Config::from_toml_with_env(text, env_of("tidewater-3"), "test")
            .expect_err("past the addresses");
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "cluster.process"),
            "{err}"
        );
        let err =
            Config::from_toml_with_env(text, env_of("laptop"), "test").expect_err("no ordinal");
        assert!(
            err.to_string().contains("cluster.process_from_hostname"),
            "{err}"
        );
        // Without the flag the host name is not consulted.
        let plain = "[cluster]\nprocess = 1\naddresses = [\"a:1\", \"b:1\"]";
        let config =
            Config::from_toml_with_env(plain, env_of("tidewater-0"), "test").expect("plain");
        assert_eq!(config.cluster.expect("cluster").process, 1);
        assert!(config.http.port_per_process, "the default shifts ports");
    }

    fn env_of(host: &str) -> [(String, String); 1] {
        [("HOSTNAME".to_string(), host.to_string())]
    }

    #[test]
    fn executor_count_expands_ids() {
        let config = Config::from_toml_with_env(
            "[[executors]]\nid = \"gpu\"\ncount = 3\ngpus = 2\ngpu_model = \"A100\"",
            [],
            "test",
        )
        .expect("valid");
        let specs = config.executor_specs();
        assert_eq!(specs.len(), 3);
        assert_eq!(specs[2].id, "gpu-2");
        assert_eq!(specs[0].gpus.len(), 2);
    }
}
