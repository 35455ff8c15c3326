//! Simulation of a batch cluster from a Standard Workload Format (SWF) log.
//!
//! Jobs arrive at their submit time and need their processor count for
//! their recorded run time; the cluster has the log's `MaxProcs` (or the
//! largest request). Policies:
//!
//! - `fcfs`: strict first come, first served, no backfilling;
//! - `user-estimate`: EASY backfilling (the queue head gets a reservation;
//!   later jobs may start early if they do not delay it) with the user's
//!   requested time as each job's run-time estimate, backfill candidates in
//!   arrival order;
//! - `learned`: the same EASY backfilling with estimates from an online
//!   model of log run time, trained only on jobs that have finished before
//!   each decision (no peeking), capped by the requested time (jobs are
//!   killed there on real clusters);
//! - `user-estimate-sjbf` and `learned-sjbf`: the same two estimators, with
//!   backfill candidates tried shortest-estimate-first instead of in arrival
//!   order (the head and its reservation are unchanged). Comparing the two
//!   `-sjbf` variants isolates what the learned estimates add.
//!
//! Data flow of the learned estimator: a job's features are computed at
//! each decision from what it declared at submission (user, queue, hour,
//! processors, requested time) and from the history of jobs that had
//! finished by then (the user's last two run times, the last run time of
//! the same user with the same request); when a job finishes, the features
//! it was started with and its log run time become a training sample.
//!
//! A running job that outlives its estimate gets a new one (twice its
//! elapsed time, at least a minute more, at most its requested time) when
//! the head's reservation is computed; actual run times are never read
//! before a job has finished.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;

use serde::Serialize;

use tidewater_operators::learn::{
    FeatureHasher, Loss, ModelKind, ModelSpec, OnlineModel, OptimizerKind, SparseFeatures,
};

/// Why a log could not be simulated.
#[derive(Debug, thiserror::Error)]
pub enum SwfError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a valid SWF job.
    #[error("{path} line {line}: {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// The policy name is not known.
    #[error("unknown policy {0:?}: use fcfs, user-estimate or learned")]
    UnknownPolicy(String),
    /// No runnable job.
    #[error("{0}: no job with a positive run time and processor count")]
    Empty(String),
}

/// One job of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Job number.
    pub id: u64,
    /// Submit time, seconds.
    pub submit: f64,
    /// Recorded run time, seconds.
    pub run: f64,
    /// Processors.
    pub procs: u32,
    /// The user's requested time, seconds, as declared (some jobs ran
    /// longer); the run time when the log does not give one.
    pub requested: f64,
    /// User id.
    pub user: i64,
    /// Queue number.
    pub queue: i64,
}

/// A parsed log.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Processors in the machine.
    pub processors: u32,
    /// Jobs in submit order.
    pub jobs: Vec<Job>,
}

/// Reads an SWF file. Header lines start with `;`; each job line has at
/// least 18 whitespace-separated fields (more are accepted and ignored).
/// Jobs without a positive run time or processor count are skipped.
pub fn read_swf(path: &Path) -> Result<Workload, SwfError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SwfError::Read {
        path: name.clone(),
        source,
    })?;
    let mut max_procs: Option<u32> = None;
    let mut jobs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix(';') {
            if let Some(value) = header.trim().strip_prefix("MaxProcs:") {
                max_procs = value.trim().parse().ok();
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let invalid = |detail: String| SwfError::Invalid {
            path: name.clone(),
            line: i + 1,
            detail,
        };
        if fields.len() < 18 {
            return Err(invalid(format!("{} fields, expected 18", fields.len())));
        }
        let number = |k: usize| -> Result<f64, SwfError> {
            fields[k]
                .parse::<f64>()
                .map_err(|e| invalid(format!("field {} {:?}: {e}", k + 1, fields[k])))
        };
        let (id, submit, run) = (number(0)?, number(1)?, number(3)?);
        let allocated = number(4)?;
        let requested_procs = number(7)?;
        let requested_time = number(8)?;
        let procs = if allocated > 0.0 {
            allocated
        } else {
            requested_procs
        };
        if run <= 0.0 || procs <= 0.0 {
            continue;
        }
        jobs.push(Job {
            id: id as u64,
            submit,
            run,
            procs: procs as u32,
            // As the user declared it, even where the job ran longer: the
            // estimators may not learn the run time from it.
            requested: if requested_time > 0.0 {
                requested_time
            } else {
                run
            },
            user: number(11)? as i64,
            queue: number(14)? as i64,
        });
    }
    if jobs.is_empty() {
        return Err(SwfError::Empty(name));
    }
    jobs.sort_by(|a, b| a.submit.total_cmp(&b.submit).then(a.id.cmp(&b.id)));
    let largest = jobs.iter().map(|j| j.procs).max().unwrap_or(1);
    Ok(Workload {
        processors: max_procs.unwrap_or(largest).max(largest),
        jobs,
    })
}

/// The outcome of a simulation.
#[derive(Clone, Debug, Serialize)]
pub struct SwfReport {
    /// Policy name.
    pub policy: String,
    /// How backfill candidates are ordered: `none` (FCFS), `arrival` or
    /// `shortest_estimate_first`.
    pub backfill_order: String,
    /// Jobs simulated.
    pub jobs: usize,
    /// Processors.
    pub processors: u32,
    /// Mean wait, seconds.
    pub mean_wait_s: f64,
    /// Mean bounded slowdown, τ = 10 s.
    pub mean_bounded_slowdown: f64,
    /// Busy processor-seconds over available processor-seconds from the
    /// first submit to the last finish.
    pub utilization: f64,
    /// Last finish minus first submit, seconds.
    pub makespan_s: f64,
    /// Median |ln(estimate) − ln(actual)| of the estimates used when jobs
    /// started (for every EASY policy, so user estimates can be compared).
    pub median_abs_log_error: Option<f64>,
    /// For learned policies: samples the model trained on.
    pub trained_samples: Option<u64>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Estimator {
    User,
    Learned,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Policy {
    Fcfs,
    Easy {
        estimator: Estimator,
        shortest_first: bool,
    },
}

impl Policy {
    fn parse(name: &str) -> Result<Policy, SwfError> {
        let easy = |estimator, shortest_first| Policy::Easy {
            estimator,
            shortest_first,
        };
        Ok(match name {
            "fcfs" => Policy::Fcfs,
            "user-estimate" | "user_estimate" => easy(Estimator::User, false),
            "user-estimate-sjbf" | "user_estimate_sjbf" => easy(Estimator::User, true),
            "learned" => easy(Estimator::Learned, false),
            "learned-sjbf" | "learned_sjbf" => easy(Estimator::Learned, true),
            other => return Err(SwfError::UnknownPolicy(other.to_string())),
        })
    }

    fn learned(self) -> bool {
        matches!(
            self,
            Policy::Easy {
                estimator: Estimator::Learned,
                ..
            }
        )
    }
}

/// Every policy [`simulate`] accepts, baseline first.
pub const POLICIES: [&str; 5] = [
    "fcfs",
    "user-estimate",
    "user-estimate-sjbf",
    "learned",
    "learned-sjbf",
];

/// Scale of log run times inside the model (targets are ln(s) / 10).
const LOG_SCALE: f64 = 10.0;

/// Finished jobs per training step of the learned estimator.
const BATCH: usize = 4;

/// What is known of one user from the jobs of theirs that have finished.
#[derive(Default)]
struct UserHistory {
    /// The last two log run times, newest first.
    last: [Option<f64>; 2],
    /// Running mean of ln(run / requested).
    ratio_sum: f64,
    count: f64,
}

/// Online run-time predictor over the shared learning code
/// (`tidewater_operators::learn`): hashed categorical features and history
/// features into a linear model of ln(run / requested), trained with Adam
/// (step 0.01) on mini-batches of 4 finished jobs.
struct Predictor {
    hasher: FeatureHasher,
    model: OnlineModel,
    users: HashMap<i64, UserHistory>,
    /// Last log run time by (user, requested time, processors).
    same_request: HashMap<(i64, u64, u32), f64>,
    batch: Vec<(SparseFeatures, f32)>,
}

fn log_bucket(x: f64) -> String {
    (x.max(1.0).log2().round() as i64).to_string()
}

impl Predictor {
    fn new() -> Self {
        let dim = 1 << 14;
        Predictor {
            hasher: FeatureHasher::new(dim),
            model: OnlineModel::new(&ModelSpec {
                kind: ModelKind::Linear,
                dim,
                loss: Loss::Squared,
                optimizer: OptimizerKind::Adam {
                    learning_rate: 0.01,
                },
                l2: 1e-5,
                seed: 7,
            }),
            users: HashMap::new(),
            same_request: HashMap::new(),
            batch: Vec::new(),
        }
    }

    fn features(&self, job: &Job) -> SparseFeatures {
        let h = &self.hasher;
        let mut x = h.start();
        let user = job.user.to_string();
        let requested = log_bucket(job.requested);
        h.categorical(&mut x, "user", &user);
        h.categorical(&mut x, "queue", &job.queue.to_string());
        h.categorical(
            &mut x,
            "hour",
            &(((job.submit / 3600.0) as i64) % 24).to_string(),
        );
        h.categorical(&mut x, "procs", &job.procs.next_power_of_two().to_string());
        h.categorical(&mut x, "requested", &requested);
        h.categorical(&mut x, "user_requested", &format!("{user}/{requested}"));
        let log_requested = job.requested.max(1.0).ln();
        h.numeric(&mut x, "log_requested", (log_requested / LOG_SCALE) as f32);
        h.numeric(
            &mut x,
            "log_procs",
            (f64::from(job.procs).ln() / 5.0) as f32,
        );
        // History, in the model's target space: ln(run / requested).
        let history = self.users.get(&job.user);
        let last: Vec<f64> = history
            .map(|u| u.last.iter().flatten().copied().collect())
            .unwrap_or_default();
        if last.is_empty() {
            h.numeric(&mut x, "user_unknown", 1.0);
        } else {
            let mean = last.iter().sum::<f64>() / last.len() as f64;
            h.numeric(
                &mut x,
                "user_last_two",
                ((mean - log_requested).min(0.0) / LOG_SCALE) as f32,
            );
        }
        if let Some(u) = history.filter(|u| u.count > 0.0) {
            h.numeric(
                &mut x,
                "user_mean_ratio",
                ((u.ratio_sum / u.count) / LOG_SCALE) as f32,
            );
        }
        match self
            .same_request
            .get(&(job.user, job.requested as u64, job.procs))
        {
            Some(&last) => h.numeric(
                &mut x,
                "same_request_last",
                ((last - log_requested).min(0.0) / LOG_SCALE) as f32,
            ),
            None => h.numeric(&mut x, "same_request_unknown", 1.0),
        }
        x
    }

    /// Predicted run time in seconds, within [1, requested]. The model
    /// predicts ln(run / requested): it starts at the user's estimate and
    /// learns how each kind of job departs from it.
    fn predict(&self, job: &Job, x: &SparseFeatures) -> f64 {
        let log_ratio = f64::from(self.model.predict(x)) * LOG_SCALE;
        let seconds = (job.requested.max(1.0).ln() + log_ratio).exp();
        if seconds.is_finite() {
            seconds.clamp(1.0, job.requested.max(1.0))
        } else {
            job.requested
        }
    }

    /// Learns from a finished job, started with features `x`.
    fn learn(&mut self, job: &Job, x: SparseFeatures) {
        let log_run = job.run.max(1.0).ln();
        let log_ratio = (log_run - job.requested.max(1.0).ln()).min(0.0);
        self.batch.push((x, (log_ratio / LOG_SCALE) as f32));
        if self.batch.len() >= BATCH {
            self.model.train_batch(&self.batch);
            self.batch.clear();
        }
        let user = self.users.entry(job.user).or_default();
        user.last = [Some(log_run), user.last[0]];
        user.ratio_sum += (log_run - job.requested.max(1.0).ln()).min(0.0);
        user.count += 1.0;
        self.same_request
            .insert((job.user, job.requested as u64, job.procs), log_run);
    }
}

struct Running {
    start: f64,
    estimated_end: f64,
    procs: u32,
    /// The learned policy's features at start, trained on at finish.
    features: Option<SparseFeatures>,
}

/// The cluster's state during a simulation.
struct Cluster {
    free: u32,
    /// Finish events: (end time in ms, job) -> job index. Only the event
    /// loop reads the end times, to know when a job finishes.
    finishing: BTreeMap<(u64, usize), usize>,
    running: HashMap<usize, Running>,
    start_time: Vec<f64>,
    log_errors: Vec<f64>,
}

impl Cluster {
    fn start(&mut self, jobs: &[Job], j: usize, now: f64, estimate: Estimate) {
        self.free -= jobs[j].procs;
        self.start_time[j] = now;
        self.log_errors
            .push((estimate.seconds.max(1.0).ln() - jobs[j].run.max(1.0).ln()).abs());
        self.finishing
            .insert((((now + jobs[j].run) * 1000.0) as u64, j), j);
        self.running.insert(
            j,
            Running {
                start: now,
                estimated_end: now + estimate.seconds,
                procs: jobs[j].procs,
                features: estimate.features,
            },
        );
    }
}

/// A run-time estimate, with the features it came from when learned.
struct Estimate {
    seconds: f64,
    features: Option<SparseFeatures>,
}

/// Simulates `workload` under `policy` (one of [`POLICIES`]).
pub fn simulate(workload: &Workload, policy: &str) -> Result<SwfReport, SwfError> {
    simulate_with_starts(workload, policy).map(|(report, _)| report)
}

/// [`simulate`], also returning each job's start time.
fn simulate_with_starts(
    workload: &Workload,
    policy: &str,
) -> Result<(SwfReport, Vec<f64>), SwfError> {
    let policy_kind = Policy::parse(policy)?;
    let jobs = &workload.jobs;
    let total = workload.processors;
    let mut predictor = Predictor::new();
    let mut cluster = Cluster {
        free: total,
        finishing: BTreeMap::new(),
        running: HashMap::new(),
        start_time: vec![0.0; jobs.len()],
        log_errors: Vec::new(),
    };
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut next_arrival = 0usize;
    let estimate = |j: usize, predictor: &Predictor| -> Estimate {
        if policy_kind.learned() {
            let x = predictor.features(&jobs[j]);
            Estimate {
                seconds: predictor.predict(&jobs[j], &x),
                features: Some(x),
            }
        } else {
            Estimate {
                seconds: jobs[j].requested,
                features: None,
            }
        }
    };

    while next_arrival < jobs.len() || !queue.is_empty() || !cluster.finishing.is_empty() {
        let arrival = jobs.get(next_arrival).map(|j| j.submit);
        let finish = cluster
            .finishing
            .keys()
            .next()
            .map(|&(t, _)| t as f64 / 1000.0);
        let now = match (arrival, finish) {
            (Some(a), Some(f)) => a.min(f),
            (Some(a), None) => a,
            (None, Some(f)) => f,
            (None, None) => break,
        };
        // Finishes first at equal times, so their processors are free.
        while let Some((&(t, seq), &j)) = cluster.finishing.iter().next() {
            if t as f64 / 1000.0 > now {
                break;
            }
            cluster.finishing.remove(&(t, seq));
            if let Some(r) = cluster.running.remove(&j) {
                cluster.free += r.procs;
                if let Some(x) = r.features {
                    predictor.learn(&jobs[j], x);
                }
            }
        }
        while next_arrival < jobs.len() && jobs[next_arrival].submit <= now {
            queue.push_back(next_arrival);
            next_arrival += 1;
        }
        while let Some(&head) = queue.front() {
            if jobs[head].procs > cluster.free {
                break;
            }
            queue.pop_front();
            let e = estimate(head, &predictor);
            cluster.start(jobs, head, now, e);
        }
        let Policy::Easy { shortest_first, .. } = policy_kind else {
            continue;
        };
        if queue.is_empty() {
            continue;
        }
        // EASY: reservation for the head, backfill what does not delay it.
        let head = queue[0];
        let mut ends: Vec<(f64, u32)> = cluster
            .running
            .iter()
            .map(|(&j, r)| {
                let end = if r.estimated_end > now {
                    r.estimated_end
                } else {
                    // Outlived its estimate: guess again from what is known.
                    let elapsed = now - r.start;
                    (now + elapsed.max(60.0)).min(r.start + jobs[j].requested.max(elapsed + 1.0))
                };
                (end, r.procs)
            })
            .collect();
        // Ties broken by size so that the reservation does not depend on map order.
        ends.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let (mut shadow, mut available) = (f64::INFINITY, cluster.free);
        for (end, procs) in ends {
            available += procs;
            if available >= jobs[head].procs {
                shadow = end;
                break;
            }
        }
        let mut extra = available.saturating_sub(jobs[head].procs);
        let mut candidates: Vec<(usize, Estimate)> = queue
            .iter()
            .skip(1)
            .filter(|&&j| jobs[j].procs <= cluster.free)
            .map(|&j| (j, estimate(j, &predictor)))
            .collect();
        if shortest_first {
            // Stable: equal estimates keep arrival order.
            candidates.sort_by(|a, b| a.1.seconds.total_cmp(&b.1.seconds));
        }
        let mut started = Vec::new();
        for (j, est) in candidates {
            if jobs[j].procs > cluster.free {
                continue;
            }
            let before_shadow = now + est.seconds <= shadow;
            if before_shadow || jobs[j].procs <= extra {
                if !before_shadow {
                    extra -= jobs[j].procs;
                }
                started.push(j);
                cluster.start(jobs, j, now, est);
            }
        }
        if !started.is_empty() {
            queue.retain(|j| !started.contains(j));
        }
    }

    let n = jobs.len() as f64;
    let first_submit = jobs.first().map_or(0.0, |j| j.submit);
    let (start_time, mut log_errors) = (cluster.start_time, cluster.log_errors);
    let start_time: Vec<f64> = start_time;
    let last_end = jobs
        .iter()
        .zip(&start_time)
        .map(|(j, s)| s + j.run)
        .fold(0.0, f64::max);
    let waits: Vec<f64> = jobs
        .iter()
        .zip(&start_time)
        .map(|(j, s)| s - j.submit)
        .collect();
    let slowdown: f64 = jobs
        .iter()
        .zip(&waits)
        .map(|(j, w)| ((w + j.run) / j.run.max(10.0)).max(1.0))
        .sum::<f64>()
        / n;
    let busy: f64 = jobs.iter().map(|j| f64::from(j.procs) * j.run).sum();
    let makespan = last_end - first_submit;
    log_errors.sort_by(f64::total_cmp);
    let (backfill_order, easy) = match policy_kind {
        Policy::Fcfs => ("none", false),
        Policy::Easy {
            shortest_first: false,
            ..
        } => ("arrival", true),
        Policy::Easy {
            shortest_first: true,
            ..
        } => ("shortest_estimate_first", true),
    };
    let report = SwfReport {
        policy: policy.to_string(),
        backfill_order: backfill_order.to_string(),
        jobs: jobs.len(),
        processors: total,
        mean_wait_s: waits.iter().sum::<f64>() / n,
        mean_bounded_slowdown: slowdown,
        utilization: busy / (f64::from(total) * makespan.max(1.0)),
        makespan_s: makespan,
        median_abs_log_error: (easy && !log_errors.is_empty())
            .then(|| log_errors[log_errors.len() / 2]),
        trained_samples: policy_kind.learned().then_some(predictor.model.samples()),
    };
    Ok((report, start_time))
}

/// Reads and simulates an SWF file (the `tidewater replay --swf` command).
pub fn replay_swf(path: &Path, policy: &str) -> Result<SwfReport, SwfError> {
    simulate(&read_swf(path)?, policy)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, submit: f64, run: f64, procs: u32, requested: f64) -> Job {
        Job {
            id,
            submit,
            run,
            procs,
            requested,
            user: 1,
            queue: 1,
        }
    }

    #[test]
    fn easy_backfills_short_jobs_without_delaying_the_head() {
        // 4 processors: a 4-proc job runs to t=100; a 4-proc head waits; a
        // 1-proc job that fits... only after t=100, so nothing backfills;
        // then a long 2-proc job behind the head must not jump it.
        let w = Workload {
            processors: 4,
            jobs: vec![
                job(1, 0.0, 100.0, 3, 100.0),
                job(2, 1.0, 50.0, 4, 50.0),
                job(3, 2.0, 10.0, 1, 10.0),
                job(4, 3.0, 500.0, 1, 500.0),
            ],
        };
        let fcfs = simulate(&w, "fcfs").expect("fcfs");
        let easy = simulate(&w, "user-estimate").expect("easy");
        // FCFS: job 3 waits for job 2 (starts at 150); EASY backfills it at t=2.
        assert!(easy.mean_wait_s < fcfs.mean_wait_s, "{easy:?} vs {fcfs:?}");
        // Job 4 (500 s) would delay the head's reservation at t=100, so it waits.
        assert!(easy.mean_wait_s > 0.0);
    }

    /// A busy synthetic log: 16 processors, 6 users with habits, requests
    /// that over- and under-state run times.
    fn synthetic() -> Workload {
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as f64 / (1u64 << 31) as f64
        };
        let jobs = (0..400)
            .map(|i| {
                let user = (next() * 6.0) as i64;
                let run = 30.0 * (1.0 + user as f64) * (0.5 + next());
                let requested = if user % 2 == 0 { run * 4.0 } else { run * 1.2 };
                Job {
                    id: i,
                    submit: i as f64 * 20.0,
                    run,
                    procs: 1 + (next() * 8.0) as u32,
                    requested: requested.round().max(1.0),
                    user,
                    queue: 1,
                }
            })
            .collect();
        Workload {
            processors: 16,
            jobs,
        }
    }

    #[test]
    fn decisions_never_depend_on_unfinished_run_times() {
        let w = synthetic();
        for policy in POLICIES {
            let (_, starts) = simulate_with_starts(&w, policy).expect("simulates");
            for k in [50usize, 200, 350] {
                // Finish events are kept in whole milliseconds, rounded down.
                let finish = starts[k] + w.jobs[k].run - 0.002;
                let mut changed = w.clone();
                changed.jobs[k].run *= 3.0;
                let (_, after) = simulate_with_starts(&changed, policy).expect("simulates");
                for (j, (a, b)) in starts.iter().zip(&after).enumerate() {
                    if *a < finish {
                        assert_eq!(
                            a, b,
                            "{policy}: job {j} moved when job {k}'s run time changed"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn policies_report_their_measures() {
        let w = synthetic();
        for policy in POLICIES {
            let r = simulate(&w, policy).expect("simulates");
            assert_eq!(r.jobs, 400);
            assert!(r.mean_bounded_slowdown >= 1.0 && r.utilization > 0.0 && r.utilization <= 1.0);
            let learned = policy.starts_with("learned");
            assert_eq!(r.trained_samples.is_some(), learned, "{policy}");
            assert_eq!(
                r.median_abs_log_error.is_some(),
                policy != "fcfs",
                "{policy}"
            );
            let json = serde_json::to_value(&r).expect("json");
            for key in ["mean_wait_s", "mean_bounded_slowdown", "utilization"] {
                assert!(json[key].is_number(), "{policy}: {key}");
            }
        }
        assert!(matches!(
            simulate(&w, "oracle"),
            Err(SwfError::UnknownPolicy(_))
        ));
    }

    #[test]
    fn reader_accepts_headers_and_extra_fields_and_reports_bad_lines() {
        let dir = std::env::temp_dir().join(format!("swf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("good.swf");
        std::fs::write(
            &good,
            "; MaxProcs: 8\n1 0 5 100 2 -1 -1 2 200 -1 1 7 1 -1 3 1 -1 -1 extra more\n2 10 0 0 2 -1 -1 2 200 -1 5 7 1 -1 3 1 -1 -1\n",
        )
        .expect("write");
        let w = read_swf(&good).expect("valid");
        assert_eq!((w.processors, w.jobs.len()), (8, 1));
        assert_eq!(w.jobs[0].requested, 200.0);
        let bad = dir.join("bad.swf");
        std::fs::write(&bad, "1 0 5 100 2\n").expect("write");
        let err = read_swf(&bad).expect_err("short line");
        assert!(err.to_string().contains("line 1: 5 fields"), "{err}");
    }
}
