//! The bad-input scenario the broker tests share: one record of every class
//! of bad input, with the code each is dead-lettered under and what its
//! reason must mention, and the checks of one dead letter against its case.
//! The tests send the records (each tagged with its case's index), a good
//! task among them, and read the dead letters back in their broker's way.

/// One bad record and how it must be dead-lettered.
pub struct BadCase {
    /// The rejection code (the `x-tidewater-code` header).
    pub code: &'static str,
    /// The record's bytes.
    pub body: Vec<u8>,
    /// What the reason (the `x-tidewater-reason` header) must mention.
    pub mentions: &'static str,
}

/// Largest record the pipeline accepts in these tests (`max_payload_bytes`);
/// the oversize case is past it.
pub const MAX_PAYLOAD_BYTES: usize = 1024;

/// One record of every class of bad input.
pub fn cases() -> Vec<BadCase> {
    let case = |code, body: &[u8], mentions| BadCase {
        code,
        body: body.to_vec(),
        mentions,
    };
    let oversize = format!(
        r#"{{"id":"big","kind":"noop","payload":{{"blob":"{}"}}}}"#,
        "x".repeat(80 * MAX_PAYLOAD_BYTES)
    );
    vec![
        case("malformed", br#"{"kind": "noop""#, "EOF"),
        case("malformed", b"not json at all", "expected"),
        case("wrong_type", br#"{"id":"wt","kind":7}"#, "`kind`"),
        case(
            "wrong_type",
            br#"{"id":"wt2","kind":"noop","resources":{"memory_mib":"lots"}}"#,
            "resources.memory_mib",
        ),
        case("missing_field", br#"{"id":"mf"}"#, "kind"),
        case(
            "unknown_field",
            br#"{"id":"uf","kind":"noop","colour":"blue"}"#,
            "colour",
        ),
        case(
            "invalid_value",
            br#"{"id":"iv","kind":"noop","resources":{"cpu_milli":-100}}"#,
            "resources.cpu_milli",
        ),
        case("oversize", oversize.as_bytes(), "over the limit"),
        // Well formed, but never runnable: refused at intake with its id.
        case(
            "invalid_value",
            br#"{"id":"never-kind","kind":"no-such-kind"}"#,
            "no handler for kind",
        ),
        case(
            "invalid_value",
            br#"{"id":"never-program","kind":"command","payload":{"program":"rm","args":["-rf","/"]}}"#,
            "command_allowlist",
        ),
        case(
            "wrong_type",
            br#"{"id":"never-sleep","kind":"sleep","payload":{"seconds":1}}"#,
            "sleep payload must be",
        ),
        case(
            "deadline_passed",
            br#"{"id":"never-late","kind":"noop","deadline_ms":1000}"#,
            "deadline passed",
        ),
    ]
}

/// Ids of the cases that are well formed but can never run: each must read
/// back `rejected` with its reason.
pub const NEVER_RUNNABLE: [&str; 4] = ["never-kind", "never-program", "never-sleep", "never-late"];

/// An empty record (a Kafka message without a value).
pub fn empty() -> BadCase {
    BadCase {
        code: "malformed",
        body: Vec::new(),
        mentions: "EOF",
    }
}

/// The tag of case `index`, sent with the record (as a correlation id).
pub fn tag(index: usize) -> String {
    format!("case-{index}")
}

/// The case index of a dead letter from the tag it kept.
pub fn index_of(tag: Option<&str>) -> usize {
    tag.and_then(|c| c.strip_prefix("case-"))
        .and_then(|n| n.parse().ok())
        .expect("correlation id kept")
}

/// Checks a dead letter of case `index`: its code, its reason, and that the
/// original body is what was dead-lettered.
pub fn assert_dead_letter(
    cases: &[BadCase],
    index: usize,
    code: Option<&str>,
    reason: Option<&str>,
    body: &[u8],
) {
    let case = &cases[index];
    assert_eq!(code, Some(case.code), "case {index}");
    let reason = reason.expect("reason header");
    assert!(
        reason.contains(case.mentions),
        "case {index}: {reason:?} should mention {:?}",
        case.mentions
    );
    assert_eq!(
        body, case.body,
        "case {index}: the original body is dead-lettered"
    );
}
