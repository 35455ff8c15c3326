//! Encryption at rest in the embedded store: the shared suite with keys on,
//! the raw database file holding no plaintext of payloads, results or dead
//! letters, key rotation, and wrong or missing keys answered with typed
//! errors.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tidewater_operators::model::{
    AckToken, Completion, JsonText, Lease, Name, Outcome, RejectReason, Rejection, ResourceRequest,
    Task, TaskResult,
};

use super::tests::{behaves, lists_in_pages};
use super::*;

const PAYLOAD_MARKER: &str = "PAYLOAD-MARKER-7f3a91";
const RESULT_MARKER: &str = "RESULT-MARKER-9c1e44";
const STDOUT_MARKER: &str = "STDOUT-MARKER-52bd07";
const EXCERPT_MARKER: &str = "EXCERPT-MARKER-e6d210";

/// A ring whose keys are `[fill; 32]` under each id.
pub(crate) fn ring(active: &str, keys: &[(&str, u8)]) -> Arc<KeyRing> {
    let keys: BTreeMap<String, [u8; 32]> = keys
        .iter()
        .map(|(id, fill)| (id.to_string(), [*fill; 32]))
        .collect();
    Arc::new(KeyRing::from_keys(active, keys).expect("ring"))
}

pub(crate) fn secret_task(id: &str) -> Task {
    let mut t = Task::new(id, "echo", ResourceRequest::cpu(10, 0));
    t.payload = Some(format!("{{\"secret\":\"{PAYLOAD_MARKER}\"}}").into());
    t.tenant = Name::from("acme-tenant");
    t.submitted_at_us = 7;
    t
}

pub(crate) fn secret_completion(id: &str) -> Completion {
    Completion {
        task: secret_task(id),
        executor: Name::from("e1"),
        shard: 0,
        lease: Lease(1),
        outcome: Outcome::Succeeded,
        started_at_us: 10,
        finished_at_us: 20,
        exit_code: Some(0),
        output_bytes: 3,
        is_final: true,
        result: Some(TaskResult {
            value: Some(JsonText::new(
                &serde_json::json!({ "answer": RESULT_MARKER }),
            )),
            stdout: Some(STDOUT_MARKER.into()),
            stderr: None,
            truncated: false,
        }),
    }
}

pub(crate) fn secret_rejection() -> Rejection {
    Rejection {
        reason: RejectReason::Malformed {
            detail: "bad".into(),
        },
        task_id: None,
        tenant: None,
        source_name: Name::from("test"),
        excerpt: EXCERPT_MARKER.into(),
        ack: AckToken::NONE,
        at_us: 1,
        trace: None,
    }
}

/// Writes a task left open, a finished one with a secret result and a
/// secret dead letter through `store`, and checks that it reads them all
/// back and still lists by tenant: the scenario both encrypted stores run
/// before their raw bytes are searched for plaintext.
pub(crate) fn writes_secrets_and_reads_them_back(store: &dyn TaskStore) {
    store
        .admit(&[secret_task("open-1"), secret_task("done-1")])
        .expect("admit");
    store
        .record_finished(&[secret_completion("done-1")])
        .expect("finish");
    store
        .record_rejections(&[secret_rejection()])
        .expect("reject");
    // Still readable through the store, and the indexes still list.
    let record = store.get("done-1").expect("get").expect("present");
    assert_eq!(record.result, secret_completion("done-1").result);
    assert_eq!(
        store.unfinished().expect("unfinished"),
        vec![secret_task("open-1")]
    );
    let page = store
        .list(&TaskQuery {
            tenant: Some("acme-tenant".into()),
            limit: 10,
            ..TaskQuery::default()
        })
        .expect("list");
    assert_eq!(page.tasks.len(), 2);
    assert_eq!(
        store.rejections(10).expect("rejections"),
        vec![secret_rejection()]
    );
}

/// Whether any marker's bytes occur in `bytes`.
pub(crate) fn leaked_markers(bytes: &[u8]) -> Vec<&'static str> {
    [PAYLOAD_MARKER, RESULT_MARKER, STDOUT_MARKER, EXCERPT_MARKER]
        .into_iter()
        .filter(|m| bytes.windows(m.len()).any(|w| w == m.as_bytes()))
        .collect()
}

/// The key id stored beside task `id`'s value, read straight from the file.
fn raw_key_id(path: &Path, id: &str) -> Option<String> {
    use redb::{ReadableDatabase, TableDefinition};
    let db = redb::Database::open(path).expect("raw open");
    let txn = db.begin_read().expect("txn");
    let table = txn
        .open_table(TableDefinition::<&str, &[u8]>::new("tasks"))
        .expect("table");
    let value = table.get(id).expect("get")?;
    let bytes = value.value();
    Sealed::is_envelope(bytes).then(|| Sealed::from_bytes(bytes, id).expect("envelope").key_id)
}

#[test]
fn the_encrypted_embedded_store_behaves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = ring("a", &[("a", 1)]);
    behaves(
        &EmbeddedStore::open_encrypted(&dir.path().join("t.redb"), keys.clone()).expect("open"),
    );
    lists_in_pages(&EmbeddedStore::open_encrypted(&dir.path().join("l.redb"), keys).expect("open"));
}

#[test]
fn the_raw_file_holds_no_payload_result_or_excerpt_in_plain_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.redb");
    {
        let store = EmbeddedStore::open_encrypted(&path, ring("a", &[("a", 1)])).expect("open");
        writes_secrets_and_reads_them_back(&store);
    }
    let bytes = std::fs::read(&path).expect("read file");
    assert_eq!(
        leaked_markers(&bytes),
        Vec::<&str>::new(),
        "plaintext in the redb file"
    );
    // The index fields stay plain (documented): the tenant is in the file.
    assert!(bytes.windows(11).any(|w| w == b"acme-tenant"));
    assert_eq!(raw_key_id(&path, "done-1").as_deref(), Some("a"));

    // The same writes without keys do leave the markers in the file: the
    // scan above would see them.
    let plain_path = dir.path().join("plain.redb");
    {
        let store = EmbeddedStore::open(&plain_path).expect("open");
        store.admit(&[secret_task("open-1")]).expect("admit");
        store
            .record_finished(&[secret_completion("done-1")])
            .expect("finish");
    }
    let plain = std::fs::read(&plain_path).expect("read file");
    assert!(leaked_markers(&plain).contains(&PAYLOAD_MARKER));
    assert!(leaked_markers(&plain).contains(&RESULT_MARKER));
}

#[test]
fn keys_rotate_old_values_stay_readable_and_new_ones_use_the_active_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.redb");
    {
        let store = EmbeddedStore::open_encrypted(&path, ring("a", &[("a", 1)])).expect("open");
        store.admit(&[secret_task("old")]).expect("admit");
        store
            .record_rejections(&[secret_rejection()])
            .expect("reject");
    }
    {
        // Rotate: B is active, A kept for reading.
        let store =
            EmbeddedStore::open_encrypted(&path, ring("b", &[("a", 1), ("b", 2)])).expect("open");
        assert_eq!(
            store.unfinished().expect("unfinished"),
            vec![secret_task("old")]
        );
        assert_eq!(
            store.rejections(10).expect("rejections"),
            vec![secret_rejection()]
        );
        store.admit(&[secret_task("new")]).expect("admit");
    }
    assert_eq!(raw_key_id(&path, "old").as_deref(), Some("a"));
    assert_eq!(raw_key_id(&path, "new").as_deref(), Some("b"));
    {
        // An old record rewritten moves to the active key.
        let store =
            EmbeddedStore::open_encrypted(&path, ring("b", &[("a", 1), ("b", 2)])).expect("open");
        store
            .record_finished(&[secret_completion("old")])
            .expect("finish");
    }
    assert_eq!(raw_key_id(&path, "old").as_deref(), Some("b"));
    // Once nothing is sealed under A, A may go.
    let store = EmbeddedStore::open_encrypted(&path, ring("b", &[("b", 2)])).expect("open");
    assert!(store.get("old").expect("get").is_some());
    assert!(store.get("new").expect("get").is_some());
}

#[test]
fn wrong_or_missing_keys_are_typed_errors_not_panics() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.redb");
    {
        let store = EmbeddedStore::open_encrypted(&path, ring("a", &[("a", 1)])).expect("open");
        store.admit(&[secret_task("t1")]).expect("admit");
    }
    {
        // Same id, other key.
        let store = EmbeddedStore::open_encrypted(&path, ring("a", &[("a", 9)])).expect("open");
        let err = store.get("t1").expect_err("wrong key");
        assert!(
            matches!(&err, StoreError::Decrypt { key, key_id } if key == "t1" && key_id == "a"),
            "{err}"
        );
        assert!(matches!(
            store.unfinished(),
            Err(StoreError::Decrypt { .. })
        ));
    }
    {
        // The key id is not in the ring.
        let store = EmbeddedStore::open_encrypted(&path, ring("b", &[("b", 2)])).expect("open");
        let err = store.get("t1").expect_err("missing key");
        assert!(
            matches!(&err, StoreError::MissingKey { key_id } if key_id == "a"),
            "{err}"
        );
    }
    // Encryption off: sealed values are not silently misread.
    let store = EmbeddedStore::open(&path).expect("open");
    assert!(matches!(
        store.get("t1"),
        Err(StoreError::MissingKey { .. })
    ));
}

#[test]
fn a_plain_store_opened_with_keys_reads_and_then_seals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("t.redb");
    {
        let store = EmbeddedStore::open(&path).expect("open");
        store.admit(&[secret_task("legacy")]).expect("admit");
    }
    assert_eq!(raw_key_id(&path, "legacy"), None);
    let store = EmbeddedStore::open_encrypted(&path, ring("a", &[("a", 1)])).expect("open");
    assert_eq!(
        store.unfinished().expect("unfinished"),
        vec![secret_task("legacy")]
    );
    store
        .record_finished(&[secret_completion("legacy")])
        .expect("finish");
    drop(store);
    assert_eq!(raw_key_id(&path, "legacy").as_deref(), Some("a"));
}
