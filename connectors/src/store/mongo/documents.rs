//! The store's values as MongoDB documents, and back.
//!
//! A task document is its [`TaskRecord`] with the task id as `_id` and
//! every field at the top level (so that indexes and ad-hoc queries see
//! them), plus the submission's fingerprint and, while the task has no
//! final outcome, the task itself as JSON text (`task_json`, read only to
//! resume it). Values whose shape the pipeline does not control are kept
//! as JSON text too: a handler's returned value (its keys may start with
//! `$`), and a rejection's acknowledgement token (a `u64` that BSON's
//! signed integers cannot always hold) inside `rejection_json`, beside the
//! readable fields.
//!
//! With encryption on (a [`ValueCodec`] holding keys), the bodies are
//! sealed (AES-256-GCM) into `{key_id, nonce, data}` sub-documents instead:
//! the task into `task_sealed`, the result and failure reason into
//! `result_sealed`, and a dead letter (with its excerpt and reason) into
//! `rejection_sealed`. Index fields (`_id`, state, tenant, kind, times,
//! rejection code) stay plain, so listings, counts and resumption queries
//! work unchanged. Documents written before encryption was turned on are
//! still read.

use mongodb::bson::{self, doc, oid::ObjectId, spec::BinarySubtype, Binary, Bson, Document};
use serde::{Deserialize, Serialize};

use tidewater_operators::model::{JsonText, ModelTarget, Rejection, Task, TaskResult};

use super::error::{corrupt, encode, Failure};
use crate::store::memory::target_key;
use crate::store::{ModelRecord, Sealed, StoredTask, TaskRecord, TaskState, ValueCodec};

/// A task as stored.
#[derive(Debug, Serialize, Deserialize)]
struct TaskDoc {
    #[serde(rename = "_id")]
    id: String,
    state: TaskState,
    kind: String,
    tenant: String,
    attempts: u16,
    executor: Option<String>,
    submitted_at_us: u64,
    started_at_us: Option<u64>,
    finished_at_us: Option<u64>,
    exit_code: Option<i32>,
    output_bytes: u64,
    reason: Option<String>,
    result: Option<ResultDoc>,
    /// The `u64` fingerprint's bits.
    #[serde(default)]
    fingerprint: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task_json: Option<String>,
    /// The task, sealed (instead of `task_json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    task_sealed: Option<SealedDoc>,
    /// The result and reason, sealed (instead of `result` and `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    result_sealed: Option<SealedDoc>,
}

/// A sealed value as stored: the key id beside the nonce and ciphertext.
#[derive(Debug, Serialize, Deserialize)]
struct SealedDoc {
    key_id: String,
    nonce: Binary,
    data: Binary,
}

impl SealedDoc {
    fn seal(codec: &ValueCodec, aad: &[u8], plain: &[u8]) -> Result<Option<SealedDoc>, Failure> {
        let Some(keys) = codec.keys() else {
            return Ok(None);
        };
        let sealed = keys.seal(aad, plain)?;
        let binary = |bytes: Vec<u8>| Binary {
            subtype: BinarySubtype::Generic,
            bytes,
        };
        Ok(Some(SealedDoc {
            key_id: sealed.key_id,
            nonce: binary(sealed.nonce.to_vec()),
            data: binary(sealed.ciphertext),
        }))
    }

    fn open(&self, codec: &ValueCodec, aad: &[u8], key: &str) -> Result<Vec<u8>, Failure> {
        let nonce = <[u8; 12]>::try_from(self.nonce.bytes.as_slice())
            .map_err(|_| corrupt(key, "sealed value: the nonce is not 12 bytes"))?;
        let sealed = Sealed {
            key_id: self.key_id.clone(),
            nonce,
            ciphertext: self.data.bytes.clone(),
        };
        Ok(codec.open_sealed(aad, &sealed, key)?)
    }
}

/// What `result_sealed` holds.
#[derive(Debug, Serialize, Deserialize)]
struct SealedOutcome {
    result: Option<ResultDoc>,
    reason: Option<String>,
}

fn aad(what: &str, id: &str) -> Vec<u8> {
    format!("{what}:{id}").into_bytes()
}

/// A handler's output as stored.
#[derive(Debug, Serialize, Deserialize)]
struct ResultDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value_json: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stdout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stderr: Option<String>,
    #[serde(default)]
    truncated: bool,
}

/// The document of a stored task.
pub fn task_document(entry: &StoredTask, codec: &ValueCodec) -> Result<Document, Failure> {
    let r = &entry.record;
    let result = r.result.as_ref().map(|result| ResultDoc {
        value_json: result
            .value
            .as_ref()
            .map(|value| value.as_str().to_string()),
        stdout: result.stdout.clone(),
        stderr: result.stderr.clone(),
        truncated: result.truncated,
    });
    let task_json = match &entry.task {
        Some(task) => Some(serde_json::to_string(task).map_err(|e| encode("task", e))?),
        None => None,
    };
    let mut reason = r.reason.clone();
    let mut result = result;
    let mut task_json = task_json;
    let mut task_sealed = None;
    let mut result_sealed = None;
    if codec.keys().is_some() {
        if let Some(json) = task_json.take() {
            task_sealed = SealedDoc::seal(codec, &aad("task", &r.id), json.as_bytes())?;
        }
        if result.is_some() || reason.is_some() {
            let outcome = SealedOutcome {
                result: result.take(),
                reason: reason.take(),
            };
            let json = serde_json::to_vec(&outcome).map_err(|e| encode("result", e))?;
            result_sealed = SealedDoc::seal(codec, &aad("result", &r.id), &json)?;
        }
    }
    let stored = TaskDoc {
        id: r.id.clone(),
        state: r.state,
        kind: r.kind.clone(),
        tenant: r.tenant.clone(),
        attempts: r.attempts,
        executor: r.executor.clone(),
        submitted_at_us: r.submitted_at_us,
        started_at_us: r.started_at_us,
        finished_at_us: r.finished_at_us,
        exit_code: r.exit_code,
        output_bytes: r.output_bytes,
        reason,
        result,
        fingerprint: entry.fingerprint as i64,
        task_json,
        task_sealed,
        result_sealed,
    };
    bson::to_document(&stored).map_err(|e| encode("task", e))
}

/// A stored task from its document.
pub fn stored_task(document: Document, codec: &ValueCodec) -> Result<StoredTask, Failure> {
    let key = id_of(&document);
    let mut stored: TaskDoc = bson::from_document(document).map_err(|e| corrupt(&key, e))?;
    let task: Option<Task> = match (&stored.task_json, &stored.task_sealed) {
        (Some(json), _) => Some(serde_json::from_str(json).map_err(|e| corrupt(&key, e))?),
        (None, Some(sealed)) => {
            let json = sealed.open(codec, &aad("task", &stored.id), &key)?;
            Some(serde_json::from_slice(&json).map_err(|e| corrupt(&key, e))?)
        }
        (None, None) => None,
    };
    if let Some(sealed) = stored.result_sealed.take() {
        let json = sealed.open(codec, &aad("result", &stored.id), &key)?;
        let outcome: SealedOutcome = serde_json::from_slice(&json).map_err(|e| corrupt(&key, e))?;
        stored.result = outcome.result;
        stored.reason = outcome.reason;
    }
    let result = match stored.result {
        None => None,
        Some(r) => Some(TaskResult {
            value: match r.value_json {
                Some(json) => Some(JsonText::new(
                    &serde_json::from_str::<serde_json::Value>(&json)
                        .map_err(|e| corrupt(&key, e))?,
                )),
                None => None,
            },
            stdout: r.stdout,
            stderr: r.stderr,
            truncated: r.truncated,
        }),
    };
    Ok(StoredTask {
        record: TaskRecord {
            id: stored.id,
            state: stored.state,
            kind: stored.kind,
            tenant: stored.tenant,
            attempts: stored.attempts,
            executor: stored.executor,
            submitted_at_us: stored.submitted_at_us,
            started_at_us: stored.started_at_us,
            finished_at_us: stored.finished_at_us,
            exit_code: stored.exit_code,
            output_bytes: stored.output_bytes,
            reason: stored.reason,
            next_attempt_at_us: None,
            result,
        },
        task,
        fingerprint: stored.fingerprint as u64,
    })
}

/// Leaves out the resumable task when only the record is wanted.
pub fn record_projection() -> Document {
    doc! { "task_json": 0, "task_sealed": 0 }
}

/// The `_id` of a document as text, for error reports.
fn id_of(document: &Document) -> String {
    match document.get("_id") {
        Some(Bson::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "(no _id)".into(),
    }
}

/// A rejection as stored: readable fields and the exact value.
pub fn rejection_document(r: &Rejection, codec: &ValueCodec) -> Result<Document, Failure> {
    let json = serde_json::to_string(r).map_err(|e| encode("rejection", e))?;
    let at_us = i64::try_from(r.at_us).map_err(|e| encode("rejection time", e))?;
    // Ids made by one client increase, so `_id` orders the dead letters.
    let id = ObjectId::new();
    if let Some(sealed) = SealedDoc::seal(codec, &aad("rejection", &id.to_hex()), json.as_bytes())?
    {
        let sealed = bson::to_bson(&sealed).map_err(|e| encode("rejection", e))?;
        return Ok(doc! {
            "_id": id,
            "at_us": at_us,
            "source": r.source_name.as_str(),
            "task_id": r.task_id.as_ref().map(|id| id.to_string()),
            "code": r.reason.code(),
            "rejection_sealed": sealed,
        });
    }
    Ok(doc! {
        "_id": id,
        "at_us": at_us,
        "source": r.source_name.as_str(),
        "task_id": r.task_id.as_ref().map(|id| id.to_string()),
        "code": r.reason.code(),
        "reason": r.reason.to_string(),
        "excerpt": r.excerpt.as_str(),
        "rejection_json": json,
    })
}

/// A rejection from its document.
pub fn rejection_of(document: &Document, codec: &ValueCodec) -> Result<Rejection, Failure> {
    let key = id_of(document);
    if let Ok(sealed) = document.get_document("rejection_sealed") {
        let sealed: SealedDoc =
            bson::from_document(sealed.clone()).map_err(|e| corrupt(&key, e))?;
        let id = document
            .get_object_id("_id")
            .map_err(|e| corrupt(&key, e))?;
        let json = sealed.open(codec, &aad("rejection", &id.to_hex()), &key)?;
        return serde_json::from_slice(&json).map_err(|e| corrupt(&key, e));
    }
    let json = document
        .get_str("rejection_json")
        .map_err(|e| corrupt(&key, e))?;
    serde_json::from_str(json).map_err(|e| corrupt(&key, e))
}

/// The `_id` of a model version: target and zero-padded version, so that
/// ids sort by version.
pub fn model_id(target: ModelTarget, version: u64) -> String {
    format!("{}/{version:020}", target_key(target))
}

/// A model version as stored: the record's fields, with the target and
/// version also at the top level for the index.
pub fn model_document(record: &ModelRecord) -> Result<Document, Failure> {
    let mut document = bson::to_document(record).map_err(|e| encode("model", e))?;
    let version = i64::try_from(record.update.version).map_err(|e| encode("model version", e))?;
    document.insert("_id", model_id(record.update.target, record.update.version));
    document.insert("target", target_key(record.update.target));
    document.insert("version", version);
    Ok(document)
}

/// A model version from its document (the extra fields are ignored).
pub fn model_of(document: Document) -> Result<ModelRecord, Failure> {
    let key = id_of(&document);
    bson::from_document(document).map_err(|e| corrupt(&key, e))
}
