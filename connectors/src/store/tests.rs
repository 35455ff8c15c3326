//! The same behavioural suite against both stores, a reopen test for the
//! embedded one, and a property test of the transitions.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tidewater_operators::model::{
    AckToken, Completion, GpuRequest, Lease, ModelTarget, ModelUpdate, Name, Outcome, RejectReason,
    Rejection, ResourceRequest, Task,
};

use super::*;

fn task(id: &str) -> Task {
    let mut t = Task::new(
        id,
        "sleep",
        ResourceRequest {
            gpu: GpuRequest::Fraction(250),
            ..ResourceRequest::cpu(500, 64)
        },
    );
    t.payload = Some("{\"ms\":5}".into());
    t.ack = AckToken {
        origin_worker: 1,
        source: 2,
        tag: 3,
    };
    t.submitted_at_us = 42;
    t
}

fn done(id: &str, outcome: Outcome) -> Completion {
    Completion {
        task: task(id),
        executor: Name::from("e1"),
        shard: 0,
        lease: Lease(1),
        outcome,
        started_at_us: 100,
        finished_at_us: 200,
        exit_code: Some(0),
        output_bytes: 7,
        is_final: true,
    }
}

fn rejection(n: u64) -> Rejection {
    Rejection {
        reason: RejectReason::Malformed {
            detail: format!("bad {n}"),
        },
        task_id: None,
        source_name: Name::from("test"),
        excerpt: "{".into(),
        ack: AckToken::NONE,
        at_us: n,
    }
}

fn model(target: ModelTarget, version: u64) -> ModelRecord {
    ModelRecord {
        update: ModelUpdate {
            version,
            target,
            feature_dim: 4,
            hidden_dim: 0,
            params: vec![0.5; 5],
            trained_samples: version * 10,
        },
        metrics: BTreeMap::from([("loss".to_string(), 1.0 / version as f64)]),
        created_at_ms: version,
    }
}

fn behaves(store: &dyn TaskStore) {
    assert_eq!(
        store
            .record_accepted(&[task("a"), task("b"), task("a")])
            .expect("accept"),
        vec![true, true, false]
    );
    assert_eq!(
        store.get("a").expect("get").expect("present").state,
        TaskState::Queued
    );
    assert_eq!(
        store.unfinished().expect("unfinished"),
        vec![task("a"), task("b")]
    );

    let first = done("a", Outcome::Succeeded);
    let second = done(
        "a",
        Outcome::Failed {
            reason: "late".into(),
        },
    );
    assert_eq!(
        store.record_finished(&[first, second]).expect("finish"),
        vec![true, false]
    );
    let record = store.get("a").expect("get").expect("present");
    assert_eq!(record.state, TaskState::Succeeded);
    assert_eq!(
        (
            record.executor.as_deref(),
            record.output_bytes,
            record.exit_code
        ),
        (Some("e1"), 7, Some(0))
    );
    assert_eq!(store.unfinished().expect("unfinished"), vec![task("b")]);
    assert_eq!(
        store.record_accepted(&[task("a")]).expect("re-accept"),
        vec![false]
    );

    // A completion for a task never accepted still gets a record.
    assert_eq!(
        store
            .record_finished(&[done("z", Outcome::TimedOut)])
            .expect("finish"),
        vec![true]
    );
    assert_eq!(
        store.get("z").expect("get").expect("present").state,
        TaskState::TimedOut
    );
    assert!(store.get("missing").expect("get").is_none());

    store
        .record_rejections(&[rejection(1), rejection(2), rejection(3)])
        .expect("reject");
    // A rejection naming an accepted task closes its record.
    store
        .record_accepted(&[task("infeasible")])
        .expect("accept");
    let mut closing = rejection(4);
    closing.task_id = Some(Name::from("infeasible"));
    store
        .record_rejections(std::slice::from_ref(&closing))
        .expect("reject");
    assert_eq!(
        store
            .get("infeasible")
            .expect("get")
            .expect("present")
            .state,
        TaskState::Rejected
    );
    assert_eq!(
        store.rejections(2).expect("rejections"),
        vec![rejection(3), closing]
    );
    let counts = store.counts().expect("counts");
    assert_eq!(
        counts,
        StateCounts {
            queued: 1,
            succeeded: 1,
            timed_out: 1,
            rejected: 4,
            ..Default::default()
        }
    );

    for v in [3, 1, 2] {
        store
            .put_model(&model(ModelTarget::RunTime, v))
            .expect("model");
    }
    store
        .put_model(&model(ModelTarget::Failure, 9))
        .expect("model");
    let versions: Vec<u64> = store
        .models(ModelTarget::RunTime)
        .expect("models")
        .iter()
        .map(|m| m.update.version)
        .collect();
    assert_eq!(versions, vec![1, 2, 3]);
    assert_eq!(
        store.latest_model(ModelTarget::Failure).expect("latest"),
        Some(model(ModelTarget::Failure, 9))
    );
}

#[test]
fn memory_store_behaves() {
    behaves(&MemoryStore::new());
}

#[test]
fn embedded_store_behaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    behaves(&EmbeddedStore::open(&dir.path().join("t.redb")).expect("open"));
}

#[test]
fn embedded_store_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.redb");
    {
        let store = EmbeddedStore::open(&path).expect("open");
        store
            .record_accepted(&[task("keep"), task("done")])
            .expect("accept");
        store
            .record_finished(&[done("done", Outcome::Succeeded)])
            .expect("finish");
        store.record_rejections(&[rejection(5)]).expect("reject");
        store
            .put_model(&model(ModelTarget::RunTime, 4))
            .expect("model");
    }
    let store = EmbeddedStore::open(&path).expect("reopen");
    assert_eq!(store.unfinished().expect("unfinished"), vec![task("keep")]);
    assert_eq!(
        store.get("done").expect("get").expect("present").state,
        TaskState::Succeeded
    );
    assert_eq!(
        store.rejections(10).expect("rejections"),
        vec![rejection(5)]
    );
    assert_eq!(
        store.latest_model(ModelTarget::RunTime).expect("latest"),
        Some(model(ModelTarget::RunTime, 4))
    );
    // Sequence numbers continue after a reopen.
    store.record_rejections(&[rejection(6)]).expect("reject");
    assert_eq!(
        store.rejections(10).expect("rejections"),
        vec![rejection(5), rejection(6)]
    );
}

#[test]
fn corrupt_entries_are_reported_with_their_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.redb");
    {
        let db = redb::Database::create(&path).expect("create");
        let txn = db.begin_write().expect("txn");
        txn.open_table(redb::TableDefinition::<&str, &[u8]>::new("tasks"))
            .expect("table")
            .insert("broken", b"not json".as_slice())
            .expect("insert");
        txn.commit().expect("commit");
    }
    let store = EmbeddedStore::open(&path).expect("open");
    let err = store.get("broken").expect_err("corrupt");
    assert!(
        matches!(err, StoreError::Corrupt { ref key, .. } if key == "broken"),
        "{err}"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Accept(u8),
    Finish(u8),
}

proptest! {
    #[test]
    fn transitions_keep_books(ops in proptest::collection::vec(prop_oneof![
        (0u8..12).prop_map(Op::Accept),
        (0u8..12).prop_map(Op::Finish),
    ], 1..60)) {
        let store = MemoryStore::new();
        let (mut accepted, mut finished) = (BTreeSet::new(), BTreeSet::new());
        for op in &ops {
            match op {
                Op::Accept(n) => {
                    let fresh = store.record_accepted(&[task(&format!("t{n}"))]).expect("accept")[0];
                    prop_assert_eq!(fresh, !accepted.contains(n) && !finished.contains(n));
                    accepted.insert(*n);
                }
                Op::Finish(n) => {
                    let fresh = store.record_finished(&[done(&format!("t{n}"), Outcome::Succeeded)]).expect("finish")[0];
                    prop_assert_eq!(fresh, !finished.contains(n));
                    finished.insert(*n);
                }
            }
        }
        let unfinished: BTreeSet<String> = store.unfinished().expect("unfinished").into_iter().map(|t| t.id.to_string()).collect();
        let expected: BTreeSet<String> = accepted.difference(&finished).map(|n| format!("t{n}")).collect();
        prop_assert_eq!(unfinished, expected);
        let counts = store.counts().expect("counts");
        prop_assert_eq!(counts.succeeded as usize, finished.len());
    }
}
