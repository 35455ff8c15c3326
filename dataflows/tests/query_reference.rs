//! Continuous queries against a sequential recomputation: random metric
//! streams over many epochs, each query's published result at each epoch
//! equal to the aggregates recomputed from the events up to that epoch, with
//! 1 and 3 workers.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier, Mutex};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use timely::dataflow::operators::Input;

use tidewater_dataflows::monitor::{
    aggregate, continuous_queries, encode, Aggregate, Dimension, Filter, QueryResult, QueryResults,
    QuerySpec, Window,
};
use tidewater_operators::model::{MetricEvent, MetricKind, Name, QosClass};

const EPOCHS: u64 = 40;

fn specs() -> Vec<QuerySpec> {
    let all = vec![
        Aggregate::Count,
        Aggregate::Sum,
        Aggregate::Avg,
        Aggregate::Min,
        Aggregate::Max,
        Aggregate::Quantile(0.5),
        Aggregate::Quantile(0.99),
    ];
    vec![
        QuerySpec {
            name: "completed_by_kind_status".into(),
            filter: Filter {
                metric: Some(MetricKind::Completed),
                ..Filter::default()
            },
            group_by: vec![Dimension::Kind, Dimension::Status],
            aggregates: all.clone(),
            window: Window::None,
        },
        QuerySpec {
            name: "sliding_by_tenant".into(),
            filter: Filter::default(),
            group_by: vec![Dimension::Tenant, Dimension::Metric],
            aggregates: all.clone(),
            window: Window::Sliding { ms: 7 },
        },
        QuerySpec {
            name: "tumbling_total".into(),
            filter: Filter {
                tenant: Some("acme".into()),
                ..Filter::default()
            },
            group_by: vec![],
            aggregates: vec![Aggregate::Count, Aggregate::Max, Aggregate::Quantile(0.9)],
            window: Window::Tumbling { ms: 5 },
        },
        // Queries whose aggregates follow from count and sum take the
        // abelian path (differential's count_total).
        QuerySpec {
            name: "moments_by_executor_sliding".into(),
            filter: Filter::default(),
            group_by: vec![Dimension::Executor, Dimension::Kind],
            aggregates: vec![Aggregate::Count, Aggregate::Sum, Aggregate::Avg],
            window: Window::Sliding { ms: 4 },
        },
        QuerySpec {
            name: "count_by_kind_tumbling".into(),
            filter: Filter {
                metric: Some(MetricKind::Assigned),
                ..Filter::default()
            },
            group_by: vec![Dimension::Kind],
            aggregates: vec![Aggregate::Count],
            window: Window::Tumbling { ms: 3 },
        },
        // Min and max without quantiles keep only each epoch's extremes.
        QuerySpec {
            name: "extremes_by_tenant_sliding".into(),
            filter: Filter::default(),
            group_by: vec![Dimension::Tenant],
            aggregates: vec![
                Aggregate::Count,
                Aggregate::Sum,
                Aggregate::Avg,
                Aggregate::Min,
                Aggregate::Max,
            ],
            window: Window::Sliding { ms: 6 },
        },
        QuerySpec {
            name: "min_by_kind_tumbling".into(),
            filter: Filter {
                status: Some("failed".into()),
                ..Filter::default()
            },
            group_by: vec![Dimension::Kind, Dimension::Metric],
            aggregates: vec![Aggregate::Min],
            window: Window::Tumbling { ms: 4 },
        },
        QuerySpec {
            name: "sum_by_status".into(),
            filter: Filter::default(),
            group_by: vec![Dimension::Status],
            aggregates: vec![Aggregate::Sum, Aggregate::Avg],
            window: Window::None,
        },
    ]
}

/// Events for each epoch, split over workers round-robin.
fn workload(seed: u64) -> Vec<Vec<MetricEvent>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let kinds = [
        MetricKind::Completed,
        MetricKind::Assigned,
        MetricKind::Submitted,
    ];
    (0..EPOCHS)
        .map(|epoch| {
            (0..rng.random_range(0..30))
                .map(|_| MetricEvent {
                    kind: kinds[rng.random_range(0..kinds.len())],
                    task_kind: Name::from(["noop", "sleep", "command"][rng.random_range(0..3)]),
                    tenant: Name::from(["acme", "globex"][rng.random_range(0..2)]),
                    executor: Name::from(["e0", "e1"][rng.random_range(0..2)]),
                    status: Name::from(["succeeded", "failed"][rng.random_range(0..2)]),
                    qos: QosClass::Burstable,
                    // Small values repeat, exercising multiplicities; a
                    // few are not exact in binary, exercising sums.
                    value: if rng.random_bool(0.1) {
                        f64::from(rng.random_range(-5..50)) / 10.0
                    } else {
                        f64::from(rng.random_range(-5..50)) / 4.0
                    },
                    at_ms: epoch,
                })
                .collect()
        })
        .collect()
}

/// The rows a query should show as of `epoch`.
fn reference(
    spec: &QuerySpec,
    events: &[Vec<MetricEvent>],
    epoch: u64,
) -> BTreeMap<Vec<String>, Vec<f64>> {
    let mut groups: BTreeMap<Vec<String>, BTreeMap<u64, i64>> = BTreeMap::new();
    for (t, batch) in events.iter().enumerate().take(epoch as usize + 1) {
        let t = t as u64;
        let visible = match spec.window.expiry(t) {
            None => true,
            Some(expiry) => expiry > epoch,
        };
        if !visible {
            continue;
        }
        for event in batch.iter().filter(|e| spec.filter.matches(e)) {
            let key = spec
                .group_by
                .iter()
                .map(|d| d.of(event).to_string())
                .collect();
            *groups
                .entry(key)
                .or_default()
                .entry(encode(event.value))
                .or_insert(0) += 1;
        }
    }
    groups
        .into_iter()
        .filter_map(|(key, values)| {
            let values: Vec<(f64, i64)> = values
                .into_iter()
                .map(|(v, n)| (tidewater_dataflows::monitor::decode(v), n))
                .collect();
            aggregate(&values, &spec.aggregates).map(|r| (key, r))
        })
        .collect()
}

fn rows(result: &QueryResult, spec: &QuerySpec) -> BTreeMap<Vec<String>, Vec<f64>> {
    result
        .rows
        .iter()
        .map(|row| {
            let key = spec
                .group_by
                .iter()
                .map(|d| row.key[d.as_str()].clone())
                .collect();
            let values = spec
                .aggregates
                .iter()
                .map(|a| row.values[&a.label()])
                .collect();
            (key, values)
        })
        .collect()
}

fn run(workers: usize, seed: u64) {
    let events = Arc::new(workload(seed));
    let specs = specs();
    let results = QueryResults::new(&specs);
    let snapshots: Arc<Mutex<Vec<Vec<QueryResult>>>> = Arc::default();
    let barrier = Arc::new(Barrier::new(workers));
    {
        let (events, specs, results, snapshots) = (
            Arc::clone(&events),
            specs.clone(),
            results.clone(),
            Arc::clone(&snapshots),
        );
        timely::execute(timely::Config::process(workers), move |worker| {
            let (index, peers) = (worker.index(), worker.peers());
            let mut input = worker.dataflow::<u64, _, _>(|scope| {
                let (input, metrics) = scope.new_input::<Vec<MetricEvent>>();
                continuous_queries(metrics, &specs, results.clone());
                input
            });
            for epoch in 0..EPOCHS {
                for (i, event) in events[epoch as usize].iter().enumerate() {
                    if i % peers == index {
                        input.send(event.clone());
                    }
                }
                input.advance_to(epoch + 1);
                while specs.iter().any(|s| {
                    results
                        .get(&s.name)
                        .and_then(|r| r.as_of)
                        .is_none_or(|a| a < epoch)
                }) {
                    worker.step();
                }
                barrier.wait();
                if index == 0 {
                    let snapshot = specs.iter().filter_map(|s| results.get(&s.name)).collect();
                    snapshots.lock().expect("snapshots").push(snapshot);
                }
                barrier.wait();
            }
        })
        .expect("timely");
    }
    let snapshots = snapshots.lock().expect("snapshots");
    assert_eq!(snapshots.len() as u64, EPOCHS);
    for (epoch, snapshot) in snapshots.iter().enumerate() {
        for (spec, result) in specs.iter().zip(snapshot) {
            assert_eq!(result.as_of, Some(epoch as u64), "{}", spec.name);
            let expected = reference(spec, &events, epoch as u64);
            assert_eq!(
                rows(result, spec),
                expected,
                "{} at epoch {epoch} with {workers} workers",
                spec.name
            );
        }
    }
}

#[test]
fn queries_equal_sequential_recomputation_on_one_worker() {
    run(1, 1);
    run(1, 2);
}

#[test]
fn queries_equal_sequential_recomputation_on_three_workers() {
    run(3, 3);
    run(3, 4);
}
