//! The store's operations, each one async attempt that the retry loop of
//! [`super::exec`] may repeat.
//!
//! Operations that change task records run as transactions over a
//! [`WorkingSet`]; each attempt starts from what the database holds, so a
//! repeated attempt never applies a change twice. Reads go straight to the
//! collections through the indexes of [`super::indexes`].

use futures_lite::StreamExt;
use mongodb::bson::{self, doc, Document};
use mongodb::options::FindOptions;
use mongodb::{Client, Collection, Database};

use tidewater_operators::model::{Completion, ModelTarget, Rejection, Task};

use super::config::{COUNTERS, MODELS, REJECTIONS, TASKS, TOKENS};
use super::counters::{self, ShardPool};
use super::documents::{
    model_document, model_id, model_of, record_projection, rejection_document, rejection_of,
    stored_task,
};
use super::error::{encode, Failure};
use super::exec::in_transaction;
use super::fresh_hint::FreshHint;
use super::working_set::{Load, WorkingSet};
use crate::store::memory::target_key;
use crate::store::{
    Admission, ModelRecord, StateCounts, StoredTask, TaskCursor, TaskPage, TaskQuery, TaskRecord,
    TokenRecord, ValueCodec,
};

/// The client and the store's collections (cheap to clone).
#[derive(Clone)]
pub struct Collections {
    /// The connected client.
    pub client: Client,
    /// The store's database.
    pub db: Database,
    /// Task records.
    pub tasks: Collection<Document>,
    /// Dead letters.
    pub rejections: Collection<Document>,
    /// Model versions.
    pub models: Collection<Document>,
    /// Counter shards.
    pub counters: Collection<Document>,
    /// API tokens' records.
    pub tokens: Collection<TokenRecord>,
    /// Which counter shards this process's transactions use now.
    pub shards: ShardPool,
    /// Seals and opens task bodies and dead letters (plain without keys).
    pub codec: ValueCodec,
    /// Whether admitted batches were new lately.
    pub admit_hint: FreshHint,
    /// Whether finished batches were new lately (outcomes of tasks never
    /// admitted, such as broker tasks).
    pub finish_hint: FreshHint,
}

impl Collections {
    /// The collections of `database` on `client`.
    pub fn new(client: Client, database: &str, codec: ValueCodec) -> Self {
        let db = client.database(database);
        Collections {
            tasks: db.collection(TASKS),
            rejections: db.collection(REJECTIONS),
            models: db.collection(MODELS),
            counters: db.collection(COUNTERS),
            tokens: db.collection(TOKENS),
            shards: ShardPool::default(),
            codec,
            admit_hint: FreshHint::new(),
            finish_hint: FreshHint::new(),
            db,
            client,
        }
    }
}

/// Admits `tasks` in one transaction: first assuming they are all new
/// when [`FreshHint`] says so (no read), else, or when one existed, reading
/// them first.
pub async fn admit(
    c: Collections,
    tasks: std::sync::Arc<Vec<Task>>,
) -> Result<Vec<Admission>, Failure> {
    guessing_new(&c.admit_hint, |load| {
        admit_once(c.clone(), tasks.clone(), load)
    })
    .await
}

/// Runs `attempt` assuming every id is new when `hint` guesses so, and
/// again reading the stored records when that guess met an existing id (or
/// when there is no guess).
async fn guessing_new<T, Attempt>(
    hint: &FreshHint,
    attempt: impl Fn(Load) -> Attempt,
) -> Result<T, Failure>
where
    Attempt: std::future::Future<Output = Result<T, Failure>>,
{
    if hint.guess() {
        match attempt(Load::AssumeNew).await {
            Err(failure) if failure.is_existing_id() => hint.missed(),
            done => return done,
        }
    }
    attempt(Load::Read).await
}

async fn admit_once(
    c: Collections,
    tasks: std::sync::Arc<Vec<Task>>,
    load: Load,
) -> Result<Vec<Admission>, Failure> {
    let client = c.client.clone();
    // Held until the transaction ends, so no other one of ours shares it.
    let shard = c.shards.take();
    let shard_id = shard.id();
    in_transaction(&client, move |session| {
        Box::pin(async move {
            let mut set =
                WorkingSet::load(&c, session, load, tasks.iter().map(|t| t.id.as_str())).await?;
            let mut answers = Vec::with_capacity(tasks.len());
            for task in tasks.iter() {
                let admission = StoredTask::admission(set.get(task.id.as_str()), task);
                if admission.is_new() {
                    set.put(StoredTask::accepted(task));
                }
                answers.push(admission);
            }
            set.write(&c, session, &shard_id).await?;
            Ok(answers)
        })
    })
    .await
}

/// Records final outcomes in one transaction, guessing as
/// [`admit`] does.
pub async fn finish(
    c: Collections,
    completions: std::sync::Arc<Vec<Completion>>,
) -> Result<Vec<bool>, Failure> {
    guessing_new(&c.finish_hint, |load| {
        finish_once(c.clone(), completions.clone(), load)
    })
    .await
}

async fn finish_once(
    c: Collections,
    completions: std::sync::Arc<Vec<Completion>>,
    load: Load,
) -> Result<Vec<bool>, Failure> {
    let client = c.client.clone();
    // Held until the transaction ends, so no other one of ours shares it.
    let shard = c.shards.take();
    let shard_id = shard.id();
    in_transaction(&client, move |session| {
        Box::pin(async move {
            let ids = completions.iter().map(|c| c.task.id.as_str());
            let mut set = WorkingSet::load(&c, session, load, ids).await?;
            let mut fresh = Vec::with_capacity(completions.len());
            for completion in completions.iter() {
                let id = completion.task.id.as_str();
                match set.change(id, |entry| entry.finish(completion)) {
                    Some(changed) => fresh.push(changed),
                    None => {
                        set.put(StoredTask::from_completion(completion));
                        fresh.push(true);
                    }
                }
            }
            set.write(&c, session, &shard_id).await?;
            Ok(fresh)
        })
    })
    .await
}

/// Dead-letters rejections and marks the tasks they name, in one
/// transaction.
pub async fn reject(
    c: Collections,
    rejections: std::sync::Arc<Vec<Rejection>>,
) -> Result<(), Failure> {
    let client = c.client.clone();
    // Held until the transaction ends, so no other one of ours shares it.
    let shard = c.shards.take();
    let shard_id = shard.id();
    in_transaction(&client, move |session| {
        Box::pin(async move {
            let documents = rejections
                .iter()
                .map(|r| rejection_document(r, &c.codec))
                .collect::<Result<Vec<_>, _>>()?;
            c.rejections
                .insert_many(documents)
                .session(&mut *session)
                .await?;
            let ids = rejections.iter().filter_map(|r| r.task_id.as_deref());
            let mut set = WorkingSet::load(&c, session, Load::Read, ids).await?;
            for r in rejections.iter() {
                let Some(id) = r.task_id.as_deref() else {
                    continue;
                };
                let reason = r.reason.to_string();
                if set.change(id, |entry| entry.reject(reason)).is_none() {
                    set.put(StoredTask::rejected(r, id));
                }
            }
            set.extra.dead_lettered(rejections.len());
            set.write(&c, session, &shard_id).await?;
            Ok(())
        })
    })
    .await
}

/// One task's record.
pub async fn get(c: Collections, id: String) -> Result<Option<TaskRecord>, Failure> {
    let found = c
        .tasks
        .find_one(doc! { "_id": &id })
        .projection(record_projection())
        .await?;
    match found {
        Some(document) => Ok(Some(stored_task(document, &c.codec)?.record)),
        None => Ok(None),
    }
}

/// A page of a listing.
pub async fn list(c: Collections, query: TaskQuery) -> Result<TaskPage, Failure> {
    let mut filter = Document::new();
    if let Some(state) = query.state {
        filter.insert(
            "state",
            bson::to_bson(&state).map_err(|e| encode("task state", e))?,
        );
    }
    if let Some(tenant) = &query.tenant {
        filter.insert("tenant", tenant.as_str());
    }
    if let Some(kind) = &query.kind {
        filter.insert("kind", kind.as_str());
    }
    let mut bounds = Vec::new();
    if let Some(since) = query.since_us {
        bounds.push(doc! { "submitted_at_us": { "$gte": as_i64(since)? } });
    }
    if let Some(TaskCursor {
        submitted_at_us,
        id,
    }) = &query.after
    {
        let op = if query.descending { "$lt" } else { "$gt" };
        let at = as_i64(*submitted_at_us)?;
        bounds.push(doc! { "$or": [
            { "submitted_at_us": { op: at } },
            { "submitted_at_us": at, "_id": { op: id.as_str() } },
        ] });
    }
    if !bounds.is_empty() {
        filter.insert("$and", bounds);
    }
    let direction = if query.descending { -1 } else { 1 };
    let options = FindOptions::builder()
        .sort(doc! { "submitted_at_us": direction, "_id": direction })
        .limit(as_i64(query.limit as u64 + 1)?)
        .projection(record_projection())
        .build();
    let mut cursor = c.tasks.find(filter).with_options(options).await?;
    let mut records = Vec::new();
    while let Some(document) = cursor.try_next().await? {
        records.push(stored_task(document, &c.codec)?.record);
    }
    Ok(TaskPage::from_overfull(records, query.limit))
}

/// Tasks without a final outcome, by id.
pub async fn unfinished(c: Collections) -> Result<Vec<Task>, Failure> {
    let state =
        bson::to_bson(&crate::store::TaskState::Queued).map_err(|e| encode("task state", e))?;
    let mut cursor = c
        .tasks
        .find(doc! { "state": state })
        .sort(doc! { "_id": 1 })
        .await?;
    let mut tasks = Vec::new();
    while let Some(document) = cursor.try_next().await? {
        if let Some(task) = stored_task(document, &c.codec)?.task {
            tasks.push(task);
        }
    }
    Ok(tasks)
}

/// The persisted counts.
pub async fn counts(c: Collections) -> Result<StateCounts, Failure> {
    let shards: Vec<Document> = c
        .counters
        .find(counters::all_shards())
        .await?
        .try_collect()
        .await?;
    Ok(counters::sum(&shards))
}

/// The newest `limit` dead letters, oldest first.
pub async fn rejections(c: Collections, limit: usize) -> Result<Vec<Rejection>, Failure> {
    let documents: Vec<Document> = c
        .rejections
        .find(doc! {})
        .sort(doc! { "_id": -1 })
        .limit(as_i64(limit as u64)?)
        .await?
        .try_collect()
        .await?;
    documents
        .iter()
        .rev()
        .map(|d| rejection_of(d, &c.codec))
        .collect()
}

/// Stores a model version (again, idempotently).
pub async fn put_model(c: Collections, record: std::sync::Arc<ModelRecord>) -> Result<(), Failure> {
    let document = model_document(&record)?;
    c.models
        .replace_one(
            doc! { "_id": model_id(record.update.target, record.update.version) },
            document,
        )
        .upsert(true)
        .await?;
    Ok(())
}

/// Model versions of `target` by version: all, or the newest only.
pub async fn models(
    c: Collections,
    target: ModelTarget,
    newest_only: bool,
) -> Result<Vec<ModelRecord>, Failure> {
    let filter = doc! { "target": target_key(target) };
    let mut find = c
        .models
        .find(filter)
        .sort(doc! { "version": if newest_only { -1 } else { 1 } });
    if newest_only {
        find = find.limit(1);
    }
    let documents: Vec<Document> = find.await?.try_collect().await?;
    documents.into_iter().map(model_of).collect()
}

/// Stores a token's record under its id (again, idempotently).
pub async fn put_token(c: Collections, token: std::sync::Arc<TokenRecord>) -> Result<(), Failure> {
    c.tokens
        .replace_one(doc! { "id": &token.id }, token.as_ref())
        .upsert(true)
        .await?;
    Ok(())
}

/// The record of the token with id `id`.
pub async fn token(c: Collections, id: String) -> Result<Option<TokenRecord>, Failure> {
    Ok(c.tokens.find_one(doc! { "id": id }).await?)
}

/// Every token's record, by id.
pub async fn tokens(c: Collections) -> Result<Vec<TokenRecord>, Failure> {
    Ok(c.tokens
        .find(doc! {})
        .sort(doc! { "id": 1 })
        .await?
        .try_collect()
        .await?)
}

fn as_i64(value: u64) -> Result<i64, Failure> {
    i64::try_from(value).map_err(|e| encode("query bound", e))
}
