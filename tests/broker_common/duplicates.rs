//! The duplicate-id scenario the broker tests share: a task runs, then a
//! different message reuses its id. The second is not run: it is
//! dead-lettered under the `duplicate` code with the id in its reason, its
//! delivery is acknowledged, and the first task's record and result stay
//! as they were. A fresh task sent beside the duplicate still runs. The
//! tests send the messages and read results and dead letters back in their
//! broker's way; crash redeliveries of one message (which must still run)
//! are the crash tests' (`broker_*_crash`).

use tidewater_connectors::store::{TaskState, TaskStore};

use super::task_json;

/// The id both messages carry.
pub const ID: &str = "dup-reused";
/// The fresh task sent with the duplicate.
pub const FRESH: &str = "dup-fresh";

/// The first message: runs.
pub fn original() -> Vec<u8> {
    task_json(ID, "noop", "acme")
}

/// The second message under the same id, asking for something else
/// (another tenant): dead-lettered.
pub fn duplicate() -> Vec<u8> {
    task_json(ID, "noop", "globex")
}

/// The task sent beside the duplicate: runs.
pub fn fresh() -> Vec<u8> {
    task_json(FRESH, "noop", "acme")
}

/// Checks the one dead letter: its code, its reason and its body.
pub fn assert_dead_letter(code: Option<&str>, reason: Option<&str>, body: &[u8]) {
    assert_eq!(code, Some("duplicate"), "dead-letter code");
    let reason = reason.expect("a reason header");
    assert!(
        reason.contains(ID) && reason.contains("not run"),
        "the reason names the id and says it is not run: {reason}"
    );
    assert_eq!(
        body,
        duplicate().as_slice(),
        "the duplicate itself is dead-lettered"
    );
}

/// Checks what the store holds afterwards: the first task's record is
/// untouched (succeeded, first tenant), the fresh one succeeded, and the
/// duplicate is the only dead letter.
pub fn assert_store(store: &dyn TaskStore) {
    let record = store.get(ID).expect("get").expect("recorded");
    assert_eq!(record.state, TaskState::Succeeded, "{record:?}");
    assert_eq!(
        record.tenant, "acme",
        "the first task's record stays: {record:?}"
    );
    let fresh = store.get(FRESH).expect("get").expect("recorded");
    assert_eq!(fresh.state, TaskState::Succeeded, "{fresh:?}");
    let dead = store.rejections(100).expect("rejections");
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].reason.code(), "duplicate");
}
