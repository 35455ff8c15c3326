//! Inserted documents as task submissions.
//!
//! A document in the watched collection holds the fields of a submission
//! (as `POST /v1/tasks` takes them). It becomes the JSON text the pipeline
//! decodes, as a broker message would be: BSON values in relaxed extended
//! JSON, `_id` removed, and, when the document has no `id`, its `_id` as
//! the task id (an ObjectId as its hex text), so that a document read again
//! after a restart names the same task.

use mongodb::bson::{Bson, Document};
use serde_json::Value;

/// The submission JSON of an inserted document.
pub fn submission_json(mut document: Document) -> Vec<u8> {
    let id = document.remove("_id");
    let mut value = Bson::Document(document).into_relaxed_extjson();
    if let (Value::Object(fields), Some(id)) = (&mut value, id) {
        if !fields.contains_key("id") {
            let id = match id {
                Bson::ObjectId(oid) => oid.to_hex(),
                Bson::String(s) => s,
                other => other.into_relaxed_extjson().to_string(),
            };
            fields.insert("id".into(), Value::String(id));
        }
    }
    // A JSON value always serialises.
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{doc, oid::ObjectId};

    use super::*;

    fn json(document: Document) -> Value {
        serde_json::from_slice(&submission_json(document)).expect("json")
    }

    #[test]
    fn the_object_id_names_a_task_without_id() {
        let oid = ObjectId::new();
        let value = json(doc! { "_id": oid, "kind": "noop", "resources": { "cpu_milli": 100 } });
        assert_eq!(value["id"], Value::String(oid.to_hex()));
        assert_eq!(value["resources"]["cpu_milli"], 100);
        assert!(value.get("_id").is_none());
    }

    #[test]
    fn an_explicit_id_wins_and_values_are_plain_json() {
        let value =
            json(doc! { "_id": 7, "id": "mine", "kind": "sleep", "payload": { "ms": 5_i64 } });
        assert_eq!(value["id"], "mine");
        assert_eq!(value["payload"]["ms"], 5);
    }
}
