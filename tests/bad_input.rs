//! One test per class of bad input through the HTTP API: each is answered
//! with a clear, specific reason, dead-lettered and counted, and the
//! pipeline keeps serving good tasks.

use std::sync::Arc;
use std::time::Duration;

use crate::common::{free_port, Http};
use tidewater::config::{Config, StoreKind};
use tidewater::{Pipeline, RunningPipeline};
use tidewater_connectors::store::{MemoryStore, TaskState, TaskStore};

struct Server {
    pipeline: RunningPipeline,
    store: Arc<MemoryStore>,
    http: Http,
    base: String,
}

fn server() -> Server {
    let port = free_port();
    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.listen = format!("127.0.0.1:{port}");
    config.store.kind = StoreKind::Memory;
    config.limits.max_payload_bytes = 64;
    let store = Arc::new(MemoryStore::new());
    let pipeline = Pipeline::builder(config)
        .store(store.clone())
        .start()
        .expect("start");
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(10));
    Server {
        pipeline,
        store,
        http,
        base,
    }
}

impl Server {
    fn submit(&self, body: &str) -> (u16, serde_json::Value) {
        self.http.post(&format!("{}/v1/tasks", self.base), body)
    }

    /// Submits a bad record and checks the answer's code and that the
    /// reason mentions `mentions`.
    fn rejects(&self, body: &str, code: &str, mentions: &str) {
        let (status, answer) = self.submit(body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["code"], code, "{body}: {answer}");
        let reason = answer["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains(mentions),
            "{body}: reason {reason:?} should mention {mentions:?}"
        );
    }

    /// Submits a good task and waits for it to succeed.
    fn still_works(&self, id: &str) {
        let (status, answer) = self.submit(&format!(r#"{{"id":"{id}","kind":"noop"}}"#));
        assert_eq!(status, 202, "{answer}");
        assert!(self.pipeline.wait_for_outcomes(1, Duration::from_secs(10)));
        for _ in 0..500 {
            if self
                .store
                .get(id)
                .expect("get")
                .is_some_and(|r| r.state == TaskState::Succeeded)
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("{id} did not succeed after bad input");
    }

    /// Shuts down and checks that outcomes add up.
    fn finish(self, good: u64, bad: u64) {
        let summary = self.pipeline.shutdown().expect("shutdown");
        assert_eq!(summary.succeeded, good, "{summary:?}");
        assert_eq!(summary.rejected, bad, "{summary:?}");
        assert_eq!(self.store.counts().expect("counts").rejected, bad);
        assert_eq!(
            self.store.rejections(100).expect("rejections").len() as u64,
            bad
        );
    }
}

#[test]
fn malformed_json() {
    let s = server();
    s.rejects(r#"{"kind": "noop""#, "malformed", "EOF");
    s.rejects("not json at all", "malformed", "expected");
    s.still_works("after-malformed");
    s.finish(1, 2);
}

#[test]
fn unknown_fields() {
    let s = server();
    s.rejects(
        r#"{"kind":"noop","colour":"blue"}"#,
        "unknown_field",
        "colour",
    );
    s.rejects(
        r#"{"kind":"noop","resources":{"cpus":2}}"#,
        "unknown_field",
        "`cpus` at `resources`",
    );
    s.still_works("after-unknown");
    s.finish(1, 2);
}

#[test]
fn missing_fields() {
    let s = server();
    s.rejects(r#"{"id":"x"}"#, "missing_field", "kind");
    s.still_works("after-missing");
    s.finish(1, 1);
}

#[test]
fn wrong_types() {
    let s = server();
    s.rejects(r#"{"kind":7}"#, "wrong_type", "`kind`");
    s.rejects(
        r#"{"kind":"noop","resources":{"memory_mib":"lots"}}"#,
        "wrong_type",
        "resources.memory_mib",
    );
    s.rejects(r#"{"kind":"noop","qos":"urgent"}"#, "invalid_value", "qos");
    s.still_works("after-types");
    s.finish(1, 3);
}

#[test]
fn negative_zero_and_overflowing_resources() {
    let s = server();
    s.rejects(
        r#"{"kind":"noop","resources":{"cpu_milli":-100}}"#,
        "invalid_value",
        "resources.cpu_milli",
    );
    s.rejects(
        r#"{"kind":"noop","resources":{"cpu_milli":0}}"#,
        "invalid_value",
        "at least 1",
    );
    s.rejects(
        r#"{"kind":"noop","resources":{"memory_mib":99999999999}}"#,
        "invalid_value",
        "u32",
    );
    s.rejects(
        r#"{"kind":"noop","resources":{"gpus":256}}"#,
        "invalid_value",
        "resources.gpus",
    );
    s.rejects(
        r#"{"kind":"noop","resources":{"gpu_milli":1001}}"#,
        "invalid_value",
        "more than one GPU",
    );
    s.rejects(
        r#"{"kind":"noop","timeout_ms":0}"#,
        "invalid_value",
        "timeout_ms",
    );
    s.rejects(
        r#"{"kind":"noop","max_attempts":0}"#,
        "invalid_value",
        "max_attempts",
    );
    s.still_works("after-resources");
    s.finish(1, 7);
}

#[test]
fn oversize_payload() {
    let s = server();
    let big = "x".repeat(100);
    s.rejects(
        &format!(r#"{{"kind":"noop","payload":"{big}"}}"#),
        "oversize",
        "over the limit of 64",
    );
    s.still_works("after-oversize");
    s.finish(1, 1);
}

#[test]
fn infeasible_tasks_are_rejected_at_once_with_the_resource_named() {
    let s = server();
    let (status, answer) =
        s.submit(r#"{"id":"huge","kind":"noop","resources":{"cpu_milli":9000000}}"#);
    assert_eq!(
        status, 202,
        "accepted by the API, then judged by the coordinator: {answer}"
    );
    assert!(s.pipeline.wait_for_outcomes(1, Duration::from_secs(10)));
    let record = s.store.get("huge").expect("get").expect("recorded");
    assert_eq!(record.state, TaskState::Rejected);
    assert!(record
        .reason
        .unwrap_or_default()
        .contains("cpu_milli 9000000 exceeds"));
    s.still_works("after-infeasible");
    s.finish(1, 1);
}

#[test]
fn batches_answer_per_item_and_keep_the_good_ones() {
    let s = server();
    let (status, answer) =
        s.submit(r#"[{"id":"b1","kind":"noop"},{"kind":5},{"id":"b2","kind":"noop"}]"#);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], serde_json::json!(["b1", "b2"]));
    assert_eq!(answer["rejected"][0]["index"], 1);
    assert_eq!(answer["rejected"][0]["code"], "wrong_type");
    assert!(s.pipeline.wait_for_outcomes(3, Duration::from_secs(10)));
    s.finish(2, 1);
}
