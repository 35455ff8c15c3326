//! Turns bytes or submissions into validated tasks, or specific rejections.

use crate::model::{AckToken, GpuRequest, Name, RejectReason, Task, GPU_MILLI_PER_DEVICE};

use super::{TaskSubmission, ValidationLimits, DEFAULT_TIMEOUT_MS};

/// A check of a well-formed task against what the runtime can run (a
/// handler for its kind, its payload's shape, the command allowlist, its
/// deadline), applied by the `Decode` operator to every task from every
/// source, so that what can never run is rejected at intake.
pub type AdmissionCheck = std::sync::Arc<dyn Fn(&Task) -> Result<(), RejectReason> + Send + Sync>;

/// Decodes and validates task records for one worker. It generates ids for
/// submissions without one, unique per worker and process start.
#[derive(Clone)]
pub struct Validator {
    limits: ValidationLimits,
    id_prefix: String,
    next_id: u64,
    admission: Option<AdmissionCheck>,
}

impl std::fmt::Debug for Validator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Validator")
            .field("limits", &self.limits)
            .field("id_prefix", &self.id_prefix)
            .field("next_id", &self.next_id)
            .field("admission", &self.admission.is_some())
            .finish()
    }
}

impl Validator {
    /// A validator for worker `worker_index`, generating ids that embed
    /// `started_at_us` so that restarts never reuse one.
    pub fn new(limits: ValidationLimits, worker_index: usize, started_at_us: u64) -> Self {
        Validator {
            limits,
            id_prefix: format!("t{started_at_us:x}w{worker_index}-"),
            next_id: 0,
            admission: None,
        }
    }

    /// A validator for an ingress outside the workers (the HTTP API),
    /// generating ids `t{started_at_us:x}{source}-N`, `source` naming it.
    pub fn for_source(limits: ValidationLimits, source: &str, started_at_us: u64) -> Self {
        Validator {
            limits,
            id_prefix: format!("t{started_at_us:x}{source}-"),
            next_id: 0,
            admission: None,
        }
    }

    /// This validator, with `check` applied to every decoded task by
    /// [`admit`](Self::admit).
    pub fn with_admission(mut self, check: AdmissionCheck) -> Self {
        self.admission = Some(check);
        self
    }

    /// Applies the admission check, if any, to a well-formed task.
    pub fn admit(&self, task: &Task) -> Result<(), RejectReason> {
        match &self.admission {
            Some(check) => check(task),
            None => Ok(()),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> &ValidationLimits {
        &self.limits
    }

    /// Parses and validates one JSON record.
    pub fn decode(
        &mut self,
        bytes: &[u8],
        ack: AckToken,
        now_us: u64,
    ) -> Result<Task, RejectReason> {
        if bytes.len() > self.limits.max_record_bytes() {
            return Err(RejectReason::Oversize {
                size: bytes.len(),
                limit: self.limits.max_record_bytes(),
            });
        }
        let submission = parse_submission(bytes)?;
        self.accept(submission, ack, now_us)
    }

    /// Validates a parsed submission and builds the task.
    pub fn accept(
        &mut self,
        submission: TaskSubmission,
        ack: AckToken,
        now_us: u64,
    ) -> Result<Task, RejectReason> {
        let id = match submission.id {
            Some(id) => id,
            None => {
                self.next_id += 1;
                format!("{}{}", self.id_prefix, self.next_id)
            }
        };
        let payload = submission.payload.map(|raw| Box::<str>::from(raw.get()));
        let resources = submission.resources.into_request()?;
        let task = Task {
            id: Name::from(id),
            kind: Name::from(submission.kind),
            payload,
            resources,
            qos: submission.qos,
            priority: submission.priority,
            deadline_ms: submission.deadline_ms,
            tenant: submission
                .tenant
                .map_or(Name::const_new("default"), Name::from),
            max_attempts: submission.max_attempts.unwrap_or(1),
            attempt: 1,
            timeout_ms: submission.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS),
            requested_runtime_s: submission.requested_runtime_s,
            submitted_at_us: now_us,
            ack,
            agent: submission.agent.map(Name::from),
            depends_on: submission.depends_on.into_iter().map(Name::from).collect(),
            trace: None,
        };
        check_task(&task, &self.limits)?;
        Ok(task)
    }
}

/// Checks the rules every task must satisfy, whichever way it arrived
/// (decoded from JSON or built through the in-process API).
pub fn check_task(task: &Task, limits: &ValidationLimits) -> Result<(), RejectReason> {
    check_name("id", &task.id, limits)?;
    check_name("kind", &task.kind, limits)?;
    check_name("tenant", &task.tenant, limits)?;
    if let Some(agent) = &task.agent {
        check_name("agent", agent, limits)?;
    }
    for dependency in &task.depends_on {
        check_name("depends_on", dependency, limits)?;
    }
    let size = task.payload_bytes();
    if size > limits.max_payload_bytes {
        return Err(RejectReason::Oversize {
            size,
            limit: limits.max_payload_bytes,
        });
    }
    let r = &task.resources;
    if r.cpu_milli == 0 {
        return Err(invalid("resources.cpu_milli", "must be at least 1"));
    }
    match r.gpu {
        GpuRequest::Whole(0) => {
            return Err(invalid("resources.gpus", "must be at least 1 when set"))
        }
        GpuRequest::Fraction(m) if m == 0 || m >= GPU_MILLI_PER_DEVICE => {
            return Err(invalid("resources.gpu_milli", "a share must be in 1..=999"))
        }
        GpuRequest::None if !r.gpu_models.is_empty() => {
            return Err(invalid(
                "resources.gpu_models",
                "GPU models given but no GPU requested",
            ))
        }
        _ => {}
    }
    if let Some(empty) = r.gpu_models.iter().find(|m| m.is_empty()) {
        return Err(invalid(
            "resources.gpu_models",
            format!("empty model name {empty:?}"),
        ));
    }
    if let Some((name, _)) = r
        .custom
        .iter()
        .find(|(name, amount)| name.is_empty() || *amount == 0)
    {
        return Err(invalid(
            "resources.custom",
            format!("resource {name:?} must have a non-empty name and an amount of at least 1"),
        ));
    }
    if task.max_attempts == 0 || task.max_attempts > limits.max_attempts {
        return Err(invalid(
            "max_attempts",
            format!(
                "{} is outside 1..={}",
                task.max_attempts, limits.max_attempts
            ),
        ));
    }
    if task.timeout_ms == 0 || task.timeout_ms > limits.max_timeout_ms {
        return Err(invalid(
            "timeout_ms",
            format!(
                "{} is outside 1..={}",
                task.timeout_ms, limits.max_timeout_ms
            ),
        ));
    }
    if task.requested_runtime_s == Some(0) {
        return Err(invalid(
            "requested_runtime_s",
            "must be at least 1 when given",
        ));
    }
    Ok(())
}

fn check_name(field: &str, value: &str, limits: &ValidationLimits) -> Result<(), RejectReason> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if value.len() > limits.max_name_bytes {
        return Err(invalid(
            field,
            format!(
                "{} bytes is over the limit of {}",
                value.len(),
                limits.max_name_bytes
            ),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(())
}

fn invalid(path: &str, detail: impl Into<String>) -> RejectReason {
    RejectReason::InvalidValue {
        path: path.to_string(),
        detail: detail.into(),
    }
}

/// Parses JSON into a submission, classifying serde's errors into reasons
/// that name the field.
fn parse_submission(bytes: &[u8]) -> Result<TaskSubmission, RejectReason> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let submission =
        serde_path_to_error::deserialize::<_, TaskSubmission>(&mut de).map_err(|err| {
            let path = err.path().to_string();
            classify(&path, err.inner())
        })?;
    de.end().map_err(|err| classify(".", &err))?;
    Ok(submission)
}

fn classify(path: &str, err: &serde_json::Error) -> RejectReason {
    use serde_json::error::Category;
    let message = err.to_string();
    if matches!(
        err.classify(),
        Category::Syntax | Category::Eof | Category::Io
    ) {
        return RejectReason::Malformed { detail: message };
    }
    // Serde's data errors carry the field name between backticks.
    let quoted = || message.split('`').nth(1).unwrap_or_default().to_string();
    let parent = |p: &str| match p.rsplit_once('.') {
        Some((parent, _)) => parent.to_string(),
        None => ".".to_string(),
    };
    if message.starts_with("unknown field") {
        RejectReason::UnknownField {
            field: quoted(),
            path: parent(path),
        }
    } else if message.starts_with("missing field") {
        RejectReason::MissingField {
            field: quoted(),
            path: path.to_string(),
        }
    } else if message.starts_with("invalid type") {
        RejectReason::WrongType {
            path: path.to_string(),
            detail: message,
        }
    } else {
        RejectReason::InvalidValue {
            path: path.to_string(),
            detail: message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(json: &str) -> Result<Task, RejectReason> {
        Validator::new(ValidationLimits::default(), 0, 1).decode(json.as_bytes(), AckToken::NONE, 7)
    }

    #[test]
    fn accepts_a_full_submission() {
        let task = decode(
            r#"{"id":"a","kind":"sleep","payload":{"ms":5},"resources":{"cpu_milli":500,"memory_mib":64,"gpu_milli":250,"gpu_models":["A100"],"custom":{"lic":2}},"qos":"latency_sensitive","priority":3,"tenant":"acme","max_attempts":3,"timeout_ms":1000,"deadline_ms":99}"#,
        )
        .expect("valid");
        assert_eq!(task.id, "a");
        assert_eq!(task.payload.as_deref(), Some(r#"{"ms":5}"#));
        assert_eq!(task.resources.gpu, GpuRequest::Fraction(250));
        assert_eq!(task.resources.custom.as_ref(), &[(Name::from("lic"), 2)]);
        assert_eq!(task.submitted_at_us, 7);
    }

    #[test]
    fn generates_distinct_ids() {
        let mut v = Validator::new(ValidationLimits::default(), 3, 1);
        let a = v
            .decode(br#"{"kind":"noop"}"#, AckToken::NONE, 0)
            .expect("valid");
        let b = v
            .decode(br#"{"kind":"noop"}"#, AckToken::NONE, 0)
            .expect("valid");
        assert_ne!(a.id, b.id);
    }

    #[test]
    fn malformed_json() {
        assert!(matches!(
            decode(r#"{"kind": "#),
            Err(RejectReason::Malformed { .. })
        ));
        assert!(matches!(
            decode(r#"{"kind":"a"} trailing"#),
            Err(RejectReason::Malformed { .. })
        ));
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let err = decode(r#"{"kind":"a","resources":{"cpus":1}}"#).expect_err("unknown");
        assert_eq!(
            err,
            RejectReason::UnknownField {
                field: "cpus".into(),
                path: "resources".into()
            }
        );
        let err = decode(r#"{"kind":"a","colour":1}"#).expect_err("unknown");
        assert!(
            matches!(err, RejectReason::UnknownField { ref field, .. } if field == "colour"),
            "{err:?}"
        );
    }

    #[test]
    fn missing_field() {
        let err = decode(r#"{"id":"x"}"#).expect_err("missing");
        assert!(
            matches!(err, RejectReason::MissingField { ref field, .. } if field == "kind"),
            "{err:?}"
        );
    }

    #[test]
    fn wrong_type_names_the_field() {
        let err = decode(r#"{"kind":"a","resources":{"cpu_milli":"lots"}}"#).expect_err("type");
        assert!(
            matches!(err, RejectReason::WrongType { ref path, .. } if path == "resources.cpu_milli"),
            "{err:?}"
        );
    }

    #[test]
    fn negative_and_overflowing_resources() {
        let err = decode(r#"{"kind":"a","resources":{"memory_mib":-5}}"#).expect_err("negative");
        assert!(
            matches!(err, RejectReason::InvalidValue { ref path, .. } if path == "resources.memory_mib"),
            "{err:?}"
        );
        let err = decode(r#"{"kind":"a","resources":{"gpus":300}}"#).expect_err("overflow");
        assert!(
            matches!(err, RejectReason::InvalidValue { ref path, .. } if path == "resources.gpus"),
            "{err:?}"
        );
    }

    #[test]
    fn zero_where_invalid() {
        for (json, field) in [
            (
                r#"{"kind":"a","resources":{"cpu_milli":0}}"#,
                "resources.cpu_milli",
            ),
            (r#"{"kind":"a","max_attempts":0}"#, "max_attempts"),
            (r#"{"kind":"a","timeout_ms":0}"#, "timeout_ms"),
            (r#"{"kind":""}"#, "kind"),
            (
                r#"{"kind":"a","resources":{"gpus":1,"gpu_milli":500}}"#,
                "resources.gpu_milli",
            ),
            (
                r#"{"kind":"a","resources":{"gpu_milli":1500}}"#,
                "resources.gpu_milli",
            ),
            (
                r#"{"kind":"a","resources":{"gpu_models":["A100"]}}"#,
                "resources.gpu_models",
            ),
            (
                r#"{"kind":"a","resources":{"custom":{"lic":0}}}"#,
                "resources.custom",
            ),
        ] {
            let err = decode(json).expect_err(json);
            assert!(
                matches!(err, RejectReason::InvalidValue { ref path, .. } if path == field),
                "{json}: {err:?}"
            );
        }
    }

    #[test]
    fn oversize_payload_and_record() {
        let limits = ValidationLimits {
            max_payload_bytes: 16,
            ..Default::default()
        };
        let mut v = Validator::new(limits, 0, 1);
        let err = v
            .decode(
                br#"{"kind":"a","payload":"0123456789abcdefghij"}"#,
                AckToken::NONE,
                0,
            )
            .expect_err("big");
        assert!(
            matches!(err, RejectReason::Oversize { limit: 16, .. }),
            "{err:?}"
        );
        let huge = vec![b' '; 200_000];
        assert!(matches!(
            v.decode(&huge, AckToken::NONE, 0),
            Err(RejectReason::Oversize { .. })
        ));
    }
}
