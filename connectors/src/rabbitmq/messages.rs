//! The messages the connector publishes: results (to the results exchange
//! and to a request's `reply_to`) and dead letters. Pure functions, so that
//! their routing and headers are tested without a broker.

use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::BasicProperties;

use tidewater_operators::model::Rejection;

use crate::store::TaskRecord;

/// Header with the rejection's reason, in words.
pub const REASON_HEADER: &str = "x-tidewater-reason";
/// Header with the rejection's machine-readable code.
pub const CODE_HEADER: &str = "x-tidewater-code";
/// Header with the queue the rejected message came from.
pub const SOURCE_HEADER: &str = "x-tidewater-source";
/// Header with a result's final state.
pub const STATE_HEADER: &str = "x-tidewater-state";

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

/// A message ready to publish.
#[derive(Clone, Debug, PartialEq)]
pub struct Outbound {
    /// Exchange (empty for the default exchange, which routes by queue name).
    pub exchange: String,
    /// Routing key.
    pub routing_key: String,
    /// Body.
    pub body: Vec<u8>,
    /// Properties and headers.
    pub properties: BasicProperties,
}

fn header(table: &mut FieldTable, name: &str, value: &str) {
    table.insert(name.into(), AMQPValue::LongString(value.into()));
}

/// Routing key of a result on the results exchange: `{tenant}.{kind}`.
pub fn result_routing_key(record: &TaskRecord) -> String {
    format!("{}.{}", record.tenant, record.kind)
}

fn result_properties(record: &TaskRecord, correlation_id: Option<&str>) -> BasicProperties {
    let mut headers = FieldTable::default();
    header(&mut headers, STATE_HEADER, state_word(record));
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_delivery_mode(PERSISTENT)
        .with_message_id(ShortString::from(record.id.as_str()))
        .with_headers(headers);
    match correlation_id {
        Some(id) => properties.with_correlation_id(id.into()),
        None => properties,
    }
}

fn state_word(record: &TaskRecord) -> &'static str {
    record.state.as_str()
}

/// A result for the results exchange, or `None` when no results exchange is
/// configured. The body is the task's record as the store holds it (the
/// same document as `GET /v1/tasks/{id}`); its message id is the task id,
/// so that a consumer can drop the rare duplicate a crash can cause.
pub fn result_message(
    exchange: &str,
    record: &TaskRecord,
    body: &[u8],
    correlation_id: Option<&str>,
) -> Option<Outbound> {
    (!exchange.is_empty()).then(|| Outbound {
        exchange: exchange.to_string(),
        routing_key: result_routing_key(record),
        body: body.to_vec(),
        properties: result_properties(record, correlation_id),
    })
}

/// An event (such as an alert) for a topic exchange: a persistent JSON
/// message with the given routing key.
pub fn event_message(exchange: &str, routing_key: &str, body: Vec<u8>) -> Outbound {
    Outbound {
        exchange: exchange.to_string(),
        routing_key: routing_key.to_string(),
        body,
        properties: BasicProperties::default()
            .with_content_type("application/json".into())
            .with_delivery_mode(PERSISTENT),
    }
}

/// A reply to the queue named by the request's `reply_to`, through the
/// default exchange, carrying the request's correlation id.
pub fn reply_message(
    reply_to: &str,
    record: &TaskRecord,
    body: &[u8],
    correlation_id: Option<&str>,
) -> Outbound {
    Outbound {
        exchange: String::new(),
        routing_key: reply_to.to_string(),
        body: body.to_vec(),
        properties: result_properties(record, correlation_id),
    }
}

/// A rejected message for the dead-letter exchange: its original body, the
/// reason and code in headers, routed by the code.
pub fn dead_letter_message(
    exchange: &str,
    rejection: &Rejection,
    body: Vec<u8>,
    queue: &str,
    correlation_id: Option<&str>,
) -> Outbound {
    let mut headers = FieldTable::default();
    header(&mut headers, REASON_HEADER, &rejection.reason.to_string());
    header(&mut headers, CODE_HEADER, rejection.reason.code());
    header(&mut headers, SOURCE_HEADER, queue);
    let mut properties = BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_headers(headers);
    if let Some(id) = &rejection.task_id {
        properties = properties.with_message_id(ShortString::from(id.as_str()));
    }
    if let Some(id) = correlation_id {
        properties = properties.with_correlation_id(id.into());
    }
    Outbound {
        exchange: exchange.to_string(),
        routing_key: rejection.reason.code().to_string(),
        body,
        properties,
    }
}

/// A header's text value, when the message has it as a string.
pub fn header_text(properties: &BasicProperties, name: &str) -> Option<String> {
    let headers = properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
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
    fn results_route_by_tenant_and_kind_and_carry_ids() {
        let record = record();
        let m = result_message("results", &record, b"{}", Some("c-9")).expect("exchange set");
        assert_eq!(m.routing_key, "acme.render");
        assert_eq!(
            m.properties.message_id().as_ref().map(|s| s.as_str()),
            Some("t-1")
        );
        assert_eq!(
            m.properties.correlation_id().as_ref().map(|s| s.as_str()),
            Some("c-9")
        );
        assert_eq!(
            header_text(&m.properties, STATE_HEADER).as_deref(),
            Some("succeeded")
        );
        assert!(result_message("", &record, b"{}", None).is_none());
        let reply = reply_message("amq.gen-1", &record, b"{}", None);
        assert_eq!(
            (reply.exchange.as_str(), reply.routing_key.as_str()),
            ("", "amq.gen-1")
        );
    }

    #[test]
    fn dead_letters_carry_reason_and_code() {
        let rejection = Rejection {
            reason: RejectReason::Oversize { size: 10, limit: 5 },
            task_id: None,
            tenant: None,
            source_name: Name::from("q"),
            excerpt: String::new(),
            ack: AckToken::NONE,
            at_us: 0,
            trace: None,
        };
        let m = dead_letter_message("dead", &rejection, b"xxxxxxxxxx".to_vec(), "q", None);
        assert_eq!(m.routing_key, "oversize");
        assert_eq!(
            header_text(&m.properties, CODE_HEADER).as_deref(),
            Some("oversize")
        );
        assert_eq!(
            header_text(&m.properties, REASON_HEADER).as_deref(),
            Some("payload is 10 bytes, over the limit of 5 bytes")
        );
        assert_eq!(m.body, b"xxxxxxxxxx");
    }
}
