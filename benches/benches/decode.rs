//! Decoding task records: the JSON bytes a source hands the pipeline,
//! through [`Validator::decode`] (parse, check, build the task), for a
//! minimal task, a typical one with resources and a payload, and a record
//! rejected for a wrong field type.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use tidewater_operators::model::AckToken;
use tidewater_operators::validate::{ValidationLimits, Validator};

const MINIMAL: &str = r#"{"kind":"noop"}"#;
const TYPICAL: &str = r#"{"id":"job-42","kind":"command","tenant":"analytics","qos":"latency_sensitive","priority":3,"timeout_ms":60000,"max_attempts":3,"resources":{"cpu_milli":2000,"memory_mib":4096,"gpu_milli":500,"gpu_models":["V100"]},"payload":{"program":"echo","args":["hello","world"]}}"#;
const WRONG_TYPE: &str = r#"{"id":"job-43","kind":5,"resources":{"cpu_milli":100}}"#;

fn decode(c: &mut Criterion) {
    let mut group = c.benchmark_group("decode");
    for (name, record, valid) in [
        ("minimal", MINIMAL, true),
        ("typical", TYPICAL, true),
        ("wrong_type", WRONG_TYPE, false),
    ] {
        let mut validator = Validator::new(ValidationLimits::default(), 0, 1);
        let decoded = validator.decode(record.as_bytes(), AckToken::NONE, 0);
        assert_eq!(decoded.is_ok(), valid, "{name}: {decoded:?}");
        group.throughput(Throughput::Bytes(record.len() as u64));
        group.bench_function(name, |b| {
            b.iter(|| {
                let decoded = validator.decode(black_box(record.as_bytes()), AckToken::NONE, 0);
                black_box(decoded.is_ok())
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::quick(2, 30);
    targets = decode
}
criterion_main!(benches);
