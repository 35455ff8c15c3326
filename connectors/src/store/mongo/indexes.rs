//! The indexes the store's queries need, created when it opens.
//!
//! Listings are ordered by `(submitted_at_us, _id)` and filtered by at most
//! a state, a tenant and a kind, so each filter has an index that starts
//! with it and ends with the listing order: a page costs an index range
//! scan of the page's size whatever the collection holds. `unfinished`
//! reads the state index; the model registry is read by target and
//! version. Dead letters are ordered by `_id`, which needs no extra index.

use mongodb::bson::{doc, Document};
use mongodb::{Database, IndexModel};

use super::config::{MODELS, TASKS, TOKENS};
use super::error::Failure;
use mongodb::options::IndexOptions;

/// An index on `fields` named `name`.
fn index(name: &str, keys: Document) -> IndexModel {
    IndexModel::builder()
        .keys(keys)
        .options(IndexOptions::builder().name(name.to_string()).build())
        .build()
}

/// The task collection's indexes.
fn task_indexes() -> Vec<IndexModel> {
    vec![
        index("by_submitted", doc! { "submitted_at_us": 1, "_id": 1 }),
        index(
            "by_state",
            doc! { "state": 1, "submitted_at_us": 1, "_id": 1 },
        ),
        index(
            "by_tenant",
            doc! { "tenant": 1, "submitted_at_us": 1, "_id": 1 },
        ),
        index(
            "by_kind",
            doc! { "kind": 1, "submitted_at_us": 1, "_id": 1 },
        ),
    ]
}

/// Creates the indexes that do not exist yet (creating an existing one
/// with the same definition changes nothing).
pub async fn ensure(db: &Database) -> Result<(), Failure> {
    db.collection::<Document>(TASKS)
        .create_indexes(task_indexes())
        .await?;
    db.collection::<Document>(MODELS)
        .create_index(index(
            "by_target_version",
            doc! { "target": 1, "version": 1 },
        ))
        .await?;
    db.collection::<Document>(TOKENS)
        .create_index(index("by_id", doc! { "id": 1 }))
        .await?;
    Ok(())
}
