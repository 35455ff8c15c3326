//! Continuous metric queries: the benchmark's ten queries (grouped counts,
//! averages and exact quantiles; unwindowed, tumbling and sliding windows)
//! over 20,000 metric events in 20 epochs, through the real
//! `window` → group → aggregate dataflow on one worker; and a group's
//! aggregates (count, average, p50, p99, max) computed from 1,000 sorted
//! values.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use timely::dataflow::operators::Input;

use tidewater_bench::query_bench::{bench_queries, metric_event};
use tidewater_dataflows::monitor::{aggregate, continuous_queries, Aggregate, QueryResults};
use tidewater_operators::model::MetricEvent;

const EPOCHS: u64 = 20;
const PER_EPOCH: u64 = 1_000;
/// Window of the windowed queries, in epochs: events leave the sliding
/// windows during the run, so retractions are measured too.
const WINDOW: u64 = 5;

fn window_aggregate(c: &mut Criterion) {
    let specs = bench_queries(WINDOW);
    let events: Vec<MetricEvent> = (0..EPOCHS * PER_EPOCH).map(metric_event).collect();
    let mut group = c.benchmark_group("monitor");
    group.throughput(Throughput::Elements(EPOCHS * PER_EPOCH));
    group.bench_function("ten_queries_20k_events", |b| {
        b.iter_batched(
            || events.clone(),
            |events| {
                let results = QueryResults::new(&specs);
                let specs = specs.clone();
                let published = results.clone();
                timely::execute_directly(move |worker| {
                    let mut input = worker.dataflow::<u64, _, _>(|scope| {
                        let (input, metrics) = scope.new_input::<Vec<MetricEvent>>();
                        continuous_queries(metrics, &specs, published.clone());
                        input
                    });
                    let mut events = events.into_iter();
                    for epoch in 0..EPOCHS {
                        let mut batch: Vec<MetricEvent> =
                            events.by_ref().take(PER_EPOCH as usize).collect();
                        input.send_batch(&mut batch);
                        input.advance_to(epoch + 1);
                        worker.step();
                    }
                    drop(input);
                    while worker.step() {}
                });
                black_box(results.all().len())
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn group_aggregates(c: &mut Criterion) {
    let values: Vec<(f64, i64)> = (0..1_000)
        .map(|i| (f64::from(i) / 10.0, 1 + i64::from(i % 3)))
        .collect();
    let aggregates = [
        Aggregate::Count,
        Aggregate::Avg,
        Aggregate::Quantile(0.5),
        Aggregate::Quantile(0.99),
        Aggregate::Max,
    ];
    let mut group = c.benchmark_group("monitor");
    group.throughput(Throughput::Elements(values.len() as u64));
    group.bench_function("aggregate_1k_values", |b| {
        b.iter(|| black_box(aggregate(black_box(&values), &aggregates)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::quick(3, 10);
    targets = window_aggregate, group_aggregates
}
criterion_main!(benches);
