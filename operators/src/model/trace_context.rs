//! W3C trace context carried by a task from its source to its outcome.
//!
//! A broker message or HTTP request may carry a `traceparent` header
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>). The source
//! parses it into a [`TraceParent`] on the record, decoding copies it onto
//! the task, and the task's span (ingestion to outcome) is exported as a
//! child of that remote span. Records without the header, or with one that
//! does not parse, start a trace of their own.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The name of the header (AMQP, Kafka, HTTP) that carries the context.
pub const TRACEPARENT_HEADER: &str = "traceparent";

/// A parsed `traceparent`: the caller's trace and the span that is the
/// parent of the task's span.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TraceParent {
    /// The trace the task joins (16 bytes, never all zero).
    pub trace_id: [u8; 16],
    /// The caller's span, parent of the task's span (8 bytes, never all zero).
    pub parent_span_id: [u8; 8],
    /// The caller's `trace-flags` (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` header value, `VERSION-TRACEID-PARENTID-FLAGS`
    /// in lower-case hex. Version `ff` and all-zero ids are invalid; a
    /// version above `00` may carry more fields after the flags, which are
    /// ignored as the specification asks. Anything else is `None`.
    pub fn parse(value: &str) -> Option<TraceParent> {
        let value = value.trim();
        let mut fields = value.split('-');
        let version = fields.next()?;
        let trace_id = fields.next()?;
        let parent_span_id = fields.next()?;
        let flags = fields.next()?;
        let version = hex_array::<1>(version)?[0];
        if version == 0xff || (version == 0 && fields.next().is_some()) {
            return None;
        }
        let parsed = TraceParent {
            trace_id: hex_array(trace_id)?,
            parent_span_id: hex_array(parent_span_id)?,
            flags: hex_array::<1>(flags)?[0],
        };
        let valid = parsed.trace_id != [0; 16] && parsed.parent_span_id != [0; 8];
        valid.then_some(parsed)
    }

    /// Parses the header from raw bytes (a broker header), as [`parse`](Self::parse).
    pub fn parse_bytes(value: &[u8]) -> Option<TraceParent> {
        std::str::from_utf8(value).ok().and_then(TraceParent::parse)
    }

    /// Whether the caller sampled its span (`trace-flags` bit 0).
    pub fn is_sampled(&self) -> bool {
        self.flags & 1 == 1
    }
}

impl fmt::Display for TraceParent {
    /// The header value, version `00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        write_hex(f, &self.trace_id)?;
        f.write_str("-")?;
        write_hex(f, &self.parent_span_id)?;
        write!(f, "-{:02x}", self.flags)
    }
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

/// Exactly `2 * N` lower-case hex digits into `N` bytes.
fn hex_array<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (hex_digit(pair[0])? << 4) | hex_digit(pair[1])?;
    }
    Some(out)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_parses_and_prints_back() {
        let parent = TraceParent::parse(EXAMPLE).expect("valid");
        assert_eq!(parent.trace_id[0], 0x4b);
        assert_eq!(parent.trace_id[15], 0x36);
        assert_eq!(
            parent.parent_span_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(parent.is_sampled());
        assert_eq!(parent.to_string(), EXAMPLE);
        assert_eq!(TraceParent::parse_bytes(EXAMPLE.as_bytes()), Some(parent));
    }

    #[test]
    fn invalid_headers_are_refused() {
        for bad in [
            "",
            "00",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        assert_eq!(TraceParent::parse_bytes(&[0xff, 0xfe]), None);
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more";
        let parent = TraceParent::parse(later).expect("valid");
        assert!(!parent.is_sampled());
    }
}
