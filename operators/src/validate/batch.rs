//! Splitting a request body into the submissions it holds: one JSON task
//! object, or a JSON array of them (the HTTP API's `POST /v1/tasks`).
//!
//! ```text
//!  body ──first non-space byte `[`?──► yes: array of raw items ──► each item's bytes
//!                                     no:  the whole body is one item
//! ```
//!
//! Each item is then decoded by [`super::Validator::decode`]; a body that
//! starts like an array but is not one is refused as a whole.

use serde_json::value::RawValue;

use crate::model::RejectReason;

/// The submissions in `body`, and whether it was a batch (an array).
pub fn split_submissions(body: &[u8]) -> Result<(bool, Vec<&[u8]>), RejectReason> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'[') {
        return Ok((false, vec![body]));
    }
    let items =
        serde_json::from_slice::<Vec<&RawValue>>(body).map_err(|e| RejectReason::Malformed {
            detail: e.to_string(),
        })?;
    Ok((
        true,
        items.into_iter().map(|raw| raw.get().as_bytes()).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_split_into_items() {
        assert_eq!(
            split_submissions(br#"{"kind":"noop"}"#).expect("single"),
            (false, vec![br#"{"kind":"noop"}"#.as_slice()])
        );
        let (batch, items) = split_submissions(b" [ {\"a\":1} , {\"b\":[2]} ]").expect("batch");
        assert!(batch);
        assert_eq!(
            items,
            vec![b"{\"a\":1}".as_slice(), b"{\"b\":[2]}".as_slice()]
        );
        assert!(matches!(
            split_submissions(b"[{\"a\":1},"),
            Err(RejectReason::Malformed { .. })
        ));
        assert_eq!(
            split_submissions(b"").expect("empty"),
            (false, vec![b"".as_slice()])
        );
    }
}
