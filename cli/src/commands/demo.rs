//! `tidewater demo`: the pipeline on a built-in mixed workload (no-op,
//! sleep, command and inline-handler tasks, and one in ten malformed),
//! in memory and without HTTP; shows progress, then a summary, and fails if
//! the outcomes do not add up.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;

use tidewater::config::{Config, StoreKind};
use tidewater::{HandlerOutput, Pipeline};

use super::progress::Progress;

/// Arguments of `tidewater demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Tasks in the workload.
    #[arg(long, default_value_t = 2000)]
    tasks: u64,
    /// Timely workers.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

/// Runs the demo workload to the end and prints its summary.
pub fn execute(args: DemoArgs) -> anyhow::Result<()> {
    let mut config = Config {
        workers: args.workers,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    config.handlers.command_allowlist = vec!["echo".into()];
    config.executors[0].count = 4;
    config.executors[0].cpu_milli = 4_000;
    let pipeline = Pipeline::builder(config)
        .inline_handler("checksum", |task| {
            let sum: u64 = task
                .payload
                .as_deref()
                .unwrap_or("")
                .bytes()
                .map(u64::from)
                .sum();
            Ok(HandlerOutput::value(sum.into()))
        })
        .start()?;
    let ingress = pipeline.ingress();
    let started = Instant::now();
    let mut expected_rejections = 0;
    for n in 0..args.tasks {
        let (json, rejected) = workload_task(n);
        expected_rejections += u64::from(rejected);
        ingress.submit_json("demo", json.into_bytes(), 0, 0)?;
    }
    let stats = pipeline.stats();
    let progress = Progress::new("demo", Some(args.tasks));
    loop {
        let s = stats.snapshot();
        progress.update(
            s.finished + s.rejected,
            &format!("{} finished, {} rejected", s.finished, s.rejected),
        );
        if s.finished + s.rejected >= args.tasks {
            break;
        }
        if started.elapsed() > Duration::from_secs(120) {
            progress.finish();
            bail!("demo did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    progress.finish();
    let elapsed = started.elapsed().as_secs_f64();
    let summary = pipeline.shutdown()?;
    println!(
        "Tidewater demo: {} tasks in {:.2} s ({:.0}/s)",
        args.tasks,
        elapsed,
        args.tasks as f64 / elapsed
    );
    println!(
        "  succeeded {}  failed {}  timed out {}  rejected {}",
        summary.succeeded, summary.failed, summary.timed_out, summary.rejected
    );
    println!(
        "  latency p50 {} µs  p99 {} µs",
        summary.p50_us, summary.p99_us
    );
    if summary.rejected != expected_rejections || summary.finished + summary.rejected != args.tasks
    {
        bail!(
            "counts do not add up: expected {expected_rejections} rejections and {} outcomes",
            args.tasks
        );
    }
    Ok(())
}

/// The workload's `n`th task as JSON, and whether it is meant to be
/// rejected: six in ten no-ops, then a sleep, a command, an inline-handler
/// task, and a malformed one (a negative resource, an unknown field, or
/// broken JSON).
fn workload_task(n: u64) -> (String, bool) {
    let json = match n % 10 {
        0..=5 => format!(r#"{{"id":"demo-{n}","kind":"noop","resources":{{"cpu_milli":100}}}}"#),
        6 => format!(
            r#"{{"id":"demo-{n}","kind":"sleep","payload":{{"ms":{}}},"resources":{{"cpu_milli":500}}}}"#,
            n % 20
        ),
        7 => format!(
            r#"{{"id":"demo-{n}","kind":"command","payload":{{"program":"echo","args":["task {n}"]}}}}"#
        ),
        8 => format!(
            r#"{{"id":"demo-{n}","kind":"checksum","payload":{{"n":{n}}},"qos":"latency_sensitive"}}"#
        ),
        _ => {
            let malformed = match n % 3 {
                0 => format!(r#"{{"id":"demo-{n}","kind":"noop","resources":{{"cpu_milli":-1}}}}"#),
                1 => format!(r#"{{"id":"demo-{n}","kind":"noop","colour":"blue"}}"#),
                _ => "{not json".to_string(),
            };
            return (malformed, true);
        }
    };
    (json, false)
}
