//! The source's position in the change stream, kept in MongoDB beside the
//! watched collection: one document per watched namespace,
//! `{_id: "db.collection", token, saved_at_ms}`.

use mongodb::bson::{self, doc, Document};
use mongodb::change_stream::event::ResumeToken;
use mongodb::Collection;

/// The stored position, if any. A stored value that is not a token is
/// reported and ignored (the stream then starts from now).
pub async fn load(
    tokens: &Collection<Document>,
    key: &str,
) -> Result<Option<ResumeToken>, mongodb::error::Error> {
    let Some(document) = tokens.find_one(doc! { "_id": key }).await? else {
        return Ok(None);
    };
    let Some(token) = document.get("token") else {
        return Ok(None);
    };
    match bson::from_bson::<ResumeToken>(token.clone()) {
        Ok(token) => Ok(Some(token)),
        Err(e) => {
            tracing::error!(key, error = %e, "stored resume token unreadable; starting from now");
            Ok(None)
        }
    }
}

/// Stores the position.
pub async fn save(
    tokens: &Collection<Document>,
    key: &str,
    token: &ResumeToken,
) -> Result<(), mongodb::error::Error> {
    let value = bson::to_bson(token)?;
    let now_ms = tidewater_operators::model::now_micros() / 1000;
    tokens
        .update_one(
            doc! { "_id": key },
            doc! { "$set": { "token": value, "saved_at_ms": now_ms as i64 } },
        )
        .upsert(true)
        .await?;
    Ok(())
}
