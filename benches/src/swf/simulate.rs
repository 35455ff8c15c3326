//! The event-driven simulation of one policy over a workload: jobs arrive,
//! wait in a queue, start when the policy lets them (FCFS, or EASY
//! backfilling with user or learned estimates), and finish at their
//! recorded run time; the report's waits, slowdowns and utilization come
//! from the start times.

use std::collections::{BTreeMap, HashMap, VecDeque};

use tidewater_operators::learn::SparseFeatures;

use super::predictor::Predictor;
use super::{Job, SwfError, SwfReport, Workload};

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
        trained_samples: policy_kind.learned().then_some(predictor.samples()),
    };
    Ok((report, start_time))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swf::POLICIES;

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
}
