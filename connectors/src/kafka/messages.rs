//! The records the connector produces: results (to the results topic and to
//! a request's reply topic) and dead letters. Pure functions, so that their
//! keys and headers are tested without a broker.
//!
//! Results are keyed `{tenant}.{kind}` (the RabbitMQ connector's routing
//! key): Kafka's partitioner sends one key to one partition, so that a
//! tenant's results of one kind stay in order.

use tidewater_operators::model::Rejection;

use crate::store::TaskRecord;

/// Header with the rejection's reason, in words.
pub const REASON_HEADER: &str = "x-tidewater-reason";
/// Header with the rejection's machine-readable code.
pub const CODE_HEADER: &str = "x-tidewater-code";
/// Header with the topic the rejected message came from.
pub const SOURCE_HEADER: &str = "x-tidewater-source";
/// Header with the partition and offset (`{partition}:{offset}`) the
/// rejected message came from.
pub const SOURCE_OFFSET_HEADER: &str = "x-tidewater-source-offset";
/// Header with a result's final state.
pub const STATE_HEADER: &str = "x-tidewater-state";
/// Header with the task id (the message id: a consumer can drop the rare
/// duplicate a crash can cause).
pub const TASK_ID_HEADER: &str = "x-tidewater-task-id";
/// Header of a request naming the topic its result should also go to (the
/// AMQP `reply_to` property's counterpart).
pub const REPLY_TO_HEADER: &str = "x-tidewater-reply-to";
/// Header with a request's correlation id, copied to its result and dead
/// letter (the AMQP `correlation_id` property's counterpart).
pub const CORRELATION_HEADER: &str = "x-tidewater-correlation-id";
/// Header with the body's content type.
pub const CONTENT_TYPE_HEADER: &str = "content-type";

/// A record ready to produce.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outbound {
    /// Topic.
    pub topic: String,
    /// Key (decides the partition).
    pub key: Option<Vec<u8>>,
    /// Value.
    pub body: Vec<u8>,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
}

impl Outbound {
    /// The value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Key of a result: `{tenant}.{kind}`.
pub fn result_key(record: &TaskRecord) -> String {
    format!("{}.{}", record.tenant, record.kind)
}

fn state_word(record: &TaskRecord) -> &'static str {
    record.state.as_str()
}

fn result_headers(record: &TaskRecord, correlation_id: Option<&str>) -> Vec<(String, String)> {
    let mut headers = vec![
        (
            CONTENT_TYPE_HEADER.to_string(),
            "application/json".to_string(),
        ),
        (STATE_HEADER.to_string(), state_word(record).to_string()),
        (TASK_ID_HEADER.to_string(), record.id.clone()),
    ];
    if let Some(id) = correlation_id {
        headers.push((CORRELATION_HEADER.to_string(), id.to_string()));
    }
    headers
}

/// A result for `topic` (the results topic or a reply topic). The value is
/// the task's record as the store holds it (the same document as
/// `GET /v1/tasks/{id}`).
pub fn result_message(
    topic: &str,
    record: &TaskRecord,
    body: &[u8],
    correlation_id: Option<&str>,
) -> Outbound {
    Outbound {
        topic: topic.to_string(),
        key: Some(result_key(record).into_bytes()),
        body: body.to_vec(),
        headers: result_headers(record, correlation_id),
    }
}

/// An alert event for the alerts topic, keyed `{alert}.{state}`.
pub fn alert_message(topic: &str, routing_key: &str, body: Vec<u8>) -> Outbound {
    Outbound {
        topic: topic.to_string(),
        key: Some(routing_key.as_bytes().to_vec()),
        body,
        headers: Vec::new(),
    }
}

/// Where a rejected message came from.
#[derive(Clone, Copy, Debug)]
pub struct Origin<'a> {
    /// Its topic.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
}

/// A rejected message for the dead-letter topic: its original key and
/// value, the reason and code in headers.
pub fn dead_letter_message(
    topic: &str,
    rejection: &Rejection,
    key: Option<Vec<u8>>,
    body: Vec<u8>,
    origin: Origin<'_>,
    correlation_id: Option<&str>,
) -> Outbound {
    let mut headers = vec![
        (REASON_HEADER.to_string(), rejection.reason.to_string()),
        (CODE_HEADER.to_string(), rejection.reason.code().to_string()),
        (SOURCE_HEADER.to_string(), origin.topic.to_string()),
        (
            SOURCE_OFFSET_HEADER.to_string(),
            format!("{}:{}", origin.partition, origin.offset),
        ),
    ];
    if let Some(id) = &rejection.task_id {
        headers.push((TASK_ID_HEADER.to_string(), id.to_string()));
    }
    if let Some(id) = correlation_id {
        headers.push((CORRELATION_HEADER.to_string(), id.to_string()));
    }
    Outbound {
        topic: topic.to_string(),
        key,
        body,
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoredTask;
    use tidewater_operators::model::{
        AckToken, Completion, Name, Outcome, RejectReason, ResourceRequest, Task,
    };

    fn record() -> TaskRecord {
        let mut task = Task::new("t-1", "render", ResourceRequest::cpu(100, 0));
        task.tenant = Name::from("acme");
        StoredTask::from_completion(&Completion {
            task,
            executor: Name::from("local"),
            shard: 0,
            lease: tidewater_operators::model::Lease(1),
            outcome: Outcome::Succeeded,
            started_at_us: 1,
            finished_at_us: 2,
            exit_code: None,
            output_bytes: 0,
            is_final: true,
            result: None,
        })
        .record
    }

    #[test]
    fn results_are_keyed_by_tenant_and_kind_and_carry_ids() {
        let m = result_message("results", &record(), b"{}", Some("c-9"));
        assert_eq!(m.key.as_deref(), Some(&b"acme.render"[..]));
        assert_eq!(m.header(TASK_ID_HEADER), Some("t-1"));
        assert_eq!(m.header(CORRELATION_HEADER), Some("c-9"));
        assert_eq!(m.header(STATE_HEADER), Some("succeeded"));
        assert_eq!(m.topic, "results");
    }

    #[test]
    fn dead_letters_carry_reason_code_and_origin() {
        let rejection = Rejection {
            reason: RejectReason::Oversize { size: 10, limit: 5 },
            task_id: None,
            tenant: None,
            source_name: Name::from("tasks"),
            excerpt: String::new(),
            ack: AckToken::NONE,
            at_us: 0,
            trace: None,
        };
        let origin = Origin {
            topic: "tasks",
            partition: 2,
            offset: 41,
        };
        let m = dead_letter_message(
            "dead",
            &rejection,
            Some(b"k".to_vec()),
            b"xxxxxxxxxx".to_vec(),
            origin,
            None,
        );
        assert_eq!(m.header(CODE_HEADER), Some("oversize"));
        assert_eq!(
            m.header(REASON_HEADER),
            Some("payload is 10 bytes, over the limit of 5 bytes")
        );
        assert_eq!(m.header(SOURCE_HEADER), Some("tasks"));
        assert_eq!(m.header(SOURCE_OFFSET_HEADER), Some("2:41"));
        assert_eq!(m.body, b"xxxxxxxxxx");
        assert_eq!(m.key.as_deref(), Some(&b"k"[..]));
    }
}
