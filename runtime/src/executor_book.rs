//! What this process knows about executors, for `GET /v1/executors` and the
//! dashboard.
//!
//! The allocator's own registry lives inside the timely coordinators; this
//! book is kept beside it, runtime-side, from the same inputs:
//!
//! ```text
//!  config [[executors]] ─────────────────────────────┐
//!  HTTP join / heartbeat / leave ─┐                  ├─► ExecutorBook ─┐
//!  broker agents' control msgs ───┴─► Ingress::submit_control (observer) ┘  │
//!  live table (running tasks, their executor and resources) ─► snapshot ◄───┘
//! ```
//!
//! Every control command goes through [`Ingress::submit_control`]
//! (`crate::ingress::Ingress`), so observing it there sees HTTP joins, the
//! agents' joins through the broker and the library's
//! `RunningPipeline::control` alike. Liveness follows the allocator's rule
//! (`tidewater_operators::allocate::registry`): an executor with a heartbeat
//! TTL is *lost* once no heartbeat came within the TTL, and stays lost until
//! it joins again (a late heartbeat does not revive it); one without a TTL
//! (the config's executors) lives until it leaves. An executor that left is
//! *leaving* while tasks still run on it, then *left*.
//!
//! In a cluster each process sees the commands it ingested itself plus the
//! config's executors, which every process shares.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use serde::Serialize;

use tidewater_operators::model::{ControlCommand, ExecutorSpec, ResourceRequest};

/// How an executor came to be known.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorOrigin {
    /// Declared in the config file.
    Config,
    /// Joined at run time (over HTTP, through the broker, or in process).
    Joined,
}

/// An executor's state as the API reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutorState {
    /// Takes work.
    Active,
    /// Left, but tasks still run on it.
    Leaving,
    /// Left; nothing runs on it.
    Left,
    /// No heartbeat within its TTL.
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Standing {
    Live,
    Left { at_us: u64 },
    Lost { at_us: u64 },
}

#[derive(Clone, Debug)]
struct Entry {
    spec: ExecutorSpec,
    origin: ExecutorOrigin,
    ttl_us: Option<u64>,
    joined_at_us: u64,
    last_seen_us: u64,
    standing: Standing,
}

impl Entry {
    /// Declares the executor lost if its heartbeat is older than its TTL.
    fn settle(&mut self, now_us: u64) {
        if let (Standing::Live, Some(ttl)) = (self.standing, self.ttl_us) {
            if now_us > self.last_seen_us + ttl {
                self.standing = Standing::Lost {
                    at_us: self.last_seen_us + ttl,
                };
            }
        }
    }
}

/// A task running on an executor, as the live table knows it.
#[derive(Clone, Copy, Debug)]
pub struct Placed<'a> {
    /// The executor it runs on.
    pub executor: &'a str,
    /// The task's id.
    pub task: &'a str,
    /// What it holds.
    pub resources: &'a ResourceRequest,
}

/// One GPU device of an executor.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeviceView {
    /// Device index on the executor.
    pub index: usize,
    /// GPU model.
    pub model: String,
}

/// An executor's capacity.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CapacityView {
    /// CPU, thousandths of a core.
    pub cpu_milli: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// Number of GPU devices.
    pub gpus: usize,
    /// Model of the first device (empty without GPUs).
    pub gpu_model: String,
    /// Each GPU device.
    pub devices: Vec<DeviceView>,
    /// Custom resources.
    pub custom: BTreeMap<String, u64>,
}

/// What the running tasks hold on an executor.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AllocatedView {
    /// CPU, thousandths of a core.
    pub cpu_milli: u64,
    /// Memory, MiB.
    pub memory_mib: u64,
    /// GPU, thousandths of a device (whole devices count 1000 each).
    pub gpu_milli: u64,
    /// Custom resources.
    pub custom: BTreeMap<String, u64>,
}

/// Allocated over capacity, per resource, each in `0.0..=1.0`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ShareView {
    /// CPU share.
    pub cpu: f64,
    /// Memory share.
    pub memory: f64,
    /// GPU share (0 without GPUs).
    pub gpu: f64,
    /// The largest of the three.
    pub max: f64,
}

/// One executor, as `GET /v1/executors` lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExecutorView {
    /// Identifier.
    pub id: String,
    /// Active, leaving, left or lost.
    pub state: ExecutorState,
    /// From the config, or joined at run time.
    pub origin: ExecutorOrigin,
    /// Labels (`class` is the executor class).
    pub labels: BTreeMap<String, String>,
    /// What it can hold.
    pub capacity: CapacityView,
    /// What its running tasks hold.
    pub allocated: AllocatedView,
    /// Allocated over capacity.
    pub share: ShareView,
    /// Ids of the tasks running on it.
    pub running: Vec<String>,
    /// Heartbeat TTL, ms; `None` never expires.
    pub heartbeat_ttl_ms: Option<u64>,
    /// Time since the last heartbeat (or join), ms; `None` for executors
    /// without a TTL.
    pub heartbeat_age_ms: Option<u64>,
    /// When it was registered (config: process start), ms since the Unix epoch.
    pub joined_at_ms: u64,
    /// When it was declared lost or left, ms since the Unix epoch.
    pub ended_at_ms: Option<u64>,
}

/// Executors of this process, shared by the ingress (which feeds it) and
/// the HTTP API (which reads it).
#[derive(Clone, Default)]
pub struct ExecutorBook {
    entries: Arc<RwLock<HashMap<String, Entry>>>,
}

fn share(used: u64, capacity: u64) -> f64 {
    if capacity == 0 {
        0.0
    } else {
        (used as f64 / capacity as f64).min(1.0)
    }
}

impl ExecutorBook {
    /// A book holding the config's executors, registered at `now_us`.
    pub fn new(config_executors: Vec<ExecutorSpec>, now_us: u64) -> Self {
        let entries = config_executors
            .into_iter()
            .map(|spec| {
                let entry = Entry {
                    origin: ExecutorOrigin::Config,
                    ttl_us: None,
                    joined_at_us: now_us,
                    last_seen_us: now_us,
                    standing: Standing::Live,
                    spec,
                };
                (entry.spec.id.to_string(), entry)
            })
            .collect();
        ExecutorBook {
            entries: Arc::new(RwLock::new(entries)),
        }
    }

    /// Applies a control command seen at `now_us`; commands other than
    /// join, heartbeat and leave are ignored.
    pub fn observe(&self, command: &ControlCommand, now_us: u64) {
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        match command {
            ControlCommand::Join {
                executor,
                heartbeat_ttl_ms,
            } => {
                let ttl_us = heartbeat_ttl_ms.map(|ms| ms.saturating_mul(1000));
                let origin = entries
                    .get(executor.id.as_str())
                    .map_or(ExecutorOrigin::Joined, |e| e.origin);
                entries.insert(
                    executor.id.to_string(),
                    Entry {
                        spec: executor.clone(),
                        origin,
                        ttl_us,
                        joined_at_us: now_us,
                        last_seen_us: now_us,
                        standing: Standing::Live,
                    },
                );
            }
            ControlCommand::Heartbeat { executor } => {
                if let Some(entry) = entries.get_mut(executor.as_str()) {
                    entry.settle(now_us);
                    if entry.standing == Standing::Live {
                        entry.last_seen_us = entry.last_seen_us.max(now_us);
                    }
                }
            }
            ControlCommand::Leave { executor } => {
                if let Some(entry) = entries.get_mut(executor.as_str()) {
                    entry.settle(now_us);
                    if entry.standing == Standing::Live {
                        entry.standing = Standing::Left { at_us: now_us };
                    }
                }
            }
            ControlCommand::Cancel { .. }
            | ControlCommand::Reserve(_)
            | ControlCommand::Unreserve { .. } => {}
        }
    }

    /// Every executor at `now_us`, by id, with what `running` places on it.
    pub fn snapshot<'a>(
        &self,
        now_us: u64,
        running: impl IntoIterator<Item = Placed<'a>>,
    ) -> Vec<ExecutorView> {
        let mut placed: HashMap<&str, Vec<Placed<'a>>> = HashMap::new();
        for p in running {
            placed.entry(p.executor).or_default().push(p);
        }
        let Ok(mut entries) = self.entries.write() else {
            return Vec::new();
        };
        let mut views: Vec<ExecutorView> = entries
            .values_mut()
            .map(|entry| {
                entry.settle(now_us);
                let tasks = placed.remove(entry.spec.id.as_str()).unwrap_or_default();
                view(entry, &tasks, now_us)
            })
            .collect();
        views.sort_by(|a, b| a.id.cmp(&b.id));
        views
    }
}

fn view(entry: &Entry, tasks: &[Placed<'_>], now_us: u64) -> ExecutorView {
    let spec = &entry.spec;
    let mut allocated = AllocatedView::default();
    for p in tasks {
        allocated.cpu_milli += u64::from(p.resources.cpu_milli);
        allocated.memory_mib += u64::from(p.resources.memory_mib);
        allocated.gpu_milli += u64::from(p.resources.gpu.milli());
        for (name, amount) in p.resources.custom.iter() {
            *allocated.custom.entry(name.to_string()).or_default() += amount;
        }
    }
    let gpu_capacity = spec.gpus.len() as u64 * 1000;
    let cpu = share(allocated.cpu_milli, spec.cpu_milli);
    let memory = share(allocated.memory_mib, spec.memory_mib);
    let gpu = share(allocated.gpu_milli, gpu_capacity);
    let (state, ended_at_us) = match entry.standing {
        Standing::Live => (ExecutorState::Active, None),
        Standing::Left { at_us } if !tasks.is_empty() => (ExecutorState::Leaving, Some(at_us)),
        Standing::Left { at_us } => (ExecutorState::Left, Some(at_us)),
        Standing::Lost { at_us } => (ExecutorState::Lost, Some(at_us)),
    };
    ExecutorView {
        id: spec.id.to_string(),
        state,
        origin: entry.origin,
        labels: spec.labels.clone(),
        capacity: CapacityView {
            cpu_milli: spec.cpu_milli,
            memory_mib: spec.memory_mib,
            gpus: spec.gpus.len(),
            gpu_model: spec
                .gpus
                .first()
                .map(|g| g.model.to_string())
                .unwrap_or_default(),
            devices: spec
                .gpus
                .iter()
                .enumerate()
                .map(|(index, g)| DeviceView {
                    index,
                    model: g.model.to_string(),
                })
                .collect(),
            custom: spec
                .custom
                .iter()
                .map(|(k, v)| (k.to_string(), *v))
                .collect(),
        },
        allocated,
        share: ShareView {
            cpu,
            memory,
            gpu,
            max: cpu.max(memory).max(gpu),
        },
        running: tasks.iter().map(|p| p.task.to_string()).collect(),
        heartbeat_ttl_ms: entry.ttl_us.map(|us| us / 1000),
        heartbeat_age_ms: entry
            .ttl_us
            .map(|_| now_us.saturating_sub(entry.last_seen_us) / 1000),
        joined_at_ms: entry.joined_at_us / 1000,
        ended_at_ms: ended_at_us.map(|us| us / 1000),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tidewater_operators::model::{GpuRequest, Name};

    const S: u64 = 1_000_000;

    fn join(id: &str, ttl_ms: Option<u64>) -> ControlCommand {
        ControlCommand::Join {
            executor: ExecutorSpec::cpu(id, 4000, 8192).with_gpus(2, "A100"),
            heartbeat_ttl_ms: ttl_ms,
        }
    }

    fn state_of(book: &ExecutorBook, id: &str, now_us: u64) -> ExecutorState {
        book.snapshot(now_us, [])
            .into_iter()
            .find(|v| v.id == id)
            .map(|v| v.state)
            .expect("known executor")
    }

    #[test]
    fn config_executors_never_expire_and_joined_ones_are_lost_after_their_ttl() {
        let book = ExecutorBook::new(vec![ExecutorSpec::cpu("local", 8000, 1024)], 0);
        book.observe(&join("remote", Some(1000)), 0);
        assert_eq!(state_of(&book, "remote", S / 2), ExecutorState::Active);
        book.observe(
            &ControlCommand::Heartbeat {
                executor: Name::from("remote"),
            },
            S / 2,
        );
        assert_eq!(state_of(&book, "remote", S + S / 4), ExecutorState::Active);
        assert_eq!(state_of(&book, "remote", 2 * S), ExecutorState::Lost);
        // A late heartbeat does not revive it; a join does.
        book.observe(
            &ControlCommand::Heartbeat {
                executor: Name::from("remote"),
            },
            2 * S,
        );
        assert_eq!(state_of(&book, "remote", 2 * S), ExecutorState::Lost);
        book.observe(&join("remote", Some(1000)), 3 * S);
        assert_eq!(state_of(&book, "remote", 3 * S), ExecutorState::Active);
        assert_eq!(state_of(&book, "local", 100 * S), ExecutorState::Active);
        let views = book.snapshot(3 * S, []);
        assert_eq!(views[0].id, "local");
        assert_eq!(views[0].origin, ExecutorOrigin::Config);
        assert_eq!(views[0].heartbeat_age_ms, None);
        assert_eq!(views[1].heartbeat_age_ms, Some(0));
        assert_eq!(views[1].capacity.devices.len(), 2);
    }

    #[test]
    fn running_tasks_are_summed_into_shares_and_keep_a_leaving_executor() {
        let book = ExecutorBook::new(Vec::new(), 0);
        book.observe(&join("g", None), 0);
        let small = ResourceRequest {
            gpu: GpuRequest::Fraction(500),
            ..ResourceRequest::cpu(1000, 2048)
        };
        let whole = ResourceRequest {
            gpu: GpuRequest::Whole(1),
            ..ResourceRequest::cpu(1000, 0)
        };
        let running = [
            Placed {
                executor: "g",
                task: "a",
                resources: &small,
            },
            Placed {
                executor: "g",
                task: "b",
                resources: &whole,
            },
            Placed {
                executor: "elsewhere",
                task: "c",
                resources: &small,
            },
        ];
        let views = book.snapshot(S, running);
        assert_eq!(views.len(), 1);
        let g = &views[0];
        assert_eq!(g.running, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(g.allocated.cpu_milli, 2000);
        assert_eq!(g.allocated.gpu_milli, 1500);
        assert!((g.share.cpu - 0.5).abs() < 1e-9);
        assert!((g.share.memory - 0.25).abs() < 1e-9);
        assert!((g.share.gpu - 0.75).abs() < 1e-9);
        assert!((g.share.max - 0.75).abs() < 1e-9);

        book.observe(
            &ControlCommand::Leave {
                executor: Name::from("g"),
            },
            2 * S,
        );
        assert_eq!(
            book.snapshot(2 * S, running)[0].state,
            ExecutorState::Leaving
        );
        assert_eq!(state_of(&book, "g", 3 * S), ExecutorState::Left);
    }
}
