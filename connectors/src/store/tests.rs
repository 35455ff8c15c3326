//! The same behavioural suite against every store ([`behaves`] and
//! [`lists_in_pages`], which other stores' tests call too), a reopen test
//! for the embedded one, and a property test of the transitions.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use tidewater_operators::model::{
    AckToken, Completion, GpuRequest, Lease, ModelTarget, ModelUpdate, Name, Outcome, RejectReason,
    Rejection, ResourceRequest, Task, TaskResult,
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
        result: None,
    }
}

fn rejection(n: u64) -> Rejection {
    Rejection {
        reason: RejectReason::Malformed {
            detail: format!("bad {n}"),
        },
        task_id: None,
        tenant: None,
        source_name: Name::from("test"),
        excerpt: "{".into(),
        ack: AckToken::NONE,
        at_us: n,
        trace: None,
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

fn fresh(answers: Vec<Admission>) -> Vec<bool> {
    answers.iter().map(Admission::is_new).collect()
}

/// The behaviour every store shares: admission, outcomes, rejections,
/// counters and the model registry.
pub(crate) fn behaves(store: &dyn TaskStore) {
    assert_eq!(
        fresh(
            store
                .admit(&[task("a"), task("b"), task("a")])
                .expect("accept")
        ),
        vec![true, true, false]
    );
    // A repeated submission finds the first, and says whether it is the same.
    let mut changed = task("b");
    changed.priority = 7;
    match &store.admit(&[task("b"), changed]).expect("again")[..] {
        [Admission::Existing {
            record,
            same_body: true,
        }, Admission::Existing {
            same_body: false, ..
        }] => assert_eq!(record.state, TaskState::Queued),
        other => panic!("unexpected admissions {other:?}"),
    }
    assert_eq!(
        store.get("a").expect("get").expect("present").state,
        TaskState::Queued
    );
    assert_eq!(
        store.unfinished().expect("unfinished"),
        vec![task("a"), task("b")]
    );

    let mut first = done("a", Outcome::Succeeded);
    first.result = Some(TaskResult::value(serde_json::json!({ "answer": 42 })));
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
    assert_eq!(
        record.result.and_then(|r| r.json()),
        Some(serde_json::json!({ "answer": 42 }))
    );
    assert_eq!(store.unfinished().expect("unfinished"), vec![task("b")]);
    assert_eq!(
        fresh(store.admit(&[task("a")]).expect("re-accept")),
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
    store.admit(&[task("infeasible")]).expect("accept");
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
        vec![rejection(3), closing.clone()]
    );
    // A rejection naming a task never accepted records it as rejected, and
    // a later submission with that id replaces the rejection.
    let mut refused = rejection(5);
    refused.task_id = Some(Name::from("refused"));
    store.record_rejections(&[refused]).expect("reject");
    let record = store.get("refused").expect("get").expect("present");
    assert_eq!(
        (record.state, record.reason.as_deref()),
        (TaskState::Rejected, Some("malformed JSON: bad 5"))
    );
    assert_eq!(
        fresh(store.admit(&[task("refused")]).expect("admit")),
        vec![true]
    );
    let counts = store.counts().expect("counts");
    assert_eq!(
        counts,
        StateCounts {
            queued: 2,
            succeeded: 1,
            timed_out: 1,
            rejected: 5,
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

    // API tokens: stored by id, replaced when revoked, listed by id.
    assert_eq!(store.token("tok-b").expect("token"), None);
    store.put_token(&token("tok-b", "b")).expect("token");
    store.put_token(&token("tok-a", "a")).expect("token");
    let mut revoked = token("tok-b", "b");
    revoked.revoked_at_us = Some(99);
    store.put_token(&revoked).expect("revoke");
    assert_eq!(store.token("tok-b").expect("token"), Some(revoked.clone()));
    assert!(!revoked.is_active(100));
    assert!(token("tok-a", "a").is_active(100));
    let ids: Vec<String> = store
        .tokens()
        .expect("tokens")
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, vec!["tok-a".to_string(), "tok-b".to_string()]);
}

fn token(id: &str, tenant: &str) -> TokenRecord {
    TokenRecord {
        id: id.into(),
        tenant: tenant.into(),
        role: "submitter".into(),
        name: format!("{tenant}'s CI"),
        hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created_at_us: 7,
        expires_at_us: Some(1_000),
        revoked_at_us: None,
    }
}

/// Listings: order, filters, paging in both directions, and cursors that
/// survive the records changing state.
pub(crate) fn lists_in_pages(store: &dyn TaskStore) {
    let tasks: Vec<Task> = (0..25)
        .map(|n| {
            let mut t = task(&format!("p{n:02}"));
            t.submitted_at_us = 1_000 + n / 2; // pairs share a time: ids break ties
            t.tenant = Name::from(if n % 3 == 0 { "acme" } else { "globex" });
            t.kind = Name::from(if n % 2 == 0 { "sleep" } else { "noop" });
            t
        })
        .collect();
    store.admit(&tasks).expect("admit");
    let finished: Vec<Completion> = (0..25)
        .step_by(4)
        .map(|n| {
            let mut c = done(&format!("p{n:02}"), Outcome::Succeeded);
            c.task = tasks[n].clone();
            c
        })
        .collect();
    store.record_finished(&finished).expect("finish");

    let ids = |query: &TaskQuery| -> Vec<String> {
        let mut query = query.clone();
        let mut out = Vec::new();
        loop {
            let page = store.list(&query).expect("list");
            assert!(page.tasks.len() <= query.limit);
            out.extend(page.tasks.into_iter().map(|r| r.id));
            match page.next {
                Some(next) => query.after = Some(next),
                None => return out,
            }
        }
    };
    let expected = |keep: &dyn Fn(usize) -> bool| -> Vec<String> {
        (0..25)
            .filter(|n| keep(*n))
            .map(|n| format!("p{n:02}"))
            .collect()
    };
    let all = TaskQuery {
        limit: 4,
        ..TaskQuery::default()
    };
    assert_eq!(ids(&all), expected(&|_| true));
    let mut newest_first = expected(&|_| true);
    newest_first.reverse();
    assert_eq!(
        ids(&TaskQuery {
            descending: true,
            ..all.clone()
        }),
        newest_first
    );
    assert_eq!(
        ids(&TaskQuery {
            state: Some(TaskState::Succeeded),
            ..all.clone()
        }),
        expected(&|n| n % 4 == 0)
    );
    assert_eq!(
        ids(&TaskQuery {
            state: Some(TaskState::Queued),
            tenant: Some("acme".into()),
            ..all.clone()
        }),
        expected(&|n| n % 4 != 0 && n % 3 == 0)
    );
    assert_eq!(
        ids(&TaskQuery {
            kind: Some("noop".into()),
            since_us: Some(1_006),
            descending: true,
            ..all.clone()
        }),
        {
            let mut v = expected(&|n| n % 2 == 1 && n >= 12);
            v.reverse();
            v
        }
    );
    // A cursor taken before a record changes state still continues the walk.
    let first = store.list(&all).expect("list");
    store
        .record_finished(&[{
            let mut c = done("p05", Outcome::Cancelled);
            c.task = tasks[5].clone();
            c
        }])
        .expect("cancel");
    let rest = ids(&TaskQuery {
        after: first.next.clone(),
        ..all.clone()
    });
    assert_eq!(rest, expected(&|n| n >= 4));
    assert_eq!(
        first.next.map(|c| TaskCursor::from_token(&c.to_token())),
        Some(Ok(TaskCursor {
            submitted_at_us: 1_001,
            id: "p03".into()
        }))
    );
}

#[test]
fn memory_store_behaves() {
    behaves(&MemoryStore::new());
    lists_in_pages(&MemoryStore::new());
}

#[test]
fn embedded_store_behaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    behaves(&EmbeddedStore::open(&dir.path().join("t.redb")).expect("open"));
    lists_in_pages(&EmbeddedStore::open(&dir.path().join("l.redb")).expect("open"));
}

#[test]
fn embedded_store_survives_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.redb");
    {
        let store = EmbeddedStore::open(&path).expect("open");
        store.admit(&[task("keep"), task("done")]).expect("accept");
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
    // Counters are kept, not recomputed.
    assert_eq!(
        store.counts().expect("counts"),
        StateCounts {
            queued: 1,
            succeeded: 1,
            rejected: 1,
            ..Default::default()
        }
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
                    let fresh = store.admit(&[task(&format!("t{n}"))]).expect("accept")[0].is_new();
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
        prop_assert_eq!(counts.queued as usize, accepted.difference(&finished).count());
    }
}
