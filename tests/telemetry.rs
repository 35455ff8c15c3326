//! OpenTelemetry export against a real OTLP/HTTP receiver started by the
//! test ([`crate::common::otlp_receiver`], decoding the official protobuf
//! messages): every task is one `tidewater.task` span from ingestion to
//! outcome, a child of the W3C `traceparent` its HTTP request, RabbitMQ
//! message or Kafka record carried (a trace of its own without one), with
//! its final attempt as a child `tidewater.execute` span; refused tasks are
//! spans with an error status; HTTP calls are `http.request` server spans.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode;

use crate::broker_common::kafka::{kafka_config, Kafka};
use crate::broker_common::{service, task_json, unique, Amqp};
use crate::common::otlp_receiver::{OtlpReceiver, ReceivedSpan};
use crate::common::{free_port, spawn_run, terminate, Http};
use tidewater::config::{Config, StoreKind};
use tidewater::telemetry::TelemetryConfig;
use tidewater::Pipeline;
use tidewater_connectors::rabbitmq::RabbitMqConfig;
use tidewater_connectors::store::MemoryStore;

/// The caller's context of the W3C specification's example.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

fn traceparent() -> String {
    format!("00-{TRACE_ID}-{PARENT_ID}-01")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

/// The `tidewater.task` span of task `id`, if received.
fn task_span<'a>(spans: &'a [ReceivedSpan], id: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|s| {
        s.name() == "tidewater.task" && s.attribute("tidewater.task.id").as_deref() == Some(id)
    })
}

/// Asserts `span` is a succeeded task's span, a child of the example
/// context, ingested no earlier than `after_ns`, with its `execute` child.
fn assert_traced_success(spans: &[ReceivedSpan], span: &ReceivedSpan, after_ns: u64) {
    let s = &span.span;
    assert_eq!(
        hex(&s.trace_id),
        TRACE_ID,
        "the task joined the caller's trace"
    );
    assert_eq!(
        hex(&s.parent_span_id),
        PARENT_ID,
        "the caller's span is its parent"
    );
    assert_eq!(s.kind, SpanKind::Consumer as i32);
    assert_eq!(
        span.attribute("tidewater.outcome").as_deref(),
        Some("succeeded")
    );
    assert_eq!(
        s.status.as_ref().map(|st| st.code),
        Some(StatusCode::Ok as i32)
    );
    assert!(span
        .attribute("tidewater.executor")
        .is_some_and(|e| !e.is_empty()));
    assert!(
        s.start_time_unix_nano >= after_ns && s.start_time_unix_nano <= s.end_time_unix_nano,
        "the span runs from ingestion to outcome"
    );
    assert!(s.end_time_unix_nano <= now_nanos());
    assert!(
        s.events.iter().any(|e| e.name == "started"),
        "{:?}",
        s.events
    );
    let execute = spans
        .iter()
        .find(|c| c.name() == "tidewater.execute" && c.span.parent_span_id == s.span_id)
        .expect("the final attempt is a child span");
    assert_eq!(execute.span.trace_id, s.trace_id);
    assert!(execute.span.start_time_unix_nano >= s.start_time_unix_nano);
    assert!(execute.span.end_time_unix_nano <= s.end_time_unix_nano);
}

/// A directory with a config for `tidewater run`: two workers, the API on
/// a free port, `store` (a `[store]` block), and spans sent to `receiver`
/// as service `tidewater-e2e`. Returns the directory, the config and the port.
fn traced_run_config(
    receiver: &OtlpReceiver,
    store: &str,
) -> (tempfile::TempDir, std::path::PathBuf, u16) {
    let dir = tempfile::tempdir().expect("dir");
    let port = free_port();
    let config = dir.path().join("tidewater.toml");
    std::fs::write(
        &config,
        format!(
            "workers = 2\n[http]\nlisten = \"127.0.0.1:{port}\"\n{store}\
             [telemetry]\notlp_endpoint = \"{}\"\nservice_name = \"tidewater-e2e\"\n",
            receiver.endpoint()
        ),
    )
    .expect("config");
    (dir, config, port)
}

#[test]
fn http_tasks_are_spans_under_the_requests_trace_context() {
    let receiver = OtlpReceiver::start();
    let (dir, config, port) = traced_run_config(&receiver, "[store]\nkind = \"memory\"\n");
    let mut child = spawn_run(dir.path(), &config, &[], "run.log");
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(30));

    let before = now_nanos();
    let header = traceparent();
    let traced = [("traceparent", header.as_str())];
    let url = format!("{base}/v1/tasks");
    let (status, _) = http.post_with_headers(&url, r#"{"id":"traced-ok","kind":"noop"}"#, &traced);
    assert_eq!(status, 202);
    let (status, _) = http.post_with_headers(
        &url,
        r#"{"id":"traced-bad","kind":"no-such-kind"}"#,
        &traced,
    );
    assert_eq!(status, 400);
    let (status, _) = http.post(&url, r#"{"id":"untraced","kind":"noop"}"#);
    assert_eq!(status, 202);
    let (status, _) = http.post_with_headers(
        &url,
        r#"{"id":"bad-header","kind":"noop"}"#,
        &[("traceparent", "00-not-a-context-01")],
    );
    assert_eq!(status, 202);

    let wanted = ["traced-ok", "traced-bad", "untraced", "bad-header"];
    let spans = receiver.wait_until(Duration::from_secs(30), |spans| {
        wanted.iter().all(|id| task_span(spans, id).is_some())
            && spans.iter().filter(|s| s.name() == "http.request").count() >= 4
    });
    let ok = task_span(&spans, "traced-ok").expect("a span for the task");
    assert_eq!(ok.service, "tidewater-e2e");
    assert_eq!(ok.attribute("tidewater.task.kind").as_deref(), Some("noop"));
    assert_traced_success(&spans, ok, before);

    let bad = task_span(&spans, "traced-bad").expect("a span for the refused task");
    assert_eq!(hex(&bad.span.trace_id), TRACE_ID);
    assert_eq!(
        bad.attribute("tidewater.outcome").as_deref(),
        Some("rejected")
    );
    let status = bad.span.status.as_ref().expect("status");
    assert_eq!(status.code, StatusCode::Error as i32);
    assert!(
        status.message.contains("no-such-kind"),
        "{}",
        status.message
    );

    for id in ["untraced", "bad-header"] {
        let own = task_span(&spans, id).expect("a span");
        assert!(
            own.span.parent_span_id.is_empty(),
            "{id} starts a trace of its own"
        );
        assert_ne!(hex(&own.span.trace_id), TRACE_ID);
    }

    let requests: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name() == "http.request" && hex(&s.span.trace_id) == TRACE_ID)
        .collect();
    assert_eq!(requests.len(), 2, "both traced requests are server spans");
    for request in &requests {
        assert_eq!(request.span.kind, SpanKind::Server as i32);
        assert_eq!(hex(&request.span.parent_span_id), PARENT_ID);
        assert_eq!(request.attribute("url.path").as_deref(), Some("/v1/tasks"));
    }
    let mut codes: Vec<String> = requests
        .iter()
        .filter_map(|r| r.attribute("http.response.status_code"))
        .collect();
    codes.sort();
    assert_eq!(codes, ["202", "400"]);

    terminate(&mut child);
}

#[test]
fn a_task_resumed_after_a_crash_keeps_its_callers_trace() {
    // The trace context is stored with the task, so the task a restarted
    // process resumes from the embedded store still joins the caller's
    // trace, and its span still starts at the original ingestion.
    let receiver = OtlpReceiver::start();
    let (dir, config, port) = traced_run_config(
        &receiver,
        "[store]\nkind = \"embedded\"\npath = \"data/store.redb\"\n",
    );
    let mut child = spawn_run(dir.path(), &config, &[], "run-1.log");
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(30));

    let before = now_nanos();
    let header = traceparent();
    let (status, answer) = http.post_with_headers(
        &format!("{base}/v1/tasks"),
        r#"{"id":"resumed","kind":"sleep","payload":{"ms":60000}}"#,
        &[("traceparent", header.as_str())],
    );
    assert_eq!(status, 202, "{answer}");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let state = http
            .get(&format!("{base}/v1/tasks/resumed"))
            .map(|(_, r)| r["state"].clone());
        if state.as_ref().is_some_and(|s| s == "running") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not running: {state:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert!(
        task_span(&receiver.spans(), "resumed").is_none(),
        "no outcome before the crash"
    );

    // The restart resumes the task; cancel it so that the test need not
    // wait out the sleep, and its span ends with that outcome.
    let mut child = spawn_run(dir.path(), &config, &[], "run-2.log");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(30));
    let (status, answer) = http.delete(&format!("{base}/v1/tasks/resumed"));
    assert!(status == 200 || status == 202, "{status}: {answer}");
    let spans = receiver.wait_until(Duration::from_secs(30), |spans| {
        task_span(spans, "resumed").is_some()
    });
    let span = task_span(&spans, "resumed").expect("the resumed task's span");
    assert_eq!(
        hex(&span.span.trace_id),
        TRACE_ID,
        "still the caller's trace"
    );
    assert_eq!(hex(&span.span.parent_span_id), PARENT_ID);
    assert_eq!(
        span.attribute("tidewater.outcome").as_deref(),
        Some("cancelled")
    );
    assert!(
        span.span.start_time_unix_nano >= before
            && span.span.start_time_unix_nano < now_nanos() - 1_000_000,
        "the span starts at the first ingestion, before the restart"
    );
    terminate(&mut child);
}

/// A memory-store pipeline with `configure` applied and spans sent to `endpoint`.
fn traced_pipeline(
    endpoint: String,
    configure: impl FnOnce(&mut Config),
) -> tidewater::RunningPipeline {
    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    config.telemetry = Some(TelemetryConfig {
        otlp_endpoint: endpoint,
        ..TelemetryConfig::default()
    });
    configure(&mut config);
    Pipeline::builder(config)
        .store(Arc::new(MemoryStore::new()))
        .start()
        .expect("start")
}

#[test]
fn a_rabbitmq_messages_traceparent_header_parents_its_task_span() {
    let Some(url) = service("TIDEWATER_AMQP_URL") else {
        return;
    };
    let receiver = OtlpReceiver::start();
    let queue = format!("{}.tasks", unique("otlp"));
    let mut amqp = Amqp::connect(&url);
    amqp.delete_later(&queue);
    let pipeline = traced_pipeline(receiver.endpoint(), |config| {
        config.rabbitmq = Some(RabbitMqConfig::new(&url).consume(&queue));
    });
    let connector = pipeline.brokers().rabbitmq().expect("configured");
    assert!(pipeline
        .runtime()
        .expect("runtime")
        .block_on(connector.wait_connected(Duration::from_secs(20))));

    let before = now_nanos();
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(traceparent().into()),
    );
    let traced = task_json("amqp-traced", "noop", "acme");
    let plain = task_json("amqp-plain", "noop", "acme");
    amqp.publish_to_queue(
        &queue,
        [
            (
                traced.as_slice(),
                BasicProperties::default().with_headers(headers),
            ),
            (plain.as_slice(), BasicProperties::default()),
        ],
    );
    assert!(pipeline.wait_for_outcomes(2, Duration::from_secs(30)));
    pipeline.shutdown().expect("shutdown");
    // Shutdown flushed the batch: both spans are there.
    let spans = receiver.spans();
    let span = task_span(&spans, "amqp-traced").expect("a span for the traced message");
    assert_eq!(span.service, "tidewater");
    assert_traced_success(&spans, span, before);
    let plain = task_span(&spans, "amqp-plain").expect("a span for the plain message");
    assert!(plain.span.parent_span_id.is_empty());
}

#[test]
fn a_kafka_records_traceparent_header_parents_its_task_span() {
    let Some(brokers) = service("TIDEWATER_KAFKA_BROKERS") else {
        return;
    };
    let receiver = OtlpReceiver::start();
    let kafka = Kafka::connect(&brokers);
    let prefix = unique("otlp");
    let (topic, group) = (format!("{prefix}.tasks"), format!("{prefix}.group"));
    kafka.create_topic(&topic, 1);
    kafka.create_topic(&format!("{prefix}.results"), 1);
    kafka.create_topic(&format!("{prefix}.dead"), 1);
    let pipeline = traced_pipeline(receiver.endpoint(), |config| {
        let mut connector = kafka_config(&brokers, &group, &[&topic]);
        connector.results_topic = format!("{prefix}.results");
        connector.dead_letter_topic = format!("{prefix}.dead");
        config.kafka = Some(connector);
    });
    let connector = pipeline.brokers().kafka().expect("configured");
    assert!(pipeline
        .runtime()
        .expect("runtime")
        .block_on(connector.wait_assigned(Duration::from_secs(30))));

    let before = now_nanos();
    let header = traceparent();
    let traced = task_json("kafka-traced", "noop", "acme");
    kafka.produce(
        &topic,
        [(
            None,
            traced.as_slice(),
            vec![("traceparent", header.as_str())],
        )],
    );
    assert!(pipeline.wait_for_outcomes(1, Duration::from_secs(30)));
    pipeline.shutdown().expect("shutdown");
    let spans = receiver.spans();
    let span = task_span(&spans, "kafka-traced").expect("a span for the traced record");
    assert_traced_success(&spans, span, before);
}

#[test]
fn an_unreachable_receiver_costs_spans_not_tasks() {
    // Nothing listens here: exports fail (and are logged), tasks do not.
    let endpoint = format!("http://127.0.0.1:{}/v1/traces", free_port());
    let pipeline = traced_pipeline(endpoint, |config| {
        if let Some(telemetry) = &mut config.telemetry {
            telemetry.export_timeout_ms = 500;
        }
    });
    const TASKS: usize = 200;
    for i in 0..TASKS {
        pipeline
            .submit(tidewater_operators::model::Task::new(
                format!("lost-span-{i}"),
                "noop",
                tidewater_operators::model::ResourceRequest::cpu(10, 0),
            ))
            .expect("submit");
    }
    assert!(pipeline.wait_for_outcomes(TASKS as u64, Duration::from_secs(30)));
    let started = std::time::Instant::now();
    let summary = pipeline.shutdown().expect("shutdown");
    assert_eq!(summary.finished, TASKS as u64);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "shutdown waited {:?} on the dead receiver",
        started.elapsed()
    );
}
